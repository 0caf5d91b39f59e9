"""The end of every training script: learn with logs and a progress bar, checkpoint, save."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from tqdm import TqdmExperimentalWarning

from glam_algorithms import FramesProgressBar
from glam_experiments.callbacks import CleanRLLogger
from glam_experiments.checkpoints import Checkpointer, TrainingState, checkpoint_root, read_state
from glam_experiments.cli import INTERRUPTED_STATUS, UsageError, flag_name
from glam_experiments.distributed import broadcast_object, check_same_updates, current_ranks

#: the run folder's record of the flags it was started with, which ``--resume`` compares
FLAGS_FILE = "flags.json"


def run_name(env_id: str, algo: str, seed: int) -> str:
    """CleanRL's run naming: ``<env>__<algo>__<seed>__<unix time>``."""
    return f"{env_id}__{algo}__{seed}__{int(time.time())}"


def new_run_dir(parent: Path, env_id: str, algo: str, seed: int) -> Path:
    """A run folder of its own under ``parent``, named by :func:`run_name` and made here.

    Two runs of the same env, algorithm and seed started in the same second (two jobs at once)
    would share CleanRL's name: the folder is made exclusively, and the later run's name gets
    ``-2``, ``-3``...  Under ``torchrun``, rank 0 makes it and every rank gets its path.
    """
    ranks = current_ranks()
    made = None
    if ranks.is_main:
        parent.mkdir(parents=True, exist_ok=True)
        name = run_name(env_id, algo, seed)
        for attempt in itertools.count(1):
            made = parent / (name if attempt == 1 else f"{name}-{attempt}")
            try:
                made.mkdir()
                break
            except FileExistsError:
                continue
    return Path(broadcast_object(str(made), ranks))


def _jsonable(args: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(args), default=str))


def record_flags(run_dir: Path, args: Any) -> None:
    """Write the flags a run starts with (a dataclass) to ``run_dir/flags.json`` (call on rank 0)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FLAGS_FILE).write_text(json.dumps(_jsonable(args), indent=1))


def check_resume(run_dir: Path, args: Any, free: Collection[str]) -> bool:
    """Refuse to resume ``run_dir`` with flags that change the run; say when it is already complete.

    :param args: this command's flags (a dataclass with ``total_timesteps``).
    :param free: fields that may differ (they do not change what is trained: threads, logging...).
    :return: ``False`` when the run already reached ``args.total_timesteps`` (nothing to do; said on stdout).
    :raises UsageError: a changed flag (each named, with both values), a total below the frames done,
        or no checkpoint.
    """
    done = read_state(run_dir).frames
    recorded_file = run_dir / FLAGS_FILE
    if recorded_file.exists():
        recorded, now = json.loads(recorded_file.read_text()), _jsonable(args)
        changed = [
            f"{flag_name(k)} {recorded[k]!r} -> {now[k]!r}"
            for k in recorded
            if k not in free and k != "total_timesteps" and k in now and recorded[k] != now[k]
        ]
        if changed:
            raise UsageError(
                f"--resume {run_dir}: these flags differ from the run's ({recorded_file}): {'; '.join(changed)}. "
                "Resume with the run's flags, or start a new run."
            )
    if args.total_timesteps < done:
        raise UsageError(
            f"--resume {run_dir}: --total-timesteps {args.total_timesteps} is below the {done} frames the run has "
            "done; pass at least that many."
        )
    if args.total_timesteps == done:
        # called before the ranks join (a complete run never starts them): rank 0 is torchrun's RANK 0
        if int(os.environ.get("RANK", "0")) == 0:
            print(
                f"{run_dir} is already complete ({done} frames, checkpoint in {checkpoint_root(run_dir)}); "
                "a larger --total-timesteps continues it."
            )
        return False
    return True


def train(
    model: BaseAlgorithm,
    total_timesteps: int,
    run_dir: Path,
    save_model: bool,
    torch_threads: int | None = None,
    checkpoint_every: int | None = None,
    resumed: TrainingState | None = None,
    callbacks: list[BaseCallback] | None = None,
) -> Path:
    """``model.learn`` with :class:`CleanRLLogger` into ``run_dir`` and SB3's progress bar.

    Under ``torchrun`` each rank calls it with the same arguments: ``total_timesteps``
    counts the frames of all ranks, and rank 0 alone logs, checkpoints, saves and shows
    the progress bar.

    :param total_timesteps: frames of the whole run (a resumed run stops at the same total).
    :param save_model: also write ``run_dir/model.zip``.
    :param torch_threads: set torch's intra-op threads first (``None``: torch's default).
    :param checkpoint_every: write a checkpoint every this many rollouts and at the end
        (:mod:`glam_experiments.checkpoints`); ``None``: none.
    :param resumed: the state of the checkpoint ``model`` was loaded from
        (:func:`glam_experiments.checkpoints.load_checkpoint`): training continues its
        counters, logs and curves.
    :param callbacks: more callbacks, run after the logger (e.g.
        :class:`~glam_experiments.callbacks.EpisodeRecorder`).
    :return: ``run_dir``.
    """
    ranks = current_ranks()
    check_same_updates(model, ranks)
    if not ranks.is_main and model.tensorboard_log is not None:
        # SB3 numbers its folder (PPO_<n>) from what is on disk: every rank would pick rank 0's and write there too
        model.set_logger(Logger(folder=None, output_formats=[]))
    if torch_threads:
        torch.set_num_threads(torch_threads)
    done = resumed.frames if resumed is not None else 0
    logger = CleanRLLogger(
        run_dir,
        resume_step=done if resumed is not None else None,
        successes=resumed.successes if resumed is not None else None,
    )
    all_callbacks: list[BaseCallback] = [logger, *(callbacks or [])]
    if checkpoint_every:  # first: its last checkpoint flushes the logger before the logger closes
        all_callbacks.insert(0, Checkpointer(run_dir, checkpoint_every, logger))
    remaining = max(0, total_timesteps - done)
    bar = FramesProgressBar() if ranks.is_main else None
    if remaining:
        try:
            with warnings.catch_warnings():
                # SB3's bar is tqdm.rich, which warns at every start that it is experimental: nothing to act on
                warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
                model.learn(
                    math.ceil(remaining / ranks.world_size),
                    callback=all_callbacks + ([bar] if bar is not None else []),
                    reset_num_timesteps=resumed is None,
                )
        except KeyboardInterrupt:
            _interrupted(bar, run_dir, checkpoint_every, ranks.is_main)
    if save_model and ranks.is_main:
        model.save(run_dir / "model.zip")
    if ranks.is_main:
        print(f"logs in {run_dir}")
    return run_dir


def _interrupted(bar: FramesProgressBar | None, run_dir: Path, checkpoint_every: int | None, main: bool) -> None:
    """Ctrl-C: one line saying what is kept and how to go on (not a traceback and a progress bar's shutdown error)."""
    if bar is not None and getattr(bar, "pbar", None) is not None:
        bar.pbar.close()  # closed here, or the bar's thread errs at exit
    if main:
        pointer = checkpoint_root(run_dir) / "latest"
        if pointer.exists():
            where = (
                f"last checkpoint: {checkpoint_root(run_dir) / pointer.read_text().strip()}; "
                f"continue with the same command and --resume {run_dir}"
            )
        elif checkpoint_every:
            where = "no checkpoint was written yet"
        else:
            where = "no checkpoint (pass --checkpoint-every N to be able to resume)"
        print(f"\ninterrupted: {where}", file=sys.stderr)
    raise SystemExit(INTERRUPTED_STATUS)
