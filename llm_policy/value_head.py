"""The value head's input standardisation.

A causal LM's last hidden state has a few large dimensions that hardly change from one
prompt to the next, while each dimension's spread over states is small.  An MLP that reads
it raw sees mostly the constant part and learns a nearly constant value; standardised per
feature, the same states become linearly separable by the bot's action (the linear probe,
``python -m studies.linear_probe``, measures it; its figures are in docs/studies/).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class RunningStandardizer(nn.Module):
    """``(x - mean) / std`` per feature, with the running statistics of the training batches.

    The statistics change only through :meth:`update`, which
    :meth:`llm_policy.LLMPolicy.evaluate_actions` calls on each PPO minibatch, so rollouts,
    evaluation and diagnostics read the policy without changing it.  Under
    ``torch.distributed`` every rank updates with the moments of all ranks' batches (one
    all-reduce), so the ranks keep identical statistics.  Before the first update a batch
    is standardised with its own statistics.

    :param size: number of features.
    :param eps: added to the variance.
    """

    def __init__(self, size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(size, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` (and, under ``torch.distributed``, every rank's) to the statistics."""
        x = x.detach().double().reshape(-1, x.shape[-1])
        moments = torch.cat([x.new_tensor([len(x)]), x.sum(0), (x * x).sum(0)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(moments)
        n, total, squares = moments[0], moments[1 : 1 + x.shape[-1]], moments[1 + x.shape[-1] :]
        batch_mean = total / n
        batch_m2 = (squares - n * batch_mean**2).clamp(min=0)
        delta = batch_mean - self.mean
        count = self.count + n
        self.mean += delta * n / count
        self.m2 += batch_m2 + delta**2 * self.count * n / count
        self.count.copy_(count)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.count > 1:
            mean, var = self.mean, self.m2 / (self.count - 1)
        else:
            flat = x.detach().double().reshape(-1, x.shape[-1])
            mean, var = flat.mean(0), (flat.var(0, unbiased=False) if len(flat) > 1 else torch.ones_like(flat[0]))
        return ((x - mean.to(x.dtype)) / torch.sqrt(var + self.eps).to(x.dtype)).to(x.dtype)


__all__ = ["RunningStandardizer"]
