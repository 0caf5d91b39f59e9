"""The BabyAI-Text environments, grouped by instruction as in minigrid."""

from babyai_text.envs.goto import GoTo, GoToTask
from babyai_text.envs.mixed import MixedTest, MixedTrain, mixed_tasks
from babyai_text.envs.open import Open, OpenTask
from babyai_text.envs.pickup import PickUp, PickUpTask
from babyai_text.envs.putnext import PutNext, PutNextTask
from babyai_text.envs.sequence import (
    GoToAfterPickUp,
    PickUpSeqGoTo,
    PickUpSeqPickUp,
    PickUpThenGoTo,
    SequenceTask,
)

__all__ = [
    "GoTo",
    "GoToAfterPickUp",
    "GoToTask",
    "MixedTest",
    "MixedTrain",
    "Open",
    "OpenTask",
    "PickUp",
    "PickUpSeqGoTo",
    "PickUpSeqPickUp",
    "PickUpTask",
    "PickUpThenGoTo",
    "PutNext",
    "PutNextTask",
    "SequenceTask",
    "mixed_tasks",
]
