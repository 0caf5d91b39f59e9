"""The critic's training settings of LLMPPOConfig: TWOSOME's critic warm-up and normalised returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import VecNormalize

from glam_experiments.callbacks import CriticWarmup
from glam_experiments.cli import UsageError
from glam_experiments.configs import LLMPPOConfig
from llm_policy.optimizer import LR_SCALE

ENV_ID = "BabyAI-Text-GoToS5N2-v0"


def _config(model: str, **changes) -> LLMPPOConfig:
    # rates large enough that one update visibly moves every trained weight
    sizes = {"n_envs": 2, "n_steps": 8, "batch_size": 8, "n_epochs": 1, "lm_learning_rate": 1e-2}
    return LLMPPOConfig(model=model, **{**sizes, **changes})


def _weights(model) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    policy = model.policy
    lm = [p.detach().clone() for p in policy.lm.parameters() if p.requires_grad]
    return lm, [p.detach().clone() for p in policy.value_net.parameters()]


def _moved(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_warmup_trains_the_value_head_alone_for_its_updates(tiny_llama: str) -> None:
    config = _config(tiny_llama, critic_warmup=2)
    model = config.make(config.make_env(ENV_ID, seed=0), seed=0)
    scales = [group.get(LR_SCALE) for group in model.policy.optimizer.param_groups]
    rollout = config.n_envs * config.n_steps
    for update in range(3):
        lm, value = _weights(model)
        model.learn(rollout, callback=config.callbacks(), reset_num_timesteps=update == 0)
        lm_after, value_after = _weights(model)
        assert _moved(value, value_after), f"update {update + 1}: the value head learns"
        assert _moved(lm, lm_after) == (update == 2), f"update {update + 1}: the LM learns after the warm-up only"
        # between learn calls the groups have their own rates (a saved agent keeps them)
        assert [group.get(LR_SCALE) for group in model.policy.optimizer.param_groups] == scales


def test_no_warmup_adds_no_callback_and_refuses_a_negative_one() -> None:
    assert LLMPPOConfig().callbacks() == []
    assert [type(c) for c in LLMPPOConfig(critic_warmup=3).callbacks()] == [CriticWarmup]
    with pytest.raises(UsageError, match="critic_warmup"):
        LLMPPOConfig(critic_warmup=-1).check()
    with pytest.raises(ValueError, match="at least 0"):
        CriticWarmup(-1)


def test_normalised_rewards_wrap_the_envs_and_train(tiny_llama: str) -> None:
    plain = LLMPPOConfig(n_envs=2).make_env(ENV_ID, seed=0)
    assert not isinstance(plain, VecNormalize)
    config = _config(tiny_llama, normalize_reward=True, reward_scale=1.0)
    env = config.make_env(ENV_ID, seed=0)
    assert isinstance(env, VecNormalize) and env.norm_reward and not env.norm_obs and env.gamma == config.gamma
    model = config.make(env, seed=0)
    model.learn(config.n_envs * config.n_steps)
    assert np.isfinite(model.rollout_buffer.returns).all()
    assert env.ret_rms.count > 1  # the running statistics of the returns were updated
