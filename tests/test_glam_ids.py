"""GLAM's original ids, driven the way BALROG's environment code drives them.

The wrapper below is ours, written from what BALROG's BabyAI-Text code is documented to
do: build ``BabyAI-MixedTrainLocal-v0`` until ``env.unwrapped.action_kinds[0]`` is the
wanted kind, wrap it in a language wrapper that takes action names, reset with a seed,
read ``info["descriptions"]``, ``obs["mission"]``, ``get_pov_render`` and ``max_steps``,
and report ``{"mission", "progression"}`` as JSON.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import babyai_text
from babyai_text.envs.glam import MIXED_KINDS, GLAMLevel

ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]
BALROG_TASKS = ["goto", "pickup", "open", "putnext", "pick_up_seq_go_to"]


class LanguageWrapper(gym.Wrapper):
    """Actions by name; the text and a point-of-view image in the observation; episode stats."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.mission = None
        self.progression = 0.0

    @property
    def max_steps(self) -> int:
        return self.env.get_wrapper_attr("max_steps")

    def _text(self, obs: dict, info: dict) -> dict:
        image = Image.fromarray(self.env.unwrapped.get_pov_render(tile_size=16)).convert("RGB")
        obs["text"] = "\n".join(d.replace("You see ", "") for d in info["descriptions"])
        obs["image"] = image
        return obs

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.mission = obs["mission"]
        return self._text(obs, info), info

    def step(self, action: str):
        obs, reward, terminated, truncated, info = self.env.step(ACTIONS.index(action))
        if reward > 0:
            self.progression = 1.0
        return self._text(obs, info), reward, terminated, truncated, info

    def get_stats(self) -> dict:
        return {"mission": self.mission, "progression": self.progression}


def make_like_balrog(task: str, max_steps: int = 100, **kwargs) -> tuple[LanguageWrapper, int]:
    """Build until the kind comes up; returns the env and how many were built."""
    base, goal = task.split("/")
    for built in range(1, 200):
        env = gym.make(base, max_steps=max_steps, **kwargs)
        if env.unwrapped.action_kinds[0].replace(" ", "_") == goal:
            return LanguageWrapper(env), built
        env.close()
    raise AssertionError(f"{goal} never came up")


@pytest.mark.parametrize("goal", BALROG_TASKS)
def test_balrog_style_episode(goal: str) -> None:
    env, _ = make_like_balrog(f"BabyAI-MixedTrainLocal-v0/{goal}", render_mode="rgb_array")
    obs, info = env.reset(seed=7)
    assert isinstance(obs["mission"], str) and obs["mission"] == info["mission"]
    assert obs["image"].size == (7 * 16, 7 * 16) and obs["text"]
    assert all(d.startswith("You see ") or d.startswith("You carry ") for d in info["descriptions"])
    assert env.max_steps == 100 and env.unwrapped.action_kinds == [goal.replace("_", " ")]
    rng = np.random.default_rng(0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = env.step(ACTIONS[rng.integers(6)])
        steps += 1
    assert steps <= 100 and (terminated or steps == 100)
    stats = env.get_stats()
    assert json.loads(json.dumps(stats)) == stats and stats["progression"] in (0.0, 1.0)
    assert stats["progression"] == float(info["success"])


@pytest.mark.parametrize("goal", BALROG_TASKS)
def test_bot_solves_every_kind(goal: str) -> None:
    import contextlib
    import io

    from minigrid.utils.baby_ai_bot import BabyAIBot

    env, _ = make_like_balrog(f"BabyAI-MixedTrainLocal-v0/{goal}")
    for seed in range(3):
        env.reset(seed=seed)
        bot = BabyAIBot(env.unwrapped)
        for _ in range(100):
            with contextlib.redirect_stdout(io.StringIO()):
                action = int(bot.replan())
            _, reward, terminated, truncated, info = env.step(ACTIONS[action])
            if terminated or truncated:
                break
        assert info["success"] and reward > 0 and env.get_stats()["progression"] == 1.0


def test_a_seed_reproduces_the_kind_and_the_episode() -> None:
    kinds = {gym.make("BabyAI-MixedTrainLocal-v0", seed=s).unwrapped.action_kinds[0] for s in range(30)}
    assert kinds == set(MIXED_KINDS)  # every kind comes up, so building until one does ends
    for s in range(5):
        a, b = gym.make("BabyAI-MixedTrainLocal-v0", seed=s), gym.make("BabyAI-MixedTrainLocal-v0", seed=s)
        assert a.unwrapped.action_kinds == b.unwrapped.action_kinds
        (obs_a, info_a), (obs_b, info_b) = a.reset(), b.reset()  # the construction seed seeds the first episode
        assert obs_a["mission"] == obs_b["mission"] and np.array_equal(obs_a["image"], obs_b["image"])
        assert info_a["descriptions"] == info_b["descriptions"]
    # BALROG's way: the kind by rejection, the episode by reset(seed=...)
    first, _ = make_like_balrog("BabyAI-MixedTrainLocal-v0/putnext")
    again, _ = make_like_balrog("BabyAI-MixedTrainLocal-v0/putnext")
    trajectories = []
    for env in (first, again):
        obs, info = env.reset(seed=11)
        steps = [(obs["mission"], tuple(info["descriptions"]))]
        for action in ["go forward", "turn left", "go forward", "pick up"]:
            obs, _, _, _, info = env.step(action)
            steps.append((obs["mission"], tuple(info["descriptions"])))
        trajectories.append(steps)
    assert trajectories[0] == trajectories[1]


def test_the_kind_stays_for_every_episode_of_an_env() -> None:
    env = gym.make("BabyAI-MixedTrainLocal-v0", kind="open")
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert info["task"] == "Open" and env.unwrapped.action_kinds == ["open"]


def test_held_out_pairs_split_train_and_test() -> None:
    from babyai_text.language import instruction_objects
    from babyai_text.level import HELD_OUT_PAIRS

    for env_id, mentions in (("BabyAI-MixedTrainLocal-v0", False), ("BabyAI-MixedTestLocal-v0", True)):
        for kind in MIXED_KINDS:
            env = gym.make(env_id, kind=kind)
            for seed in range(4):
                env.reset(seed=seed)
                objects = instruction_objects(env.unwrapped.instrs)
                assert any((o.color, o.type) in HELD_OUT_PAIRS for o in objects) == mentions, (env_id, kind)


@pytest.mark.parametrize("env_id", babyai_text.glam_ids())
def test_every_glam_id_plays_with_minigrid_observations(env_id: str) -> None:
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(obs) == {"image", "direction", "mission"} and isinstance(obs["mission"], str)
    assert info["descriptions"] and isinstance(env.unwrapped.action_kinds, list)
    obs, *_ = env.step(2)
    assert env.observation_space.contains(obs)


def test_glam_names_and_counts() -> None:
    sequences = ["PickUpSeqGoToLocal", "PickUpThenGoToLocal", "GoToAfterPickUpLocal", "PickUpSeqPickUpLocal"]
    for name in sequences:  # GLAM's sequence levels all report this string (sic)
        assert gym.make(f"BabyAI-{name}-v0").unwrapped.action_kinds == ["pick up seq pick up "]
    _, info = gym.make("BabyAI-GoToFrench-v0").reset(seed=0)
    assert info["mission"].startswith("va ") and info["descriptions"][0].startswith("Tu ")
    # GLAM's num_dists counts distractors: go to places one object more, put next two more
    assert gym.make("BabyAI-MixedTrainLocal-v0", kind="goto", num_dists=3).unwrapped.num_dists == 4
    assert gym.make("BabyAI-MixedTrainLocal-v0", kind="putnext", num_dists=3).unwrapped.num_dists == 5
    assert gym.make("BabyAI-MixedTrainLocal-v0", kind="goto", num_dists=0).unwrapped.num_dists == 1


def test_text_observations_for_our_agents() -> None:
    env = gym.make("BabyAI-MixedTrainLocal-v0", kind="pickup", observation="text")
    ours = gym.make("BabyAI-Text-MixedTrain-v0")
    assert env.observation_space == ours.observation_space  # saved agents load on it
    obs, info = env.reset(seed=0)
    text = babyai_text.decode_observation(obs)
    assert text.mission == info["mission"] and list(text.current) == info["descriptions"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"no task kind 'fly'.*goto"):
        gym.make("BabyAI-MixedTrainLocal-v0", kind="fly")
    with pytest.raises(ValueError, match="num_rows and num_cols must be 1"):
        gym.make("BabyAI-MixedTrainLocal-v0", num_cols=2)
    with pytest.raises(ValueError, match="observation must be"):
        gym.make("BabyAI-MixedTrainLocal-v0", observation="pixels")
    with pytest.raises(ValueError, match="num_dists"):
        gym.make("BabyAI-MixedTrainLocal-v0", num_dists=-1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        gym.make("BabyAI-MixedTrainLocal-v0", history_length=2)
    assert isinstance(gym.make("BabyAI-MixedTrainLocal-v0").unwrapped, GLAMLevel)
