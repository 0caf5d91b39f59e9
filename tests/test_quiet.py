"""Quiet when it works: one rank speaks for a torchrun job, and loading a model prints no bar."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from glam_experiments.quiet import VERBOSE_RANKS_ENV, speaks

ROOT = Path(__file__).resolve().parents[1]

#: Every kind of noise a rank makes; "quiet" silences the process first.
NOISY = """
import logging, sys, warnings
import gymnasium
from transformers.utils import logging as hf_logging
if sys.argv[1] == "quiet":
    from glam_experiments.quiet import silence_process
    silence_process()
warnings.warn("a python warning")
gymnasium.logger.warn("a gym warning")
hf_logging.get_logger("transformers.modeling_utils").warning("a transformers warning")
logging.getLogger("torch").warning("a torch warning")
for _ in hf_logging.tqdm(range(3), desc="Loading weights"):
    pass
logging.getLogger("glam").error("an error")
warnings.simplefilter("error")
try:
    warnings.warn("a warning made an error")
except UserWarning:
    print("still raised")
"""
NOISE = ("a python warning", "a gym warning", "a transformers warning", "a torch warning", "Loading weights")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != VERBOSE_RANKS_ENV}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def test_rank_0_speaks_unless_every_rank_is_asked_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VERBOSE_RANKS_ENV, raising=False)
    assert speaks(0) and not speaks(1)
    monkeypatch.setenv(VERBOSE_RANKS_ENV, "0")
    assert not speaks(3)
    monkeypatch.setenv(VERBOSE_RANKS_ENV, "1")
    assert speaks(3)


@pytest.mark.parametrize("mode", ["loud", "quiet"])
def test_a_silenced_process_prints_errors_only(mode: str) -> None:
    # a process of its own: silencing is for the rest of the process
    done = subprocess.run(
        [sys.executable, "-c", NOISY, mode], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "an error" in done.stderr
    assert "still raised" in done.stdout  # warning filters are untouched: -W error raises on every rank
    for noise in NOISE:
        assert (noise in done.stderr) == (mode == "loud"), (noise, done.stderr)


@pytest.mark.slow
def test_only_rank_0_warns_under_torchrun(tmp_path: Path) -> None:
    script = tmp_path / "warn.py"
    script.write_text(
        "import warnings\n"
        "from glam_experiments.distributed import close_ranks, init_ranks\n"
        "ranks = init_ranks('cpu')\n"
        "warnings.warn(f'rank {ranks.rank} of {ranks.world_size} warns')\n"
        "close_ranks()\n"
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    done = subprocess.run(torchrun, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 of 2 warns" in done.stderr
    assert "rank 1 of 2 warns" not in done.stderr


def test_loading_a_model_prints_no_bar(tiny_llama: str, capfd: pytest.CaptureFixture[str]) -> None:
    from llm_policy.models import load_language_model

    capfd.readouterr()
    load_language_model(tiny_llama)
    assert "Loading weights" not in capfd.readouterr().err
