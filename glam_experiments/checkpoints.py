"""Periodic checkpoints of a training run, and resuming a run that was killed.

A checkpoint is a folder ``<run_dir>/checkpoints/frames-<N>/`` holding ``model.zip``
(SB3's save: the policy's trained weights, the optimizer's state of those, step and update
counters) and ``state.json`` (the frames over all ranks, the algorithm's class and the
logger's success window).  An :class:`~llm_policy.LLMPolicy` that trains part of its LM
(``finetune="lora"``, ``"top_k"``, ``"frozen"``) saves that part and its value head only,
and names its frozen base weights by model name and content hash (:mod:`llm_policy.saving`):
a fraction of the full model's size (docs/benchmarks.md), and resuming refuses base
weights that changed since (``BaseWeightsMismatchError``).  It is written under a
temporary name and renamed when complete, and ``<run_dir>/checkpoints/latest`` names the
newest one, so a run killed at any instant (preemption, ``SIGKILL``) leaves a complete
checkpoint to resume from.  The two newest are kept.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from glam_experiments.callbacks import CleanRLLogger
from glam_experiments.distributed import current_ranks

KEEP = 2


@dataclass
class TrainingState:
    """What a resumed run needs besides the model.

    :param frames: env-steps over all ranks when the checkpoint was taken.
    :param algo: the algorithm's class, ``module:QualName``.
    :param successes: :class:`glam_experiments.callbacks.CleanRLLogger`'s success window.
    """

    frames: int
    algo: str
    successes: list[float] = field(default_factory=list)


class NoCheckpointError(FileNotFoundError):
    """The run folder has no checkpoint to resume from."""


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest complete checkpoint of ``run_dir``.

    :raises NoCheckpointError: if there is none.
    """
    pointer = checkpoint_root(run_dir) / "latest"
    if not pointer.exists():
        raise NoCheckpointError(
            f"{run_dir} has no checkpoint to resume from ({pointer} is missing): was the run started with "
            "--checkpoint-every N, and is this its run folder (runs/<run name>)?"
        )
    return checkpoint_root(run_dir) / pointer.read_text().strip()


def save_checkpoint(model: BaseAlgorithm, run_dir: Path, state: TrainingState) -> Path:
    """Write a checkpoint of ``model`` at ``state.frames`` (call it on rank 0 only)."""
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"frames-{state.frames}"
    staging = Path(tempfile.mkdtemp(prefix=".incomplete-", dir=root))
    model.save(staging / "model.zip")
    (staging / "state.json").write_text(json.dumps(asdict(state)))
    shutil.rmtree(root / name, ignore_errors=True)
    staging.rename(root / name)
    pointer = root / ".latest.tmp"
    pointer.write_text(name)
    os.replace(pointer, root / "latest")  # atomic: the pointer always names a complete folder
    for old in sorted(root.glob("frames-*"), key=lambda p: int(p.name.split("-")[1]))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return root / name


def read_state(run_dir: Path) -> TrainingState:
    """The :class:`TrainingState` of the newest checkpoint of ``run_dir``."""
    return TrainingState(**json.loads((latest_checkpoint(run_dir) / "state.json").read_text()))


def load_checkpoint(
    run_dir: Path, env: VecEnv, device: torch.device | str = "auto", **load_kwargs: Any
) -> tuple[BaseAlgorithm, TrainingState]:
    """The model of the newest checkpoint of ``run_dir``, attached to ``env``, and its state.

    The model's step counter is set to this rank's share of the frames, so a run resumed
    on a different number of ranks continues from the same total.

    :raises llm_policy.saving.BaseWeightsMismatchError: the checkpoint holds only the trained
        weights of an LLM policy and its base model's files changed since it was written.
    """
    folder = latest_checkpoint(run_dir)
    state = read_state(run_dir)
    module, _, qualname = state.algo.partition(":")
    algo = getattr(importlib.import_module(module), qualname)
    model = algo.load(folder / "model.zip", env=env, device=device, **load_kwargs)
    model.num_timesteps = state.frames // current_ranks().world_size
    return model, state


class Checkpointer(BaseCallback):
    """Saves a checkpoint every ``every`` rollouts (after their update) and at the end of training.

    :param run_dir: the run's folder.
    :param every: rollouts between checkpoints.
    :param logger: the run's logger: its logs are flushed with every checkpoint (what a
        resumed run keeps) and its success window saved.
    """

    def __init__(self, run_dir: Path, every: int, logger: CleanRLLogger | None = None) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"checkpoint every must be >= 1 rollouts, got {every}")
        self.run_dir = Path(run_dir)
        self.every = every
        self.run_logger = logger
        self._saved_at = -1
        self._rollouts = 0

    def _on_training_start(self) -> None:
        self._saved_at = self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        # a rollout starts after the previous rollout's update: the state is complete here
        if self.num_timesteps != self._saved_at:
            self._rollouts += 1
            if self._rollouts % self.every == 0:
                self._save()

    def _on_training_end(self) -> None:
        if self.num_timesteps != self._saved_at:
            self._save()

    def _save(self) -> None:
        ranks = current_ranks()
        self._saved_at = self.num_timesteps
        if not ranks.is_main:
            return
        if self.run_logger is not None:
            self.run_logger.flush()
        algo = type(self.model)
        state = TrainingState(
            frames=self.num_timesteps * ranks.world_size,
            algo=f"{algo.__module__}:{algo.__qualname__}",
            successes=list(self.run_logger.successes) if self.run_logger is not None else [],
        )
        save_checkpoint(self.model, self.run_dir, state)


__all__ = [
    "Checkpointer",
    "NoCheckpointError",
    "TrainingState",
    "latest_checkpoint",
    "load_checkpoint",
    "read_state",
    "save_checkpoint",
]
