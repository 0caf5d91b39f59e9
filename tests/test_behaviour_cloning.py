"""Behaviour cloning of LLMPolicy from a Minari dataset of bot demonstrations, then PPO."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from glam_algorithms.bc import behaviour_clone, check_demonstrations, demonstration_steps, split_episodes
from glam_algorithms.gigpo import discounted_returns
from glam_experiments.configs import LLMPPOConfig
from glam_experiments.envs import make_text_vec_env
from tests.helpers import REPO, load_example, text_batch

minari = pytest.importorskip("minari")

ENV_ID = "BabyAI-Text-GoToS5N2-v0"  # the bot solves it in a few steps: small datasets


def _create(dataset_id: str, buffers: list, env: gym.Env) -> minari.MinariDataset:
    """A dataset of ``buffers`` (Minari's own writer: record_demonstrations records only bot-like episodes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # minari asks for an author, a description...
        return minari.create_dataset_from_buffers(dataset_id, buffers, env=env, algorithm_name="bot")


@pytest.fixture
def datasets_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


@pytest.fixture
def dataset(datasets_path: Path) -> minari.MinariDataset:
    from glam_experiments.demonstrations import record_demonstrations

    return record_demonstrations(ENV_ID, episodes=6, seed=0, dataset_id="babyai-text/test-bot-v0")


def make_model(model: str, finetune: str = "top_k", **config) -> PPO:
    settings = {"n_envs": 2, "n_steps": 8, "batch_size": 8, "n_epochs": 1, "finetune": finetune, **config}
    args = LLMPPOConfig(model=model, **settings)
    return args.make(make_text_vec_env(ENV_ID, args.n_envs, 0, args.reward_scale), seed=0)


def dataset_obs(model: PPO, dataset: minari.MinariDataset) -> dict:
    steps = demonstration_steps(dataset.iterate_episodes())
    return model.policy.obs_to_tensor(steps.observations)[0]


# --- data ---------------------------------------------------------------------------------


def test_discounted_returns() -> None:
    np.testing.assert_allclose(discounted_returns(np.array([0.0, 0.0, 1.0]), 0.5), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 1.0]), 1.0), [2.0, 1.0])


def test_steps_leave_out_the_final_observation(dataset: minari.MinariDataset) -> None:
    steps = demonstration_steps(dataset.iterate_episodes(), gamma=0.9, reward_scale=20.0)
    assert len(steps) == dataset.total_steps
    first = next(dataset.iterate_episodes())
    n = len(first.actions)
    for key, value in first.observations.items():
        np.testing.assert_array_equal(steps.observations[key][:n], value[:-1])
    np.testing.assert_array_equal(steps.actions[:n], first.actions)
    # the bot succeeds: its last step's return is 20 x the env's reward, discounted before
    assert steps.returns[n - 1] == pytest.approx(20 * first.rewards[-1])
    assert steps.returns[0] == pytest.approx(20 * first.rewards[-1] * 0.9 ** (n - 1), rel=1e-6)


def test_held_out_episodes_are_seeded_and_never_all() -> None:
    ids = np.arange(10)
    train, val = split_episodes(ids, 0.2, np.random.default_rng(0))
    assert len(val) == 2 and not set(train) & set(val) and sorted(train + val) == list(range(10))
    assert split_episodes(ids, 0.2, np.random.default_rng(0)) == (train, val)
    assert split_episodes(ids, 0.0, np.random.default_rng(0)) == (list(range(10)), [])
    assert len(split_episodes(ids, 0.01, np.random.default_rng(0))[1]) == 1  # a positive fraction holds one out
    assert split_episodes(np.arange(1), 0.5, np.random.default_rng(0)) == ([0], [])  # never all


# --- training -------------------------------------------------------------------------------


def test_loss_goes_down_on_a_fixed_batch(tiny_llama: str, dataset: minari.MinariDataset) -> None:
    model = make_model(tiny_llama)
    # one minibatch holds every step: each epoch is one gradient step on the same batch
    history = behaviour_clone(
        model, dataset, epochs=4, batch_size=1000, val_fraction=0, lm_learning_rate=1e-3, progress=False
    )
    losses = [epoch.loss for epoch in history[1:]]
    assert all(later < earlier for earlier, later in itertools.pairwise(losses)), losses
    assert history[0].val_accuracy is None and history[-1].steps == 4 * dataset.total_steps


@pytest.mark.parametrize("finetune", ["full", "lora", "top_k"])
def test_each_mode_clones_saves_and_continues_with_ppo(
    tiny_llama: str, dataset: minari.MinariDataset, finetune: str, tmp_path: Path
) -> None:
    model = make_model(tiny_llama, finetune)
    obs = dataset_obs(model, dataset)
    before = model.policy.action_probabilities(obs)
    history = behaviour_clone(model, dataset, epochs=2, batch_size=8, lm_learning_rate=1e-3, progress=False)
    assert not torch.allclose(model.policy.action_probabilities(obs), before)
    assert history[2].val_accuracy is not None and 0 <= history[2].val_accuracy <= 1
    # observations no policy scored before (other missions than the dataset's): with top_k, the
    # frozen-block cache would answer the trained policy on the demonstrations, and the loaded one's
    # full forward differs in the last bits
    fresh = model.policy.obs_to_tensor(text_batch("BabyAI-Text-PickUpS5N2-v0", n=3))[0]
    probs = model.policy.action_probabilities(fresh)
    model.save(tmp_path / "agent")
    loaded = PPO.load(tmp_path / "agent", env=model.get_env())
    torch.testing.assert_close(loaded.policy.action_probabilities(fresh), probs, atol=0, rtol=0)
    loaded.learn(16)  # PPO continues from the cloned policy
    assert loaded.num_timesteps == 16


def test_ppo_learns_after_cloning_and_the_rates_are_ppos_again(tiny_llama: str, dataset: minari.MinariDataset) -> None:
    model = make_model(tiny_llama)
    rates = [group["lr"] for group in model.policy.optimizer.param_groups]
    behaviour_clone(model, dataset, epochs=1, batch_size=8, lm_learning_rate=1e-2, progress=False)
    assert [group["lr"] for group in model.policy.optimizer.param_groups] == rates
    model.learn(16)
    assert model.num_timesteps == 16


def test_value_head_fitted_or_left(tiny_llama: str, dataset: minari.MinariDataset, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = make_model(tiny_llama)
    history = behaviour_clone(
        model, dataset, epochs=3, batch_size=8, value_coef=0.5, run_dir=tmp_path / "fit", progress=False
    )
    assert history[-1].value_loss < history[1].value_loss
    events = EventAccumulator(str(tmp_path / "fit")).Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"losses/bc_loss", "losses/bc_value_loss", "charts/bc_accuracy", "charts/bc_val_accuracy"}
    assert expected | {"losses/bc_val_loss", "charts/bc_learning_rate", "charts/bc_SPS"} <= tags
    # validation before training (step 0) and after each epoch
    assert [e.step for e in events.Scalars("charts/bc_val_accuracy")] == [h.steps for h in history]

    model = make_model(tiny_llama)
    head = {k: v.clone() for k, v in model.policy.value_net.named_parameters()}  # (not the input statistics)
    history = behaviour_clone(model, dataset, epochs=1, batch_size=8, run_dir=tmp_path / "no_fit", progress=False)
    assert history[-1].value_loss is None
    for key, value in model.policy.value_net.named_parameters():
        torch.testing.assert_close(value, head[key], atol=0, rtol=0)
    assert "losses/bc_value_loss" not in EventAccumulator(str(tmp_path / "no_fit")).Reload().Tags()["scalars"]


def test_first_episodes_only(tiny_llama: str, dataset: minari.MinariDataset) -> None:
    model = make_model(tiny_llama)
    history = behaviour_clone(model, dataset, epochs=1, episodes=2, val_fraction=0, batch_size=8, progress=False)
    first_two = sum(len(e.actions) for e in dataset.iterate_episodes([0, 1]))
    assert history[-1].steps == first_two


# --- refusals ------------------------------------------------------------------------------


def test_empty_dataset_is_refused(tiny_llama: str, datasets_path: Path) -> None:
    empty = _create("babyai-text/empty-v0", [], gym.make(ENV_ID))
    model = make_model(tiny_llama)
    with pytest.raises(ValueError, match="'babyai-text/empty-v0' holds no demonstrations"):
        behaviour_clone(model, empty, progress=False)


def test_other_spaces_are_refused(datasets_path: Path) -> None:
    from minari.data_collector.episode_buffer import EpisodeBuffer

    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    next_obs, reward, *_ = env.step(0)
    buffer = EpisodeBuffer(
        observations=np.stack([obs, next_obs]),
        actions=np.array([0]),
        rewards=[reward],
        terminations=[False],
        truncations=[True],
    )
    cartpole = _create("cartpole/test-v0", [buffer], env)
    text = gym.make(ENV_ID)
    with pytest.raises(ValueError, match=r"another observation space than the env's: Box\(4,\) float32 \(dataset\)"):
        check_demonstrations(cartpole, text.observation_space, text.action_space)


def test_frozen_policy_and_bad_arguments_are_refused(tiny_llama: str, dataset: minari.MinariDataset) -> None:
    with pytest.raises(ValueError, match="frozen"):
        behaviour_clone(make_model(tiny_llama, "frozen"), dataset, progress=False)
    model = make_model(tiny_llama)
    for kwargs, message in (({"epochs": 0}, "epochs"), ({"episodes": 0}, "episodes"), ({"val_fraction": 1}, "val_")):
        with pytest.raises(ValueError, match=message):
            behaviour_clone(model, dataset, progress=False, **kwargs)


# --- the script ------------------------------------------------------------------------------


def load_script():
    return load_example("examples/train_bc.py")


def test_script_builds_the_policy_as_ppo() -> None:
    args = load_script().Args()
    for field in dataclasses.fields(LLMPPOConfig):
        assert getattr(args, field.name) == getattr(LLMPPOConfig(), field.name), field.name


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--dataset-id is required"),
        (["--dataset-id", "x", "--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--dataset-id", "x", "--bc-batch-size", "0"], "--bc-batch-size must be at least 1"),
        (["--dataset-id", "x", "--val-fraction", "1"], "--val-fraction must be in [0, 1), got 1.0"),
        (["--dataset-id", "x", "--ppo-timesteps", "-1"], "--ppo-timesteps must be at least 0"),
        (["--dataset-id", "nowhere/none-v0"], "nowhere/none-v0"),
    ],
)
def test_script_refuses_bad_flags(
    flags: list[str], message: str, datasets_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from glam_experiments.cli import run_command

    script = load_script()
    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda argv: script.main(script.tyro.cli(script.Args, args=argv)), flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_script_clones_then_runs_ppo(tiny_llama: str, dataset: minari.MinariDataset, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["--dataset-id", "babyai-text/test-bot-v0", "--model", tiny_llama, "--epochs", "1", "--bc-batch-size", "8"]
    args += ["--ppo-timesteps", "32", "--n-envs", "2", "--n-steps", "16", "--batch-size", "16", "--n-epochs", "1"]
    args += ["--run-dir", str(tmp_path / "runs"), "--save-model"]
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_bc.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith(f"{ENV_ID}__bc_llm_ppo__1__")  # the dataset's env by default
    assert (run_dir / "model.zip").exists() and (run_dir / "flags.json").exists()
    tags = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    assert {"losses/bc_loss", "charts/bc_val_accuracy", "charts/SPS", "losses/policy_loss"} <= tags
    assert PPO.load(run_dir / "model.zip").num_timesteps == 32


def test_the_rate_scale_key_is_the_optimizers() -> None:
    from glam_algorithms.bc import bc
    from llm_policy import optimizer

    assert bc.LR_SCALE == optimizer.LR_SCALE
