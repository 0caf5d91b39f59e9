"""The end of every training script: learn with logs and a progress bar, checkpoint, save."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from glam_experiments.callbacks import CleanRLLogger
from glam_experiments.checkpoints import Checkpointer, TrainingState
from glam_experiments.distributed import check_same_updates, current_ranks


def run_name(env_id: str, algo: str, seed: int) -> str:
    """CleanRL's run naming: ``<env>__<algo>__<seed>__<unix time>``."""
    return f"{env_id}__{algo}__{seed}__{int(time.time())}"


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
    if remaining:
        model.learn(
            math.ceil(remaining / ranks.world_size),
            callback=all_callbacks,
            progress_bar=ranks.is_main,
            reset_num_timesteps=resumed is None,
        )
    if save_model and ranks.is_main:
        model.save(run_dir / "model.zip")
    if ranks.is_main:
        print(f"logs in {run_dir}")
    return run_dir
