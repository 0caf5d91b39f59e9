"""minigrid's BabyAIBot, acting through our env, proves every level is solvable."""

from __future__ import annotations

import contextlib
import io

import gymnasium as gym
import pytest
from minigrid.utils.baby_ai_bot import BabyAIBot

EPISODES = 200


@pytest.mark.slow
def test_bot_solves_level(env_id: str) -> None:
    env = gym.make(env_id)
    successes = 0
    for seed in range(EPISODES):
        env.reset(seed=seed)
        bot = BabyAIBot(env.unwrapped)
        with contextlib.redirect_stdout(io.StringIO()):
            while True:
                action = bot.replan()
                _, reward, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
        assert info["success"] == (reward > 0)
        successes += info["success"]
    assert successes >= 0.99 * EPISODES, f"{env_id}: bot solved {successes}/{EPISODES}"
