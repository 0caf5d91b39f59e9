from __future__ import annotations

import os
import tempfile

# Tests never reach a model hub: unknown names must fail fast, not retry the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# SB3 makes a /tmp/SB3-<time> folder at every learn() without a logger folder: one folder for the session's.
os.environ.setdefault("SB3_LOGDIR", os.path.join(tempfile.gettempdir(), f"glam-rl-tests-sb3-{os.getpid()}"))
# Parallel test workers share the cores: one thread each, or OpenMP threads spin against each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np
import pytest

import babyai_text

ALL_IDS = babyai_text.registered_ids()
OUR_PACKAGES = ("babyai_text", "llm_policy", "glam_baselines", "glam_experiments")


def _called_from_our_code() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__", "").split(".")[0] in OUR_PACKAGES:
            return True
        frame = frame.f_back
    return False


class _LoggedDeprecationsFail(logging.Handler):
    """transformers announces many deprecations through its logger (``warning_once``), which warning filters
    never see: one reached through our modules raises where it is logged."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "deprecated" in message.lower() and _called_from_our_code():
            raise DeprecationWarning(f"{record.name}: {message}")


@pytest.fixture(autouse=True, scope="session")
def _logged_deprecations_fail() -> Iterator[None]:
    handler = _LoggedDeprecationsFail(logging.WARNING)
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)


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


@pytest.fixture(params=ALL_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.tiny_models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_llama"), "llama"))


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.tiny_models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_t5"), "t5"))


@pytest.fixture(params=["llama", "t5"])
def tiny_model(request: pytest.FixtureRequest, tiny_llama: str, tiny_t5: str) -> str:
    return tiny_llama if request.param == "llama" else tiny_t5


def text_batch(env_id: str = "BabyAI-Text-MixedTrain-v0", n: int = 3, steps: int = 3) -> dict:
    """A batch of observations with some history, from a vector env."""
    vec = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * n)
    obs, _ = vec.reset(seed=list(range(n)))
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, *_ = vec.step(rng.integers(0, 6, size=n))
    return obs


REPO = Path(__file__).resolve().parent.parent
