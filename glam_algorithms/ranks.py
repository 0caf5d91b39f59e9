"""This process's place among ``torchrun``'s ranks, for algorithms that share their work over them."""

from __future__ import annotations

import os

import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` started this process (its rank variables are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks (0 and 1 outside a process group).

    :raises RuntimeError: in a process ``torchrun`` started with others that has not joined
        them: it would train alone, as if it were the only one.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:
        raise RuntimeError(
            f"this process is rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']} started by torchrun but has "
            "not joined the others: call glam_experiments.distributed.init_ranks() (or "
            "torch.distributed.init_process_group()) first (examples/train_llm_ppo.py and examples/train_bc.py "
            "train over several processes), or run the script without torchrun"
        )
    return 0, 1


__all__ = ["launched_by_torchrun", "rank_and_world"]
