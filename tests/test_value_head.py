"""The value head's options: detached features and per-feature input standardisation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from llm_policy import LLMPolicy
from llm_policy.value_head import RunningStandardizer
from tests.helpers import text_batch

ENV_ID = "BabyAI-Text-GoToS5N2-v0"


def make_ppo(model: str, **policy_kwargs) -> PPO:
    env = DummyVecEnv([lambda: gym.make(ENV_ID)] * 2)
    return PPO(
        LLMPolicy, env, n_steps=8, batch_size=8, n_epochs=2, seed=0, policy_kwargs={"model": model, **policy_kwargs}
    )


def test_standardizer_keeps_running_statistics_of_training_batches() -> None:
    torch.manual_seed(0)
    norm = RunningStandardizer(3)
    batches = [torch.randn(5, 3) * torch.tensor([1.0, 10.0, 0.1]) + torch.tensor([20.0, -3.0, 0.0]) for _ in range(4)]
    for batch in batches:
        norm.update(batch)
    data = torch.cat(batches).double()
    torch.testing.assert_close(norm.mean, data.mean(0))
    torch.testing.assert_close(norm.m2 / (norm.count - 1), data.var(0))
    norm.eval()
    out = norm(data.float())
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0), torch.ones(3), atol=1e-3, rtol=0)


def test_standardizer_changes_only_through_update() -> None:
    norm = RunningStandardizer(2)
    out = norm(torch.tensor([[1.0, 5.0], [3.0, 9.0]]))  # before any update: the batch's own statistics
    torch.testing.assert_close(out, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-4, rtol=0)
    norm.train()
    norm(torch.ones(4, 2, requires_grad=True))
    assert norm.count == 0


def test_only_ppo_updates_change_the_statistics(tiny_llama: str) -> None:
    model = make_ppo(tiny_llama, value_input_norm=True)
    obs = model.policy.obs_to_tensor(text_batch(ENV_ID, n=3))[0]
    model.policy.set_training_mode(True)
    model.policy.predict_values(obs).sum().backward()
    model.policy(obs)
    assert model.policy.value_net[0].count == 0
    model.policy.evaluate_actions(obs, torch.zeros(3, dtype=torch.long))
    assert model.policy.value_net[0].count == 3


def test_detached_value_loss_leaves_the_lm_alone(tiny_llama: str) -> None:
    obs = make_ppo(tiny_llama).policy.obs_to_tensor(text_batch(ENV_ID, n=3))[0]
    for features, reaches_lm in (("shared", True), ("detached", False)):
        policy = make_ppo(tiny_llama, value_features=features).policy
        policy.predict_values(obs).sum().backward()
        lm_grads = [p.grad for p in policy.lm.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in lm_grads) == reaches_lm
        assert all(p.grad is not None for p in policy.value_net.parameters())


def test_value_input_norm_trains_saves_and_loads(tiny_llama: str, tmp_path) -> None:
    model = make_ppo(tiny_llama, value_input_norm=True, value_features="detached")
    assert isinstance(model.policy.value_net[0], RunningStandardizer)
    model.learn(16)
    norm = model.policy.value_net[0]
    assert norm.count == 2 * 16  # two epochs over the rollout's 16 observations
    obs = model.policy.obs_to_tensor(text_batch(ENV_ID, n=3))[0]
    values = model.policy.predict_values(obs)
    model.save(tmp_path / "agent")
    loaded = PPO.load(tmp_path / "agent", env=model.get_env())
    assert loaded.policy.value_features == "detached" and loaded.policy.value_input_norm
    torch.testing.assert_close(loaded.policy.predict_values(obs), values, atol=0, rtol=0)
    np.testing.assert_array_equal(loaded.policy.value_net[0].mean.numpy(), norm.mean.numpy())


def test_learning_rate_zero_keeps_the_distribution(tiny_llama: str) -> None:
    """The value options do not touch the policy: PPO with learning rate 0 has approx KL 0."""
    model = make_ppo(tiny_llama, value_input_norm=True, value_features="detached", lm_learning_rate=None)
    model.learning_rate = 0.0
    model.lr_schedule = lambda _: 0.0
    model.learn(16)
    assert model.logger.name_to_value.get("train/approx_kl", 0.0) == pytest.approx(0.0, abs=1e-6)


def test_bad_value_options(tiny_llama: str) -> None:
    with pytest.raises(ValueError, match="value_features must be one of"):
        make_ppo(tiny_llama, value_features="frozen")
