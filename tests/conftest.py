"""Fixtures and session hooks of the suite (the helpers tests import live in :mod:`tests.helpers`)."""

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

import logging
import sys
from collections.abc import Iterator

import pytest

from tests.helpers import ALL_IDS

OUR_PACKAGES = ("babyai_text", "llm_policy", "glam_baselines", "glam_algorithms", "glam_experiments")


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


@pytest.fixture(params=ALL_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.helpers.tiny_models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_llama"), "llama"))


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.helpers.tiny_models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_t5"), "t5"))


@pytest.fixture(params=["llama", "t5"])
def tiny_model(request: pytest.FixtureRequest, tiny_llama: str, tiny_t5: str) -> str:
    return tiny_llama if request.param == "llama" else tiny_t5


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory: pytest.TempPathFactory):
    """``family_dir(name)``: the saved tiny model of that family (built once per session)."""
    from tests.helpers.model_families import build_family

    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            built[name] = str(build_family(name, tmp_path_factory.mktemp(f"family-{name}")))
        return built[name]

    return get
