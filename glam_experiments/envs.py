"""Vectorised BabyAI-Text envs for training scripts, with optional reward scaling."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

import babyai_text  # noqa: F401  (registers the ids)


class ScaleReward(gym.RewardWrapper):
    """Multiply rewards by ``scale`` (GLAM and BabyAI trained with ×20); ``info["success"]`` is untouched.

    A class (not a lambda) so that rl-zoo3's ``env_wrapper`` can name it in a YAML file.

    :param env: the env.
    :param scale: the factor.
    """

    def __init__(self, env: gym.Env, scale: float = 20.0) -> None:
        super().__init__(env)
        self.scale = scale

    def reward(self, reward: float) -> float:
        return reward * self.scale


def scale_reward(env: gym.Env, scale: float) -> gym.Env:
    """``env`` with rewards multiplied by ``scale`` (unwrapped when ``scale`` is 1)."""
    return env if scale == 1.0 else ScaleReward(env, scale)


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
