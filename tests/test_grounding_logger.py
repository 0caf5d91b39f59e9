"""GroundingLogger: the grounding diagnostics of the policy being trained, in TensorBoard and a CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import PPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import babyai_text  # noqa: F401
from glam_experiments.callbacks import GroundingLogger
from llm_policy import LLMPolicy

ENV = "BabyAI-Text-PickUpS5N2-v0"


def tiny_ppo(model_dir: str) -> PPO:
    torch.manual_seed(0)
    return PPO(
        LLMPolicy, gym.make(ENV), n_steps=4, batch_size=4, n_epochs=1, seed=0, policy_kwargs={"model": model_dir}
    )


def test_measures_after_every_n_updates_and_at_the_end(tiny_llama: str, tmp_path: Path) -> None:
    logger = GroundingLogger(ENV, every=2, run_dir=tmp_path, num_states=12, seed=5)
    tiny_ppo(tiny_llama).learn(3 * 4, callback=logger)
    with open(tmp_path / "grounding.csv") as f:
        rows = list(csv.DictReader(f))
    # after 0 updates (at the first rollout's end), after 2, and after the last (3)
    assert [int(r["updates"]) for r in rows] == [0, 2, 3]
    for row in rows:
        assert 0 <= float(row["bot_agreement"]) <= 1 and float(row["state_dependence"]) >= 0
        assert float(row["agreement_gain"]) == pytest.approx(
            float(row["bot_agreement"]) - float(row["constant_agreement"])
        )
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    for tag in ("grounding/bot_agreement", "grounding/state_dependence", "grounding/value_std"):
        assert [e.step for e in acc.Scalars(tag)] == [4, 12, 12]
    assert "probes/goal_left/turn left" in scalars and "probes/wall_ahead/go forward" in scalars
    assert len(logger.history) == 3


def test_resumed_run_drops_the_killed_runs_measurements_after_its_checkpoint(tiny_llama: str, tmp_path: Path) -> None:
    killed = [[4, 0], [8, 1], [12, 2]]  # a run killed after measuring at 12 frames, checkpointed at 8
    with open(tmp_path / "grounding.csv", "w", newline="") as f:
        csv.writer(f).writerows([GroundingLogger.FIELDS, *(row + [0.5] * 6 for row in killed)])
    logger = GroundingLogger(ENV, every=1, run_dir=tmp_path, num_states=4, resume_step=8)
    tiny_ppo(tiny_llama).learn(4, callback=logger)
    with open(tmp_path / "grounding.csv") as f:
        rows = [(int(r["frames"]), int(r["updates"])) for r in csv.DictReader(f)]
    assert rows[:2] == [(4, 0), (8, 1)] and (12, 2) not in rows and len(rows) == 2 + len(logger.history)


def test_measuring_leaves_training_unchanged(tiny_llama: str, tmp_path: Path) -> None:
    plain = tiny_ppo(tiny_llama)
    plain.learn(2 * 4)
    measured = tiny_ppo(tiny_llama)
    measured.learn(2 * 4, callback=GroundingLogger(ENV, every=1, run_dir=tmp_path, num_states=8))
    for a, b in zip(plain.policy.parameters(), measured.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="every"):
        GroundingLogger(ENV, every=0, run_dir=tmp_path)


def test_training_script_flag_and_diagnostics_figure(tiny_llama: str, tmp_path: Path) -> None:
    from glam_experiments.curves import plot_diagnostics, read_grounding
    from tests.helpers import load_example

    script = load_example("examples/train_llm_ppo.py")
    args = script.Args(
        model=tiny_llama,
        env_id=ENV,
        n_envs=2,
        n_steps=4,
        batch_size=8,
        n_epochs=1,
        total_timesteps=16,
        run_dir=tmp_path,
        grounding_every=1,
        grounding_states=6,
    )
    script.main(args)
    (run,) = tmp_path.iterdir()
    assert list(read_grounding(run)["updates"]) == [0, 1, 2]
    png = tmp_path / "diagnostics.png"
    plot_diagnostics(run, png, title="tiny")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_levels_without_english_goals_are_measured_without_probes(tiny_llama: str, tmp_path: Path) -> None:
    logger = GroundingLogger(ENV, every=1, run_dir=tmp_path, num_states=4, env_kwargs={"variant": "French"})
    model = PPO(
        LLMPolicy,
        gym.make(ENV, variant="French"),
        n_steps=4,
        batch_size=4,
        n_epochs=1,
        seed=0,
        policy_kwargs={"model": tiny_llama},
    )
    with pytest.warns(UserWarning, match="no probe prompts.*probe prompts need an English"):
        model.learn(4, callback=logger)
    assert logger.history and logger.history[0]["probes"] == {}
