from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import babyai_text

ALL_IDS = babyai_text.registered_ids()


def rollout(env: gym.Env, seed: int, steps: int, action_seed: int = 0) -> list:
    """(obs, reward, terminated, truncated, info) of a random-action trajectory with resets."""
    rng = np.random.default_rng(action_seed)
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False, info)]
    for _ in range(steps):
        step = env.step(int(rng.integers(0, 6)))
        out.append(step)
        if step[2] or step[3]:
            obs, info = env.reset()
            out.append((obs, 0.0, False, False, info))
    return out


@pytest.fixture(params=ALL_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param
