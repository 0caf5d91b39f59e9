"""GLAM's original level ids (``BabyAI-MixedTrainLocal-v0``...), for code written against
GLAM's BabyAI-Text or BALROG, on stock minigrid.

These levels behave as GLAM's own: the observation is minigrid's dict (``image``,
``direction`` and ``mission`` as a string), ``info["descriptions"]`` holds the text, and
a mixed level draws its task kind once, when the env is built, and names it in
``env.unwrapped.action_kinds`` (BALROG builds envs until the kind it wants comes up).
Unlike GLAM's, the draw is seeded; see :class:`GLAMLevel`.  The ``BabyAI-Text-*`` ids
stay the library's own: array observations for SB3 by default (``observation="minigrid"``
gives them this dict too), a task per episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from babyai_text.envs._doc import ACTION_SPACE, REWARDS, termination
from babyai_text.envs.goto import GoToTask
from babyai_text.envs.open import OpenTask
from babyai_text.envs.pickup import PickUpTask
from babyai_text.envs.putnext import PutNextTask
from babyai_text.envs.sequence import SequenceTask
from babyai_text.level import _RENDER_KWARGS, BabyAITextEnv, HeldOut, Observation, Task, check_observation

#: GLAM's task kinds (the strings of ``action_kinds``), with our task and how many objects
#: besides GLAM's ``num_dists`` distractors it places (GLAM counts distractors, we count objects).
KINDS: dict[str, tuple[Callable[[], Task], int]] = {
    "goto": (GoToTask, 1),
    "pickup": (PickUpTask, 1),
    "open": (OpenTask, 1),
    "putnext": (PutNextTask, 2),
    "pick up seq go to": (lambda: SequenceTask("goto", "either"), 2),
}
#: The kinds of GLAM's MixedTrainLocal and MixedTestLocal, in GLAM's order.
MIXED_KINDS: tuple[str, ...] = tuple(KINDS)

# Draws the kind of levels built without a seed: a fresh process builds the same sequence
# of kinds every time (GLAM drew from an unseeded generator, so runs could not be replayed).
_UNSEEDED_KINDS = np.random.default_rng(0)


class GLAMLevel(BabyAITextEnv):
    """A level under one of GLAM's original ids.

    :param room_size: side of the room, walls included (GLAM: 8).
    :param num_rows: GLAM's argument; must be 1.
    :param num_cols: GLAM's argument; must be 1 (an ``"open"`` level adds its second room itself).
    :param num_dists: distractors besides the target objects, as GLAM counts them.
    :param seed: seeds the task kind's draw and the first ``reset()`` without a seed
        (``None``: the kind comes from a generator seeded once per process).
    :param max_steps: episode length (``None``: minigrid's BabyAI formula).
    :param kind: the task kind (one of ``action_kinds``' possible values) instead of a draw.
    :param observation: ``"minigrid"`` (GLAM's and BALROG's dict) or ``"text"`` (the
        ``BabyAI-Text-*`` array observation, for SB3 agents such as ``LLMPolicy``).
    :param render_mode: as minigrid's; ``render_kwargs`` are minigrid's rendering options.
    """

    #: kinds the id draws from, with the ``action_kinds`` string GLAM's level reports for each
    _kinds: ClassVar[dict[str, str]] = {k: k for k in MIXED_KINDS}
    _held_out: ClassVar[HeldOut] = "exclude"
    _variant: ClassVar[str] = "Standard"

    def __init__(
        self,
        room_size: int = 8,
        num_rows: int = 1,
        num_cols: int = 1,
        num_dists: int = 8,
        seed: int | None = None,
        max_steps: int | None = None,
        kind: str | None = None,
        observation: Observation = "minigrid",
        render_mode: str | None = None,
        **render_kwargs: Any,
    ) -> None:
        name = type(self).__name__
        unknown = sorted(set(render_kwargs) - set(_RENDER_KWARGS))
        if unknown:
            raise TypeError(
                f"{name} got unexpected keyword argument(s) {unknown}; GLAM's ids accept room_size, num_rows, "
                f"num_cols, num_dists, seed, max_steps, kind, observation, render_mode and {list(_RENDER_KWARGS)}"
            )
        if num_rows != 1 or num_cols != 1:
            raise ValueError(f"{name} is a one-room level: num_rows and num_cols must be 1 (GLAM's defaults)")
        check_observation(observation)
        if isinstance(num_dists, bool) or not isinstance(num_dists, (int, np.integer)) or num_dists < 0:
            raise ValueError(f"num_dists must be an integer >= 0 (distractors, as GLAM counts them), got {num_dists!r}")
        if kind is None:
            rng = np.random.default_rng(seed) if seed is not None else _UNSEEDED_KINDS
            kind = list(self._kinds)[int(rng.integers(len(self._kinds)))]
        elif kind not in self._kinds:
            raise ValueError(f"{name} has no task kind {kind!r}; its kinds are {sorted(self._kinds)}")
        task, extra = self._make_task(kind)
        self.kind = kind
        #: GLAM's attribute: the level's task kind, a one-element list
        self.action_kinds = [self._kinds[kind]]
        self._initial_seed = seed
        super().__init__(
            tasks=(task,),
            room_size=room_size,
            num_dists=int(num_dists) + extra,
            max_steps=max_steps,
            variant=self._variant,
            held_out=self._held_out,
            observation=observation,
            render_mode=render_mode,
            **render_kwargs,
        )

    def _make_task(self, kind: str) -> tuple[Task, int]:
        """The task of ``kind`` and the objects it places besides GLAM's distractors."""
        factory, extra = KINDS[kind]
        return factory(), extra

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if seed is None and self._initial_seed is not None:
            seed, self._initial_seed = self._initial_seed, None  # as GLAM's env seeded at construction
        return super().reset(seed=seed, options=options)


_DOC = (
    """
    ## Observation

    minigrid's dict: `image` (7x7x3 egocentric symbolic view), `direction`, and `mission`
    (the instruction as a string); `observation="text"` gives the `BabyAI-Text-*` array
    observation instead. `info["descriptions"]` holds GLAM's sentences ("You see a wall 2
    steps left", ...), with `mission`, `action_names`, `task` and `success`.
"""
    + ACTION_SPACE
    + REWARDS
    + termination("the instruction is completed")
)


def _document(cls: type, text: str, env_id: str, ours: str) -> None:
    cls.__doc__ = (
        f"""
    ## Description

    {text}

    GLAM's id `{env_id}`; our closest id is `{ours}` (which draws the task per episode and
    counts objects, not distractors, in `num_dists`).
"""
        + _DOC
        + f"""
    ## Registered Configurations

    - `{env_id}`
"""
    )


class MixedTrainLocal(GLAMLevel):
    pass


class MixedTestLocal(GLAMLevel):
    _held_out = "only"


class _GLAMSequence(GLAMLevel):
    # GLAM's sequence levels all report the same kind string, trailing space included (sic)
    _kinds: ClassVar[dict[str, str]] = {"sequence": "pick up seq pick up "}
    _sequence: ClassVar[tuple[str, str]]

    def _make_task(self, kind: str) -> tuple[Task, int]:
        return SequenceTask(*self._sequence), 2


class PickUpSeqGoToLocal(_GLAMSequence):
    _sequence = ("goto", "either")


class PickUpThenGoToLocal(_GLAMSequence):
    _sequence = ("goto", "then")


class GoToAfterPickUpLocal(_GLAMSequence):
    _sequence = ("goto", "after")


class PickUpSeqPickUpLocal(_GLAMSequence):
    _sequence = ("pickup", "either")


class GoToFrench(GLAMLevel):
    _kinds: ClassVar[dict[str, str]] = {"goto": "goto"}
    _held_out = "include"
    _variant = "French"

    def _make_task(self, kind: str) -> tuple[Task, int]:
        return GoToTask(), 0  # GLAM's GoToFrench picks its target among the num_dists objects


_document(
    MixedTrainLocal,
    "One of go to, pick up, open, put next to, and pick up then/after go to, drawn once per env "
    "(`action_kinds`); instructions never name a held-out colour-object pair (yellow box, red key, "
    "red door, green ball, grey door).",
    "BabyAI-MixedTrainLocal-v0",
    "BabyAI-Text-MixedTrain-v0",
)
_document(
    MixedTestLocal,
    "The kinds of MixedTrainLocal; every instruction names a held-out colour-object pair.",
    "BabyAI-MixedTestLocal-v0",
    "BabyAI-Text-MixedTest-v0",
)
_document(
    PickUpSeqGoToLocal,
    "Pick up an object, then go to another (phrased with 'then' or 'after').",
    "BabyAI-PickUpSeqGoToLocal-v0",
    "BabyAI-Text-PickUpSeqGoTo-v0",
)
_document(
    PickUpThenGoToLocal,
    "Pick up an object, then go to another ('..., then ...').",
    "BabyAI-PickUpThenGoToLocal-v0",
    "BabyAI-Text-PickUpThenGoTo-v0",
)
_document(
    GoToAfterPickUpLocal,
    "Go to an object after picking up another ('... after you ...').",
    "BabyAI-GoToAfterPickUpLocal-v0",
    "BabyAI-Text-GoToAfterPickUp-v0",
)
_document(
    PickUpSeqPickUpLocal,
    "Pick up an object, then another: the new composition of GLAM's generalization test.",
    "BabyAI-PickUpSeqPickUpLocal-v0",
    "BabyAI-Text-PickUpSeqPickUp-v0",
)
_document(
    GoToFrench,
    "Go to an object among `num_dists`, in French.",
    "BabyAI-GoToFrench-v0",
    "BabyAI-Text-GoTo-French-v0",
)
