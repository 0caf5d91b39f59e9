"""Per-parameter-group learning-rate scales that survive SB3's learning-rate schedule."""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

LR_SCALE = "lr_scale"

#: The classes :func:`with_group_lr_scales` made, by name (module attributes, see ``__getattr__``).
_GENERATED: dict[str, type[torch.optim.Optimizer]] = {}
_PREFIX = "ScaledLR"


class GroupLRScales:
    """Mixin of the classes :func:`with_group_lr_scales` makes: ``step`` multiplies each
    group's lr by its ``lr_scale`` for the duration of the step only."""

    #: the optimizer class this one scales (set on each generated class)
    scaled_class: type[torch.optim.Optimizer]

    def step(self, closure: Any = None) -> Any:
        groups = self.param_groups  # type: ignore[attr-defined]
        base = [group["lr"] for group in groups]
        for group in groups:
            group["lr"] = group["lr"] * group.get(LR_SCALE, 1.0)
        try:
            return super().step(closure)  # type: ignore[misc]
        finally:
            for group, lr in zip(groups, base, strict=True):
                group["lr"] = lr

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, keeping the ``lr_scale`` of every group that has one: the scales are
        the policy's settings (its ``lm_learning_rate``), not training state, so an agent whose LM rate was
        changed and that loads another run's weights and moments (``PPO.set_parameters``) trains at its own
        rate, not silently at the saved one.  A group without a scale (a policy rebuilt without its
        learning-rate schedule) takes the saved one."""
        scales = [group.get(LR_SCALE) for group in self.param_groups]  # type: ignore[attr-defined]
        super().load_state_dict(state_dict)  # type: ignore[misc]
        for group, scale in zip(self.param_groups, scales, strict=True):  # type: ignore[attr-defined]
            if scale is not None:
                group[LR_SCALE] = scale

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # A generated class cannot be found by pickle's name lookup in a fresh process;
        # the optimizer class it scales can, and rebuilding from it gives the same class
        # (with_group_lr_scales is cached).  The state is torch's own __getstate__.
        return _new_scaled, (self.scaled_class,), self.__getstate__()  # type: ignore[attr-defined]


def _new_scaled(optimizer_class: type[torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """An empty instance of ``with_group_lr_scales(optimizer_class)``, for unpickling (which
    then calls the optimizer's ``__setstate__``)."""
    cls = with_group_lr_scales(optimizer_class)
    return cls.__new__(cls)


@cache
def with_group_lr_scales(optimizer_class: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """A subclass of ``optimizer_class`` that multiplies each group's lr by its ``lr_scale``.

    SB3 writes the scheduled learning rate into *every* parameter group before each
    update, so different rates (the LM's vs the value head's) are kept as ratios to that
    schedule and applied only for the duration of ``step``.  Instances pickle (``torch.save``
    of a policy, ``copy.deepcopy``), and so does the class of a ``torch.optim`` optimizer.

    :param optimizer_class: a ``torch.optim.Optimizer`` subclass (e.g. ``torch.optim.Adam``).
    :return: the subclass (the same object on every call with the same class).
    """
    if issubclass(optimizer_class, GroupLRScales):
        return optimizer_class
    name = f"{_PREFIX}{optimizer_class.__name__}"
    cls = type(name, (GroupLRScales, optimizer_class), {"scaled_class": optimizer_class, "__module__": __name__})
    # Reachable as llm_policy.optimizer.<name>, so pickling the class itself works too; a
    # second optimizer class of the same name keeps only the instance pickling.
    _GENERATED.setdefault(name, cls)
    return cls


def __getattr__(name: str) -> type[torch.optim.Optimizer]:
    """``ScaledLR<X>`` for a ``torch.optim`` optimizer ``X``, made on first use, so that a
    pickled class is found in a process that has not made it yet."""
    if name in _GENERATED:
        return _GENERATED[name]
    base = getattr(torch.optim, name[len(_PREFIX) :], None) if name.startswith(_PREFIX) else None
    if isinstance(base, type) and issubclass(base, torch.optim.Optimizer):
        return with_group_lr_scales(base)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
