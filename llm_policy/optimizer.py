"""Per-parameter-group learning-rate scales that survive SB3's learning-rate schedule."""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

LR_SCALE = "lr_scale"


@cache
def with_group_lr_scales(optimizer_class: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """A subclass of ``optimizer_class`` that multiplies each group's lr by its ``lr_scale``.

    SB3 writes the scheduled learning rate into *every* parameter group before each
    update, so different rates (the LM's vs the value head's) are kept as ratios to that
    schedule and applied only for the duration of ``step``.
    """

    class ScaledLR(optimizer_class):  # type: ignore[valid-type, misc]
        def step(self, closure: Any = None) -> Any:
            base = [group["lr"] for group in self.param_groups]
            for group in self.param_groups:
                group["lr"] = group["lr"] * group.get(LR_SCALE, 1.0)
            try:
                return super().step(closure)
            finally:
                for group, lr in zip(self.param_groups, base, strict=True):
                    group["lr"] = lr

    ScaledLR.__name__ = ScaledLR.__qualname__ = f"ScaledLR{optimizer_class.__name__}"
    return ScaledLR
