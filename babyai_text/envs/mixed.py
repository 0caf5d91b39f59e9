"""GLAM's training and test mixtures of tasks, split by held-out colour-object pairs."""

from __future__ import annotations

from typing import Any

from babyai_text.envs._doc import document
from babyai_text.envs.goto import GoToTask
from babyai_text.envs.open import OpenTask
from babyai_text.envs.pickup import PickUpTask
from babyai_text.envs.putnext import PutNextTask
from babyai_text.envs.sequence import SequenceTask
from babyai_text.level import BabyAITextEnv, HeldOut, Task


def mixed_tasks() -> tuple[Task, ...]:
    """GoTo, PickUp, PutNext, Open and PickUpSeqGoTo: the tasks of GLAM's MixedTrainLocal."""
    return (GoToTask(), PickUpTask(), PutNextTask(), OpenTask(), SequenceTask("goto", "either"))


class _Mixed(BabyAITextEnv):
    _held_out: HeldOut

    def __init__(self, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        if "held_out" in kwargs:
            raise ValueError(
                f"{type(self).__name__} fixes held_out={self._held_out!r}; build BabyAITextEnv("
                "tasks=mixed_tasks(), held_out=...) for another split"
            )
        super().__init__(
            tasks=mixed_tasks(), room_size=room_size, num_dists=num_dists, held_out=self._held_out, **kwargs
        )


class MixedTrain(_Mixed):
    """
    ## Description

    Each episode draws one of GoTo, PickUp, PutNext, Open and PickUpSeqGoTo (uniformly);
    instructions never mention a held-out colour-object pair (yellow box, red key, red
    door, green ball, grey door), which may still appear as distractors.

    ## Mission Space

    The missions of the five tasks.
    """

    _held_out = "exclude"


class MixedTest(_Mixed):
    """
    ## Description

    The tasks of `MixedTrain`, but every instruction mentions at least one held-out
    colour-object pair (yellow box, red key, red door, green ball, grey door).

    ## Mission Space

    The missions of the five tasks.
    """

    _held_out = "only"


document(
    MixedTrain,
    "the drawn task's instruction is completed",
    ["BabyAI-Text-MixedTrain-v0", "BabyAI-Text-MixedTrain-<Variant>-v0 for each variant"],
)
document(MixedTest, "the drawn task's instruction is completed", ["BabyAI-Text-MixedTest-v0"])
