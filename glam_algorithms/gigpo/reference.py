"""The policy a KL penalty holds the trained one to: the values its trainable parameters started from."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class ReferenceParameters(nn.Module):
    """A copy of ``policy``'s trainable parameters (frozen ones cannot drift), kept as buffers so that SB3
    saves and loads it with the model; :meth:`swapped_in` runs the policy with these values.

    :param policy: the policy whose trainable parameters are copied now.
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.names = [name for name, p in policy.named_parameters() if p.requires_grad]
        for i, name in enumerate(self.names):
            self.register_buffer(f"p{i}", dict(policy.named_parameters())[name].detach().clone())

    def take(self, policy: nn.Module) -> None:
        """Copy ``policy``'s current values (the start of training)."""
        params = dict(policy.named_parameters())
        with torch.no_grad():
            for i, name in enumerate(self.names):
                getattr(self, f"p{i}").copy_(params[name])

    @contextlib.contextmanager
    def swapped_in(self, policy: nn.Module) -> Iterator[None]:
        """``policy`` with the reference values for the duration of the block (its own values after)."""
        params = dict(policy.named_parameters())
        own = {}
        with torch.no_grad():
            for i, name in enumerate(self.names):
                own[name] = params[name].detach().clone()
                params[name].copy_(getattr(self, f"p{i}"))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in own.items():
                    params[name].copy_(value)


__all__ = ["ReferenceParameters"]
