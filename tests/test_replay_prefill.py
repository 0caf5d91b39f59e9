"""Demonstrations in DRRN's replay buffer (glam_algorithms.bc, examples/train_drrn.py --demonstrations)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN

from glam_algorithms.bc import prefill_replay_buffer
from glam_baselines import DRRNPolicy
from glam_experiments.envs import make_text_vec_env
from tests.helpers import load_example

minari = pytest.importorskip("minari")

ENV_ID = "BabyAI-Text-GoToS5N2-v0"


@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> minari.MinariDataset:
    from glam_experiments.demonstrations import record_demonstrations

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return record_demonstrations(ENV_ID, episodes=5, seed=0, dataset_id="babyai-text/prefill-bot-v0")


def _dqn(n_envs: int = 3, buffer_size: int = 300) -> DQN:
    env = make_text_vec_env(ENV_ID, n_envs, 0, 1.0)
    return DQN(DRRNPolicy, env, buffer_size=buffer_size, learning_starts=0, batch_size=4, train_freq=1, seed=0)


def test_transitions_go_in_as_sb3_stores_them(dataset: minari.MinariDataset) -> None:
    model = _dqn()
    added = prefill_replay_buffer(model, dataset, reward_scale=20.0)
    assert added == dataset.total_steps
    buffer, n_envs = model.replay_buffer, 3
    groups = -(-added // n_envs)
    assert buffer.pos == groups and not buffer.full

    def stored(array: np.ndarray) -> np.ndarray:
        """The buffer's rows in the order they were added (position-major, env-minor)."""
        return array[:groups].reshape(groups * n_envs, *array.shape[2:])

    episodes = list(dataset.iterate_episodes())
    expected_actions = np.concatenate([e.actions for e in episodes])
    expected_rewards = np.concatenate([e.rewards for e in episodes]) * 20.0
    expected_dones = np.concatenate([e.terminations | e.truncations for e in episodes])
    for key in buffer.observations:
        shape = (-1, *buffer.observations[key].shape[2:])  # a scalar observation is kept as shape (1,)
        first = np.concatenate([e.observations[key][:-1] for e in episodes]).reshape(shape)
        then = np.concatenate([e.observations[key][1:] for e in episodes]).reshape(shape)
        np.testing.assert_array_equal(stored(buffer.observations[key])[:added], first)
        np.testing.assert_array_equal(stored(buffer.next_observations[key])[:added], then)
        # the last group wraps around to the first transitions
        np.testing.assert_array_equal(stored(buffer.observations[key])[added:], first[: groups * n_envs - added])
    np.testing.assert_array_equal(stored(buffer.actions).ravel()[:added], expected_actions)
    np.testing.assert_allclose(stored(buffer.rewards)[:added], expected_rewards)
    np.testing.assert_array_equal(stored(buffer.dones)[:added], expected_dones)
    assert expected_rewards.sum() > 0 and expected_dones.sum() == len(episodes)  # the bot succeeds
    assert not stored(buffer.timeouts).any()


def test_dqn_trains_on_the_demonstrations_then_its_own_play(dataset: minari.MinariDataset) -> None:
    model = _dqn(n_envs=2)
    prefill_replay_buffer(model, dataset, episodes=2)
    before = model.replay_buffer.pos
    model.learn(8)
    assert model.replay_buffer.pos == before + 4  # 8 frames of 2 envs follow the demonstrations
    assert model._n_updates > 0


def test_bad_input_is_refused(dataset: minari.MinariDataset) -> None:
    with pytest.raises(ValueError, match="do not fit in the replay buffer"):
        prefill_replay_buffer(_dqn(n_envs=2, buffer_size=10), dataset)
    with pytest.raises(ValueError, match="episodes must be at least 1"):
        prefill_replay_buffer(_dqn(), dataset, episodes=0)
    other = _dqn()
    other.observation_space = gym.spaces.Discrete(3)  # a model of another env
    with pytest.raises(ValueError, match="observation space"):
        prefill_replay_buffer(other, dataset)


def test_train_drrn_fills_its_buffer_from_a_dataset(dataset: minari.MinariDataset, tmp_path: Path) -> None:
    script = load_example("examples/train_drrn.py")
    args = script.Args(
        env_id=ENV_ID,
        total_timesteps=16,
        n_envs=2,
        learning_starts=0,
        demonstrations="babyai-text/prefill-bot-v0",
        demo_episodes=3,
        run_dir=tmp_path / "runs",
    )
    model = script.main(args)
    steps = sum(len(e.actions) for e in dataset.iterate_episodes(dataset.episode_indices[:3]))
    assert model.replay_buffer.pos == -(-steps // 2) + 8
    (run,) = (tmp_path / "runs").iterdir()
    assert "__drrn_demos__" in run.name
