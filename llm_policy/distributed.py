"""Keeping one policy identical over the processes of a ``torchrun`` job.

SB3 has no distributed mode: each process runs stock PPO, which calls the policy's
``evaluate_actions`` itself, so wrapping the network in ``DistributedDataParallel`` would
leave every gradient local without a word.  :class:`RankSync` works below SB3 instead, on
autograd: when a backward pass ends, the gradients of the trainable parameters are
averaged over the ranks — before SB3 clips them and steps — and, at the first forward,
every parameter and buffer is broadcast from rank 0 (LoRA adapters and the value head
start random).  :class:`llm_policy.LLMPolicy` attaches one by itself whenever a process
group of several ranks is initialised; nothing else changes for a single process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class RanksOutOfStepError(RuntimeError):
    """The ranks of a job did not run the same number of backward passes."""


class RankSync:
    """Broadcast ``module`` from rank 0 once, then average its gradients after every backward.

    Every rank must run the same updates (the same rollout size, minibatch size and
    epochs; no rank may stop its epochs early): each backward pass ends with collectives
    that all ranks join.  Each pass is tagged with its update (counted by
    :meth:`next_update`, which the policy calls when SB3 switches it to training mode) and
    its rank within the update; a rank whose pass meets a different pass of another rank
    raises :class:`RanksOutOfStepError` instead of mixing their gradients.

    :param module: the module to keep identical (its trainable parameters are averaged
        over the ranks of the default process group).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.world_size = dist.get_world_size()
        self.broadcast_done = False
        self.update = 0
        self.backward_pass = 0
        self._queued = False
        self._handles = [
            p.register_post_accumulate_grad_hook(self._on_grad) for p in module.parameters() if p.requires_grad
        ]

    def ensure_broadcast(self) -> None:
        """Copy rank 0's parameters and buffers to every rank (once; at the first forward,
        when the module already sits on its device, as NCCL needs)."""
        if self.broadcast_done:
            return
        with torch.no_grad():
            # nn.Module's own state_dict: every parameter and buffer, not LLMPolicy's save (which
            # leaves out frozen weights and hashes them)
            for tensor in nn.Module.state_dict(self.module, keep_vars=True).values():
                dist.broadcast(tensor, src=0)
        self.broadcast_done = True

    def next_update(self) -> None:
        """A new update (a pass over a new rollout) begins."""
        self.update += 1
        self.backward_pass = 0

    def _on_grad(self, _: torch.Tensor) -> None:
        # one all-reduce per backward pass, when autograd has accumulated every gradient
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._all_reduce)

    def _all_reduce(self) -> None:
        self._queued = False
        self.backward_pass += 1
        params = [p for p in self.module.parameters() if p.requires_grad]
        tag = [self.update, self.backward_pass]
        bounds = torch.tensor(tag + [-t for t in tag], dtype=torch.float64, device=params[0].device)
        dist.all_reduce(bounds, op=dist.ReduceOp.MAX)
        if bounds[:2].tolist() != (-bounds[2:]).tolist():
            raise RanksOutOfStepError(
                f"ranks out of step: rank {dist.get_rank()} is at update {tag[0]}, backward pass {tag[1]}, while "
                f"another rank is elsewhere (updates {int(-bounds[2])}..{int(bounds[0])}). Every rank must run "
                "the same updates: give each the same n_envs, n_steps, batch_size and n_epochs, and leave PPO's "
                "target_kl at None (a rank that stops its epochs early would leave the others waiting)"
            )
        for p in params:
            if p.grad is None:  # unused on this rank: it still takes part in the average
                p.grad = torch.zeros_like(p)
        buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in params:
            buckets.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        for grads in buckets.values():  # a few large messages rather than one per tensor
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def remove(self) -> None:
        """Detach the gradient hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def multi_rank() -> bool:
    """Whether this process belongs to an initialised process group of several ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


__all__ = ["RankSync", "RanksOutOfStepError", "multi_rank"]
