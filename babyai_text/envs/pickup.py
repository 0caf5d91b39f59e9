"""Pick up an object."""

from __future__ import annotations

from typing import Any

from minigrid.envs.babyai.core.verifier import Instr, ObjDesc, PickupInstr

from babyai_text.envs._doc import document
from babyai_text.level import BabyAITextEnv, Task, scatter_objects


class PickUpTask(Task):
    """Pick up one of ``num_dists`` random objects in a single room."""

    name = "PickUp"

    def generate(self, env: BabyAITextEnv) -> Instr:
        objs = scatter_objects(env, env.num_dists)
        obj = env._rand_elem(objs)
        return PickupInstr(ObjDesc(obj.type, obj.color))


class PickUp(BabyAITextEnv):
    """
    ## Description

    Pick up an object in a single room with `num_dists` keys, balls and boxes (the
    target among them).

    ## Mission Space

    "pick up the {colour} {type}" ("a" instead of "the" when several objects match).
    """

    def __init__(self, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        super().__init__(tasks=(PickUpTask(),), room_size=room_size, num_dists=num_dists, **kwargs)


document(
    PickUp,
    "the agent picks up a matching object",
    ["BabyAI-Text-PickUp-v0", "BabyAI-Text-PickUpS5N2-v0", "BabyAI-Text-PickUpS6N3-v0"],
)
