"""DRRN with stock SB3 DQN."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.vec_env import DummyVecEnv

from babyai_text.observation import ACTION_NAME_BYTES
from glam_baselines import DRRNPolicy
from tests.conftest import text_batch


def make_dqn(**policy_kwargs) -> DQN:
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    return DQN(
        DRRNPolicy,
        env,
        learning_starts=8,
        batch_size=8,
        buffer_size=256,
        train_freq=2,
        seed=0,
        policy_kwargs=policy_kwargs,
    )


def test_q_values_are_permutation_equivariant() -> None:
    q_net = make_dqn().q_net
    obs = q_net.obs_to_tensor(text_batch(n=2))[0]
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    names = obs["action_names"].view(2, 6, ACTION_NAME_BYTES)
    permuted = dict(obs)
    permuted["action_names"] = names[:, perm].reshape(2, -1)
    # keep the action history naming the same actions
    inverse = torch.argsort(perm)
    hist = obs["actions"].clone()
    permuted["actions"] = torch.where(hist >= 0, inverse[hist.clamp(min=0).long()].to(hist.dtype), hist)
    with torch.no_grad():
        q, q_perm = q_net(obs), q_net(permuted)
    torch.testing.assert_close(q_perm, q[:, perm])


def test_unknown_words_do_not_crash() -> None:
    q_net = make_dqn().q_net
    for env_id in ("BabyAI-Text-GoTo-French-v0", "BabyAI-Text-GoTo-InventedWords-v0"):
        obs = q_net.obs_to_tensor(text_batch(env_id, n=2))[0]
        assert q_net(obs).shape == (2, 6)


@pytest.mark.parametrize("exploration", ["epsilon", "softmax"])
def test_trains_with_stock_dqn(exploration: str, tmp_path) -> None:
    model = make_dqn(exploration=exploration, embedding_dim=16, hidden_dim=16)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(48)
    assert any(not torch.equal(before[k], v) for k, v in model.policy.state_dict().items())
    model.save(tmp_path / "drrn")
    loaded = DQN.load(tmp_path / "drrn")
    obs = text_batch(n=2)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_softmax_exploration_samples() -> None:
    q_net = make_dqn(exploration="softmax", temperature=100.0).q_net
    obs = q_net.obs_to_tensor(text_batch(n=2))[0]
    draws = {int(q_net._predict(obs, deterministic=False)[0]) for _ in range(60)}
    assert len(draws) > 1
    greedy = {int(q_net._predict(obs, deterministic=True)[0]) for _ in range(5)}
    assert len(greedy) == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exploration must be"):
        make_dqn(exploration="boltzmann")
    with pytest.raises(ValueError, match="BabyAI-Text observations"):
        DQN(DRRNPolicy, gym.make("CartPole-v1"))
