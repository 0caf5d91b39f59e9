"""Training scripts under ``torchrun``: one process per rank, stock SB3 PPO in each.

    torchrun --nproc_per_node=2 examples/train_llm_ppo.py --total-timesteps 4096

:func:`init_ranks` joins the job ``torchrun`` started (gloo on CPU, NCCL with one GPU per
rank) and is a no-op in a process that ``torchrun`` did not start.  Each rank builds its
own envs (seeds offset by rank, :func:`rank_seed`) and its own PPO; the policy keeps itself
identical over the ranks (:mod:`llm_policy.distributed`: rank 0's weights at the first
forward, gradients averaged before SB3 clips them); :func:`check_same_updates` refuses the
settings under which ranks would fall out of step; logs, checkpoints and the saved model
are rank 0's, with the episodes of every rank (:class:`glam_experiments.callbacks.CleanRLLogger`).
Rank 0 alone prints library warnings and progress bars (:mod:`glam_experiments.quiet`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from glam_algorithms.ranks import launched_by_torchrun, rank_and_world
from glam_experiments.quiet import quiet_unless_main

_CPU = torch.device("cpu")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in its job.

    :param rank: global rank (0 in a single process).
    :param world_size: number of processes.
    :param device: the device this rank computes on.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = _CPU

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, checkpoints and saves."""
        return self.rank == 0


def init_ranks(device: str = "auto") -> Ranks:
    """Join the ``torchrun`` job this process belongs to (once), or describe a single process.

    The ranks other than 0 are silenced first (:func:`glam_experiments.quiet.quiet_unless_main`):
    they run rank 0's code, so their warnings, log records and progress bars would repeat its own.

    :param device: ``"auto"`` (a GPU per rank when CUDA is available, else CPU), ``"cpu"``
        or ``"cuda"``.
    :return: this process's rank, the world size and its device.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch sees no GPU; use --device cpu")
    if not launched_by_torchrun():
        return Ranks(device=torch.device("cuda" if use_cuda else "cpu"))
    # before joining, so that the process group's set-up is quiet too: torchrun's RANK is the rank joined
    quiet_unless_main(int(os.environ["RANK"]))
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible): launch at "
                "most one process per GPU (--nproc_per_node), or train on CPU with --device cpu"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    where = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return Ranks(rank=dist.get_rank(), world_size=dist.get_world_size(), device=where)


def current_ranks() -> Ranks:
    """This process's :class:`Ranks` after :func:`init_ranks` (a single CPU process before it).

    :raises RuntimeError: in a process ``torchrun`` started with others that has not joined
        them: it would train alone, as if it were the only one.
    """
    rank, world_size = rank_and_world()
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return Ranks(rank=rank, world_size=world_size, device=device)


def rank_seed(seed: int, n_envs: int, ranks: Ranks) -> int:
    """The seed of this rank's PPO and envs: rank ``r``'s env ``i`` gets ``seed + r * n_envs + i``,
    as env ``r * n_envs + i`` of a single process with ``world_size * n_envs`` envs would."""
    return seed + ranks.rank * n_envs


def broadcast_object(value: Any, ranks: Ranks) -> Any:
    """Rank 0's ``value`` on every rank (e.g. a run name holding the time)."""
    if ranks.world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_same_updates(model: OnPolicyAlgorithm, ranks: Ranks) -> None:
    """Refuse settings under which the ranks would not run the same updates.

    Every rank must collect rollouts of the same shape and run the same minibatches (each
    backward pass ends with an all-reduce every rank joins), and PPO's ``target_kl`` early
    stopping is decided on each rank's own KL, so one rank could stop alone.

    :raises ValueError: naming the setting and the fix.
    """
    if ranks.world_size == 1:
        return
    if getattr(model.policy, "rank_sync", None) is None:
        raise ValueError(
            f"{type(model.policy).__name__} does not keep its copies on the ranks identical; over several processes "
            "only llm_policy.LLMPolicy trains one policy. Run this agent in a single process"
        )
    if getattr(model, "target_kl", None) is not None:
        raise ValueError(
            f"target_kl={model.target_kl} cannot be used over several processes: each rank would decide on its own "
            "KL whether to stop its epochs, and a rank that stops alone leaves the others waiting. Pass "
            "target_kl=None (bound the update with n_epochs and clip_range instead)"
        )
    shape = {"n_envs": model.n_envs, "n_steps": model.n_steps, "batch_size": getattr(model, "batch_size", None)}
    shape["n_epochs"] = getattr(model, "n_epochs", None)
    shapes: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(shapes, shape)
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"every rank must collect and train on rollouts of the same shape; got {shapes}")


def close_ranks() -> None:
    """Leave the process group (at the end of a script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    "Ranks",
    "broadcast_object",
    "check_same_updates",
    "close_ranks",
    "current_ranks",
    "init_ranks",
    "launched_by_torchrun",
    "rank_seed",
]
