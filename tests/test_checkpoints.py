"""Periodic checkpoints, and runs killed with SIGKILL then resumed to the same total (1 and 2 processes)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stable_baselines3 import PPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from glam_experiments.checkpoints import (
    Checkpointer,
    NoCheckpointError,
    latest_checkpoint,
    load_checkpoint,
    read_state,
)
from glam_experiments.envs import make_text_vec_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "examples" / "train_llm_ppo.py")
TOTAL = 480
FLAGS = ["--n-envs", "2", "--n-steps", "4", "--batch-size", "8", "--n-epochs", "1", "--checkpoint-every", "1"]


def launch(command: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # its own session: SIGKILL reaches torchrun and every rank, as a preemption would
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _group_states(pgid: int) -> list[str]:
    """The state letters (``/proc/<pid>/stat``) of the processes of process group ``pgid``."""
    states = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def freeze(pgid: int, timeout: float = 30) -> None:
    """SIGSTOP process group ``pgid`` and wait until every member has stopped: the signal is
    delivered asynchronously, and a process inside a system call (a checkpoint's rename)
    finishes it first."""
    os.killpg(pgid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while any(state not in "TtZX" for state in _group_states(pgid)):
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)
            raise AssertionError(f"process group {pgid} did not stop within {timeout} s of SIGSTOP")
        time.sleep(0.01)


def kill_after(proc: subprocess.Popen[str], runs: Path, frames: int, timeout: float = 180) -> Path:
    """SIGKILL ``proc``'s whole session once its run has a checkpoint at ``frames`` or later and
    has logged a rollout after its newest checkpoint (which the resumed run must hide);
    returns the run folder.  The session is frozen (:func:`freeze`) while the run's files are
    read, so that no checkpoint lands between the check and the kill."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read()[-3000:]}"  # type: ignore[union-attr]
        pointers = list(runs.glob("*/checkpoints/latest"))
        if pointers:
            run_dir = pointers[0].parents[1]
            freeze(proc.pid)
            saved = int(pointers[0].read_text().split("-")[1])
            if saved >= frames and max(scalar_steps(run_dir, "charts/SPS"), default=0) > saved:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return run_dir
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("no checkpoint appeared")


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    events = EventAccumulator(str(run_dir))  # applies purge_step as TensorBoard does
    events.Reload()
    return [e.step for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def check_resumed_run(run_dir: Path, frames_per_rollout: int, killed_at: int) -> None:
    assert killed_at < TOTAL, "the first run must have been killed before its end"
    assert latest_checkpoint(run_dir).name == f"frames-{TOTAL}"
    assert read_state(run_dir).frames == TOTAL
    # one loss point per update, each update once: a continuous curve over the kill
    expected = list(range(frames_per_rollout, TOTAL + 1, frames_per_rollout))
    assert scalar_steps(run_dir, "losses/value_loss") == expected
    assert scalar_steps(run_dir, "charts/SPS") == expected
    with open(run_dir / "episodes.csv", newline="") as f:
        frames = [int(row["frames"]) for row in csv.DictReader(f)]
    assert frames and frames == sorted(frames) and frames[-1] <= TOTAL
    if (run_dir / "grounding.csv").exists():  # each measurement once: the killed run's after its checkpoint dropped
        with open(run_dir / "grounding.csv", newline="") as f:
            measured = [(int(row["frames"]), int(row["updates"])) for row in csv.DictReader(f)]
        # (the last update is measured at the frames of the last rollout's end, after it)
        assert measured == sorted(set(measured)) and measured[-1] == (TOTAL, TOTAL // frames_per_rollout)
    assert len(list((run_dir / "checkpoints").glob("frames-*"))) == 2  # the two newest are kept


def test_single_process_run_survives_sigkill(tiny_llama: str, tmp_path: Path) -> None:
    grounding = ["--grounding-every", "1", "--grounding-states", "4"]
    args = ["--model", tiny_llama, *FLAGS, *grounding, "--total-timesteps", str(TOTAL)]
    first = launch([sys.executable, SCRIPT, *args, "--run-dir", str(tmp_path / "runs")])
    run_dir = kill_after(first, tmp_path / "runs", frames=24)
    killed_at = read_state(run_dir).frames
    assert max(scalar_steps(run_dir, "charts/SPS")) > killed_at  # logged after the checkpoint
    done = subprocess.run(
        [sys.executable, SCRIPT, *args, "--resume", str(run_dir)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    check_resumed_run(run_dir, frames_per_rollout=8, killed_at=killed_at)
    assert PPO.load(latest_checkpoint(run_dir) / "model.zip").num_timesteps == TOTAL


def test_two_process_run_survives_sigkill(tiny_llama: str, tmp_path: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", SCRIPT]
    args = ["--model", tiny_llama, "--device", "cpu", *FLAGS, "--total-timesteps", str(TOTAL)]
    first = launch([*torchrun, *args, "--run-dir", str(tmp_path / "runs")])
    run_dir = kill_after(first, tmp_path / "runs", frames=24)
    killed_at = read_state(run_dir).frames
    assert max(scalar_steps(run_dir, "charts/SPS")) > killed_at  # logged after the checkpoint
    second = launch([*torchrun, *args, "--resume", str(run_dir)])
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out[-3000:]
    check_resumed_run(run_dir, frames_per_rollout=16, killed_at=killed_at)
    # each rank counts its own frames: 2 ranks × 240
    assert PPO.load(latest_checkpoint(run_dir) / "model.zip").num_timesteps == TOTAL // 2


def test_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NoCheckpointError, match="has no checkpoint to resume from"):
        load_checkpoint(tmp_path, make_text_vec_env("BabyAI-Text-GoToS5N2-v0"))
    with pytest.raises(ValueError, match="checkpoint every must be >= 1"):
        Checkpointer(tmp_path, every=0)
