"""Go to an object."""

from __future__ import annotations

from typing import Any

from minigrid.envs.babyai.core.verifier import GoToInstr, Instr, ObjDesc

from babyai_text.envs._doc import document
from babyai_text.level import BabyAITextEnv, Task, scatter_objects


class GoToTask(Task):
    """Go to one of ``num_dists`` random objects in a single room (minigrid's GoToLocal)."""

    name = "GoTo"

    def generate(self, env: BabyAITextEnv) -> Instr:
        objs = scatter_objects(env, env.num_dists)
        obj = env._rand_elem(objs)
        return GoToInstr(ObjDesc(obj.type, obj.color))


class GoTo(BabyAITextEnv):
    """
    ## Description

    Go to an object in a single room with `num_dists` keys, balls and boxes (the target
    among them). Same level generation as minigrid's `BabyAI-GoToLocal`: a seed gives
    the same level.

    ## Mission Space

    "go to the {colour} {type}" ("a" instead of "the" when several objects match).
    """

    def __init__(self, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        super().__init__(tasks=(GoToTask(),), room_size=room_size, num_dists=num_dists, **kwargs)


document(
    GoTo,
    "the agent faces the target object",
    [
        "BabyAI-Text-GoTo-v0",
        "BabyAI-Text-GoToS5N2-v0",
        "BabyAI-Text-GoToS6N3-v0",
        "BabyAI-Text-GoTo-<Variant>-v0 for each variant",
    ],
)
