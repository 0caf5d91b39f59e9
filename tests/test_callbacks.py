"""CleanRLLogger: TensorBoard tags and the episode CSV of any SB3 algorithm."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
from sb3_contrib import RecurrentPPO
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.env_util import make_vec_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from glam_experiments.callbacks import CleanRLLogger, loss_tags
from glam_experiments.curves import STABILITY_TAGS, read_scalars


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [event.step for event in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def test_every_ppo_update_is_logged_at_its_step_including_the_last(tmp_path) -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=2, seed=0)
    callback = CleanRLLogger(tmp_path)
    model.learn(4 * 32, callback=callback)  # 4 rollouts of 2 x 16 steps, 4 updates
    rollout = 2 * 16
    for tag in ("losses/approx_kl", "losses/value_loss", "losses/policy_loss", "charts/learning_rate"):
        assert scalar_steps(tmp_path, tag) == [rollout, 2 * rollout, 3 * rollout, 4 * rollout], tag
    # the logger is SB3's own again once training ends
    assert "record" not in vars(model.logger)


def test_ppo_logs_cleanrl_ppo_names_and_no_td_loss(tmp_path) -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0)
    model.learn(2 * 32, callback=CleanRLLogger(tmp_path))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    ppo_names = {"loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "explained_variance"}
    assert {t for t in tags if t.startswith("losses/")} == {f"losses/{name}" for name in ppo_names}
    assert len(events.Scalars("losses/loss")) == 2  # one point per update
    # what the diagnostics figure and the recipe study read
    assert set(read_scalars(tmp_path)) == set(STABILITY_TAGS)


def test_recurrent_ppo_logs_ppos_total_loss(tmp_path) -> None:
    model = RecurrentPPO("MlpLstmPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=8, batch_size=16)
    assert loss_tags(model)["train/loss"] == "losses/loss"
    model.learn(16, callback=CleanRLLogger(tmp_path))  # one update
    assert scalar_steps(tmp_path, "losses/loss") == [16]
    assert scalar_steps(tmp_path, "losses/td_loss") == []


def test_every_dqn_update_is_logged_once(tmp_path) -> None:
    model = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=10, train_freq=5, buffer_size=100, seed=0)
    model.learn(60, callback=CleanRLLogger(tmp_path))
    steps = scalar_steps(tmp_path, "losses/td_loss")
    # one point per call of train() (one gradient step each), at the step it trained
    assert len(steps) == model._n_updates > 0
    assert steps == sorted(set(steps)) and all(step % 5 == 0 for step in steps)
    assert scalar_steps(tmp_path, "losses/loss") == []  # the TD loss is not PPO's total loss
