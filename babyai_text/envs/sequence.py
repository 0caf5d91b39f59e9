"""Two actions in sequence: "A, then B" and "B after you A"."""

from __future__ import annotations

from typing import Any, ClassVar

from minigrid.envs.babyai.core.roomgrid_level import RejectSampling
from minigrid.envs.babyai.core.verifier import (
    ActionInstr,
    AfterInstr,
    BeforeInstr,
    GoToInstr,
    Instr,
    ObjDesc,
    PickupInstr,
)

from babyai_text.envs._doc import document
from babyai_text.level import BabyAITextEnv, Task, scatter_objects


class SequenceTask(Task):
    """Pick up one object, then ``second`` another; phrased with "then", "after", or either.

    :param second: ``"goto"`` or ``"pickup"``, the second action.
    :param order: ``"then"`` ("pick up A, then ... B"), ``"after"`` ("... B after you pick
        up A") or ``"either"`` (50/50 per episode).
    """

    min_objects = 2
    _NAMES: ClassVar[dict[tuple[str, str], str]] = {
        ("goto", "then"): "PickUpThenGoTo",
        ("goto", "after"): "GoToAfterPickUp",
        ("goto", "either"): "PickUpSeqGoTo",
        ("pickup", "either"): "PickUpSeqPickUp",
    }

    def __init__(self, second: str, order: str) -> None:
        if (second, order) not in self._NAMES:
            raise ValueError(f"unsupported sequence ({second!r}, {order!r})")
        self.second = second
        self.order = order
        self.name = self._NAMES[(second, order)]  # type: ignore[misc]

    def generate(self, env: BabyAITextEnv) -> Instr:
        objs = scatter_objects(env, env.num_dists)
        first, target = env._rand_subset(objs, 2)
        if (first.type, first.color) == (target.type, target.color):
            raise RejectSampling("both clauses would describe the same kind of object")
        pickup = PickupInstr(ObjDesc(first.type, first.color))
        second_instr: ActionInstr = (GoToInstr if self.second == "goto" else PickupInstr)(
            ObjDesc(target.type, target.color)
        )
        order = self.order if self.order != "either" else ("then" if env._rand_bool() else "after")
        if order == "then":
            return BeforeInstr(pickup, second_instr)
        return AfterInstr(second_instr, pickup)


class PickUpThenGoTo(BabyAITextEnv):
    """
    ## Description

    Pick up an object, then go to another, in a single room with `num_dists` objects.

    ## Mission Space

    "pick up the {colour} {type}, then go to the {colour} {type}"
    """

    def __init__(self, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        super().__init__(tasks=(SequenceTask("goto", "then"),), room_size=room_size, num_dists=num_dists, **kwargs)


class GoToAfterPickUp(BabyAITextEnv):
    """
    ## Description

    Pick up an object, then go to another, in a single room with `num_dists` objects;
    the instruction names the actions in reverse order.

    ## Mission Space

    "go to the {colour} {type} after you pick up the {colour} {type}"
    """

    def __init__(self, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        super().__init__(tasks=(SequenceTask("goto", "after"),), room_size=room_size, num_dists=num_dists, **kwargs)


class PickUpSeqGoTo(BabyAITextEnv):
    """
    ## Description

    `PickUpThenGoTo` or `GoToAfterPickUp`, drawn 50/50 each episode.

    ## Mission Space

    "pick up the {colour} {type}, then go to the {colour} {type}" or
    "go to the {colour} {type} after you pick up the {colour} {type}"
    """

    def __init__(self, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        super().__init__(tasks=(SequenceTask("goto", "either"),), room_size=room_size, num_dists=num_dists, **kwargs)


class PickUpSeqPickUp(BabyAITextEnv):
    """
    ## Description

    Pick up an object, then (after dropping it) pick up another: the new-composition
    test of GLAM, never seen in `MixedTrain`. "then" or "after", 50/50 each episode.

    ## Mission Space

    "pick up the {colour} {type}, then pick up the {colour} {type}" or
    "pick up the {colour} {type} after you pick up the {colour} {type}"
    """

    def __init__(self, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        super().__init__(tasks=(SequenceTask("pickup", "either"),), room_size=room_size, num_dists=num_dists, **kwargs)


document(
    PickUpThenGoTo, "the agent has picked up the first object and faces the second", ["BabyAI-Text-PickUpThenGoTo-v0"]
)
document(
    GoToAfterPickUp, "the agent has picked up the first object and faces the second", ["BabyAI-Text-GoToAfterPickUp-v0"]
)
document(
    PickUpSeqGoTo, "the agent has picked up the first object and faces the second", ["BabyAI-Text-PickUpSeqGoTo-v0"]
)
document(PickUpSeqPickUp, "the agent has picked up both objects in order", ["BabyAI-Text-PickUpSeqPickUp-v0"])
