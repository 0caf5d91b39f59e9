"""GLAM's train/test split by held-out colour-object pairs."""

from __future__ import annotations

from collections import Counter

import gymnasium as gym
import pytest

from babyai_text import HELD_OUT_PAIRS, BabyAITextEnv
from babyai_text.envs import mixed_tasks
from babyai_text.language import instruction_objects


def held_out_mentions(env) -> list[tuple[str, str]]:
    return [(d.color, d.type) for d in instruction_objects(env.unwrapped.instrs) if (d.color, d.type) in HELD_OUT_PAIRS]


@pytest.mark.slow
def test_mixed_train_never_mentions_held_out_pairs() -> None:
    env = gym.make("BabyAI-Text-MixedTrain-v0")
    tasks = Counter()
    for seed in range(2000):
        _, info = env.reset(seed=seed)
        assert not held_out_mentions(env), info["mission"]
        for colour, obj in HELD_OUT_PAIRS:
            assert f"{colour} {obj}" not in info["mission"]
        tasks[info["task"]] += 1
    # Each episode draws a task: all five appear in roughly equal shares.
    assert set(tasks) == {"GoTo", "PickUp", "PutNext", "Open", "PickUpSeqGoTo"}
    assert min(tasks.values()) > 300


@pytest.mark.slow
def test_mixed_test_always_mentions_a_held_out_pair() -> None:
    env = gym.make("BabyAI-Text-MixedTest-v0")
    tasks = Counter()
    for seed in range(2000):
        _, info = env.reset(seed=seed)
        assert held_out_mentions(env), info["mission"]
        assert any(f"{c} {o}" in info["mission"] for c, o in HELD_OUT_PAIRS)
        tasks[info["task"]] += 1
    assert set(tasks) == {"GoTo", "PickUp", "PutNext", "Open", "PickUpSeqGoTo"}


def test_task_drawn_per_episode_not_per_instance() -> None:
    env = gym.make("BabyAI-Text-MixedTrain-v0")
    widths = set()
    tasks = set()
    for _ in range(40):  # no reseeding: one instance, many episodes
        _, info = env.reset()
        tasks.add(info["task"])
        widths.add(env.unwrapped.width)
    assert len(tasks) == 5
    assert widths == {8, 15}  # Open uses two rooms


def test_held_out_pairs_may_appear_as_distractors() -> None:
    env = gym.make("BabyAI-Text-MixedTrain-v0")
    seen = set()
    for seed in range(200):
        env.reset(seed=seed)
        for cell in env.unwrapped.grid.grid:
            if cell is not None and (cell.color, cell.type) in HELD_OUT_PAIRS:
                seen.add((cell.color, cell.type))
    assert {("yellow", "box"), ("red", "key"), ("green", "ball")} <= seen


def test_held_out_filter_works_on_any_task() -> None:
    env = BabyAITextEnv(tasks=mixed_tasks()[:1], held_out="only")
    for seed in range(30):
        env.reset(seed=seed)
        assert held_out_mentions(env)
    with pytest.raises(ValueError, match="fixes held_out"):
        gym.make("BabyAI-Text-MixedTrain-v0", held_out="only")
