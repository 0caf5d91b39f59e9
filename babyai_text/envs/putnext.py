"""Put an object next to another."""

from __future__ import annotations

from typing import Any

from minigrid.envs.babyai.core.verifier import Instr, ObjDesc, PutNextInstr

from babyai_text.envs._doc import document
from babyai_text.level import BabyAITextEnv, Task, scatter_objects


class PutNextTask(Task):
    """Put one of ``num_dists`` distinct objects next to another (minigrid's PutNextLocal)."""

    name = "PutNext"
    min_objects = 2

    def generate(self, env: BabyAITextEnv) -> Instr:
        objs = scatter_objects(env, env.num_dists, all_unique=True)
        moved, fixed = env._rand_subset(objs, 2)
        return PutNextInstr(ObjDesc(moved.type, moved.color), ObjDesc(fixed.type, fixed.color))


class PutNext(BabyAITextEnv):
    """
    ## Description

    Put an object next to another one in a single room with `num_dists` distinct keys,
    balls and boxes (as minigrid's `BabyAI-PutNextLocal`).

    ## Mission Space

    "put the {colour} {type} next to the {colour} {type}"
    """

    def __init__(self, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        super().__init__(tasks=(PutNextTask(),), room_size=room_size, num_dists=num_dists, **kwargs)


document(
    PutNext,
    "the agent drops the first object next to the second",
    ["BabyAI-Text-PutNext-v0"],
)
