"""Random and BabyAIBot agents behind SB3's predict interface."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from glam_baselines import BotAgent, RandomAgent


def success_rate(agent, env: DummyVecEnv, episodes: int) -> float:
    successes = []

    def record(locals_, _globals) -> None:
        if locals_["done"]:
            successes.append(locals_["info"]["success"])

    evaluate_policy(agent, env, n_eval_episodes=episodes, callback=record, warn=False)
    return float(np.mean(successes))


def test_bot_agent_solves_through_evaluate_policy() -> None:
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-PickUpSeqGoTo-v0")] * 2)
    env.seed(0)
    assert success_rate(BotAgent(env), env, 20) == 1.0


def test_random_agent() -> None:
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    env.seed(0)
    rate = success_rate(RandomAgent(env.action_space, seed=0), env, 40)
    assert 0.0 < rate < 0.6
    single = gym.make("BabyAI-Text-GoTo-v0")
    obs, _ = single.reset(seed=0)
    action, state = RandomAgent(single.action_space, seed=0).predict(obs)
    assert 0 <= int(action) < 6 and state is None


def test_bot_agent_refuses_subprocess_envs() -> None:
    env = SubprocVecEnv([lambda: gym.make("babyai_text:BabyAI-Text-GoToS5N2-v0")])
    try:
        with pytest.raises(ValueError, match="DummyVecEnv"):
            BotAgent(env)
    finally:
        env.close()
