"""CleanRLLogger: TensorBoard tags and the episode CSV of any SB3 algorithm."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.env_util import make_vec_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from glam_experiments.callbacks import CleanRLLogger


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


def test_every_dqn_update_is_logged_once(tmp_path) -> None:
    model = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=10, train_freq=5, buffer_size=100, seed=0)
    model.learn(60, callback=CleanRLLogger(tmp_path))
    steps = scalar_steps(tmp_path, "losses/td_loss")
    # one point per call of train() (one gradient step each), at the step it trained
    assert len(steps) == model._n_updates > 0
    assert steps == sorted(set(steps)) and all(step % 5 == 0 for step in steps)
