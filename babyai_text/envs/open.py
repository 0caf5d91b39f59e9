"""Open a locked door."""

from __future__ import annotations

from typing import Any

from minigrid.envs.babyai.core.verifier import Instr, ObjDesc, OpenInstr

from babyai_text.envs._doc import document
from babyai_text.level import BabyAITextEnv, Task


class OpenTask(Task):
    """Two rooms joined by a locked door; its key and the distractors are in the agent's room."""

    name = "Open"
    num_cols = 2

    def generate(self, env: BabyAITextEnv) -> Instr:
        door, _ = env.add_door(0, 0, door_idx=0, color=env._rand_color(), locked=True)
        env.place_agent(0, 0)
        env.add_object(0, 0, "key", door.color)
        env.add_distractors(0, 0, num_distractors=env.num_dists - 1, all_unique=False)
        env.check_objs_reachable()
        # As in GLAM, the door's colour is named half of the time ("open the door").
        colour = door.color if env._rand_bool() else None
        return OpenInstr(ObjDesc("door", colour))

    def max_objects(self, num_dists: int) -> int:
        return num_dists + 1  # the door


class Open(BabyAITextEnv):
    """
    ## Description

    Two rooms side by side, joined by a locked door of some colour. The agent starts in
    the left room with the door's key and `num_dists - 1` other keys, balls and boxes;
    it must pick up the key and toggle the door.

    ## Mission Space

    "open the {colour} door" or, half of the time, "open the door".
    """

    def __init__(self, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        super().__init__(tasks=(OpenTask(),), room_size=room_size, num_dists=num_dists, **kwargs)


document(Open, "the agent opens the door", ["BabyAI-Text-Open-v0"])
