"""Vectorised BabyAI-Text envs for training scripts, with optional reward scaling."""

from __future__ import annotations

import functools
import operator
from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

import babyai_text  # noqa: F401  (registers the ids)


def scale_reward(env: gym.Env, scale: float) -> gym.Env:
    """Multiply rewards by ``scale`` (GLAM and BabyAI trained with ×20); ``info["success"]`` is untouched."""
    if scale == 1.0:
        return env
    return gym.wrappers.TransformReward(env, functools.partial(operator.mul, scale))


def make_text_vec_env(
    env_id: str, n_envs: int = 1, seed: int = 0, reward_scale: float = 1.0, env_kwargs: dict[str, Any] | None = None
) -> VecEnv:
    """``n_envs`` Monitor-wrapped copies of ``env_id`` in a DummyVecEnv, seeded ``seed..seed+n_envs-1``."""
    return make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        env_kwargs=env_kwargs,
        vec_env_cls=DummyVecEnv,
        wrapper_class=functools.partial(scale_reward, scale=reward_scale),
    )
