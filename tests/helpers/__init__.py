"""Helpers the tests import (fixtures live in ``tests/conftest.py``): the repository's root, every
registered id, example scripts as modules, and observation batches and trajectories.

Sub-modules: :mod:`tests.helpers.tiny_models` and :mod:`tests.helpers.model_families` (tiny models
built here), :mod:`tests.helpers.family_reference` (the slow scoring reference of the model-family
suite), :mod:`tests.helpers.scoring_reference`, :mod:`tests.helpers.browser` (headless Chromium),
:mod:`tests.helpers.distributed_worker` (what each torchrun rank of the distributed tests runs).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np

import babyai_text

REPO = Path(__file__).resolve().parents[2]
ALL_IDS = babyai_text.registered_ids()


def load_example(path: str) -> ModuleType:
    """An example script (``examples/train_drrn.py``) as a module: its ``Args`` and ``main``."""
    name = "example_" + Path(path).stem
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


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


def text_batch(env_id: str = "BabyAI-Text-MixedTrain-v0", n: int = 3, steps: int = 3) -> dict:
    """A batch of observations with some history, from a vector env."""
    vec = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * n)
    obs, _ = vec.reset(seed=list(range(n)))
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, *_ = vec.step(rng.integers(0, 6, size=n))
    return obs
