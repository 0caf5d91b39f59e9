"""The end of every training script: learn with logs and a progress bar, then save."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from stable_baselines3.common.base_class import BaseAlgorithm

from glam_experiments.callbacks import CleanRLLogger


def run_name(env_id: str, algo: str, seed: int) -> str:
    """CleanRL's run naming: ``<env>__<algo>__<seed>__<unix time>``."""
    return f"{env_id}__{algo}__{seed}__{int(time.time())}"


def train(
    model: BaseAlgorithm, total_timesteps: int, run_dir: Path, save_model: bool, torch_threads: int | None = None
) -> Path:
    """``model.learn`` with :class:`CleanRLLogger` into ``run_dir`` and SB3's progress bar.

    :param save_model: also write ``run_dir/model.zip``.
    :param torch_threads: set torch's intra-op threads first (``None``: torch's default).
    :return: ``run_dir``.
    """
    if torch_threads:
        torch.set_num_threads(torch_threads)
    model.learn(total_timesteps, callback=CleanRLLogger(run_dir), progress_bar=True)
    if save_model:
        model.save(run_dir / "model.zip")
    print(f"logs in {run_dir}")
    return run_dir
