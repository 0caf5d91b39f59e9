"""The base of every BabyAI-Text environment: a minigrid BabyAI level that talks.

Level generation and success checking are minigrid's (``RoomGridLevel``, its
verifier); a :class:`Task` only places objects and builds an instruction tree, and the
environment adds the text observation, the language and the held-out-pair filter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, SupportsFloat

import numpy as np
from gymnasium import spaces
from minigrid.core.grid import Grid
from minigrid.core.roomgrid import RoomGrid
from minigrid.core.world_object import Wall
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling, RoomGridLevel
from minigrid.envs.babyai.core.verifier import Instr

from babyai_text.description import Describer
from babyai_text.language import NUM_ACTIONS, Language, get_language, instruction_objects
from babyai_text.observation import (
    ACTION_NAME_BYTES,
    DEFAULT_DESCRIPTION_BYTES,
    DEFAULT_HISTORY_LENGTH,
    MISSION_BYTES,
    PAD_ACTION,
    SENTENCE_SEPARATOR,
    MissionBytes,
    encode_text,
    make_observation_space,
    minigrid_observation_space,
    stack_rows,
)
from babyai_text.view import egocentric_view

#: (colour, type) pairs that ``MixedTrain`` instructions never mention and
#: ``MixedTest`` instructions always do (GLAM's generalization split).
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("yellow", "box"), ("red", "key"), ("red", "door"), ("green", "ball"), ("grey", "door")}
)
HeldOut = Literal["include", "exclude", "only"]
_HELD_OUT_MODES = ("include", "exclude", "only")
Observation = Literal["text", "minigrid"]
#: The values of every id's ``observation`` argument.
OBSERVATIONS: tuple[Observation, ...] = ("text", "minigrid")
_MAX_GENERATION_ATTEMPTS = 10_000
# Cells of the 7x7 view an object can occupy (all but the agent's).
_MAX_VISIBLE_OBJECTS = 48
_RENDER_KWARGS = ("screen_size", "highlight", "tile_size", "agent_pov")


class Task(ABC):
    """One kind of mission: where objects go and what the instruction is."""

    #: Name reported in ``info["task"]``.
    name: ClassVar[str]
    #: Rooms side by side the task needs (1 or 2).
    num_cols: ClassVar[int] = 1
    #: Fewest objects (``num_dists``) the task can be generated with.
    min_objects: ClassVar[int] = 1

    @abstractmethod
    def generate(self, env: BabyAITextEnv) -> Instr:
        """Place the agent and objects in ``env``'s fresh grid; return the instruction.

        Raise :class:`RejectSampling` to have the level drawn again.
        """

    def max_objects(self, num_dists: int) -> int:
        """Most objects (doors included) this task puts in the grid."""
        return num_dists


def _as_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class BabyAITextEnv(RoomGridLevel):
    """A BabyAI level whose observations carry GLAM's text (see :mod:`babyai_text.observation`).

    :param tasks: the mission kinds; with several, each episode draws one uniformly.
    :param room_size: side of each room in cells, walls included.
    :param num_dists: number of objects placed in the agent's room (targets included,
        as in minigrid's ``GoToLocal``).
    :param max_steps: episode length; ``None`` uses minigrid's BabyAI formula
        (room_size² × rooms × navigations the instruction needs).
    :param variant: a name from :data:`babyai_text.VARIANTS` or a :class:`Language`.
    :param history_length: observations kept in each observation (the current one and
        ``history_length - 1`` before it), with the actions between them.
    :param held_out: ``"include"`` (any instruction), ``"exclude"`` (never mention a
        :data:`HELD_OUT_PAIRS` pair) or ``"only"`` (always mention one).
    :param description_bytes: size of each description row; the default fits every
        registered configuration, and a configuration whose text could overflow it is
        refused at construction.
    :param observation: ``"text"`` (the default): the array observation of
        :mod:`babyai_text.observation`, which SB3 can store; ``"minigrid"``: minigrid's
        observation, ``{"image", "direction", "mission": str}`` with minigrid's space for
        BabyAI levels, on which minigrid's wrappers (``FlatObsWrapper``...) apply as on
        minigrid's envs.  ``history_length`` and ``description_bytes`` size the text
        observation only.  With ``"minigrid"``, an env whose tasks differ in room count
        (``MixedTrain``) pads every grid to the widest task's with wall columns on the
        right, so that the full-grid wrappers (``FullyObsWrapper``...) keep one shape;
        see :class:`babyai_text.wrappers.MinigridObservation`.
    :param render_mode: ``"ansi"`` (text), ``"rgb_array"`` or ``"human"`` (minigrid's).
    :param render_kwargs: minigrid's rendering options (``screen_size``, ``highlight``,
        ``tile_size``, ``agent_pov``).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["human", "rgb_array", "ansi"], "render_fps": 10}

    def __init__(
        self,
        tasks: Sequence[Task],
        room_size: int = 8,
        num_dists: int = 8,
        max_steps: int | None = None,
        variant: str | Language = "Standard",
        history_length: int = DEFAULT_HISTORY_LENGTH,
        held_out: HeldOut = "include",
        description_bytes: int = DEFAULT_DESCRIPTION_BYTES,
        observation: Observation = "text",
        render_mode: str | None = None,
        **render_kwargs: Any,
    ) -> None:
        unknown = sorted(set(render_kwargs) - set(_RENDER_KWARGS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s) {unknown}; it accepts room_size, "
                f"num_dists, max_steps, variant, history_length, held_out, description_bytes, observation, "
                f"render_mode and {list(_RENDER_KWARGS)}"
            )
        check_observation(observation)
        if not tasks:
            raise ValueError("an environment needs at least one task")
        room_size = _as_int("room_size", room_size, 4)
        num_dists = _as_int("num_dists", num_dists, max(t.min_objects for t in tasks))
        capacity = (room_size - 2) ** 2 - 5  # interior minus the agent and its 4 neighbours
        if num_dists > capacity:
            raise ValueError(
                f"num_dists={num_dists} objects do not fit in a room of size {room_size} (at most "
                f"{capacity}); raise room_size or lower num_dists"
            )
        if max_steps is not None:
            max_steps = _as_int("max_steps", max_steps, 1)
        history_length = _as_int("history_length", history_length, 1)
        description_bytes = _as_int("description_bytes", description_bytes, 1)
        if held_out not in _HELD_OUT_MODES:
            raise ValueError(f"held_out must be one of {_HELD_OUT_MODES}, got {held_out!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")

        self.language = get_language(variant)
        self.tasks = tuple(tasks)
        self.num_dists = num_dists
        self.history_length = history_length
        self.held_out: HeldOut = held_out
        self.description_bytes = description_bytes
        self.observation_mode: Observation = observation
        self._describer = Describer(self.language)
        if observation == "text":  # minigrid's observation has no fixed-size text fields to overflow
            self._check_text_fits()

        self._task = self.tasks[0]
        super().__init__(
            room_size=room_size,
            num_rows=1,
            num_cols=self._task.num_cols,
            max_steps=max_steps,
            render_mode=render_mode,
            **render_kwargs,
        )
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self._padded_width: int | None = None
        if observation == "text":
            self.observation_space = make_observation_space(history_length, description_bytes)
            self._action_names_array = np.concatenate(
                [
                    encode_text(n, ACTION_NAME_BYTES, "action name", "use shorter action names")
                    for n in self.action_names
                ]
            )
        else:
            self.observation_space = minigrid_observation_space()
            self._action_names_array = np.zeros(0, dtype=np.uint8)
            self.pad_grid(True)
        self._mission_array = np.zeros(MISSION_BYTES, dtype=np.uint8).view(MissionBytes)
        self._descriptions: deque[np.ndarray] = deque(maxlen=history_length)
        self._actions: deque[int] = deque(maxlen=history_length - 1)
        self._sentences: list[str] = []

    # --- configuration ------------------------------------------------------------------

    @property
    def action_names(self) -> tuple[str, ...]:
        """Names of actions 0-5 in this environment's language."""
        return self.language.action_names

    @property
    def task_name(self) -> str:
        """Name of the current episode's task."""
        return self._task.name

    @property
    def padded_width(self) -> int | None:
        """The width every grid is padded to (see :meth:`pad_grid`), or ``None`` when grids are not padded."""
        return self._padded_width

    def pad_grid(self, enabled: bool) -> None:
        """Pad (or stop padding) every grid to the widest task's width with wall columns on the right.

        Why: minigrid's full-grid wrappers (``FullyObsWrapper``, ``RGBImgObsWrapper``,
        ``SymbolicObsWrapper``) size their observation space from ``width`` once, at
        construction, but envs that mix one- and two-room tasks change the grid's width
        between episodes.  Padding keeps one width; nothing the agent observes or can do
        changes, since minigrid shows cells beyond the grid's edge as walls anyway (only
        full-grid views and renders of the narrower episodes gain the walls).  Does nothing
        on an env whose tasks all have one width.  Takes effect from the next ``reset()``;
        ``width`` is the padded width at once, for wrappers built before it.
        """
        widths = {(self.room_size - 1) * task.num_cols + 1 for task in self.tasks}
        self._padded_width = max(widths) if enabled and len(widths) > 1 else None
        if self._padded_width is not None:
            self.width = self._padded_width

    def _check_text_fits(self) -> None:
        for name in self.language.action_names:
            if len(name.encode()) > ACTION_NAME_BYTES:
                raise ValueError(f"action name {name!r} is longer than {ACTION_NAME_BYTES} UTF-8 bytes")
            if SENTENCE_SEPARATOR in name:
                raise ValueError(f"action name {name!r} contains a newline")
        objects = max(task.max_objects(self.num_dists) for task in self.tasks)
        sentences = 1 + 3 + min(_MAX_VISIBLE_OBJECTS, objects)  # carried, walls, objects
        worst = sentences * (self._describer.longest_sentence_bytes() + len(SENTENCE_SEPARATOR))
        if worst > self.description_bytes:
            raise ValueError(
                f"with num_dists={self.num_dists} and the {self.language.name} language a description can "
                f"take up to {worst} bytes, more than description_bytes={self.description_bytes}; pass "
                f"description_bytes={worst} (observations then differ in shape from the default ones)"
            )

    # --- level generation ---------------------------------------------------------------

    def _gen_grid(self, width: int, height: int) -> None:
        # Replaces RoomGridLevel._gen_grid: the task (and so the layout) is drawn per
        # episode, the held-out filter is applied, rejections are retried silently but
        # not forever, and the mission is rendered in the env's language.
        self._task = self.tasks[0] if len(self.tasks) == 1 else self._rand_elem(self.tasks)
        self.num_cols = self._task.num_cols
        self.width = (self.room_size - 1) * self.num_cols + 1
        last_error: Exception | None = None
        for _ in range(_MAX_GENERATION_ATTEMPTS):
            try:
                RoomGrid._gen_grid(self, self.width, self.height)
                instrs = self._task.generate(self)
                self.validate_instrs(instrs)
                self._check_held_out(instrs)
            except (RejectSampling, RecursionError) as error:
                last_error = error
                continue
            self.instrs = instrs
            self.mission = self.language.mission(instrs, self)
            self.surface = self.mission
            if self._padded_width is not None and self.width < self._padded_width:
                self.grid = _padded(self.grid, self._padded_width)
                self.width = self._padded_width
            return
        raise RuntimeError(
            f"could not generate a {self._task.name} level (room_size={self.room_size}, "
            f"num_dists={self.num_dists}, held_out={self.held_out!r}) in {_MAX_GENERATION_ATTEMPTS} "
            f"attempts; last rejection: {last_error}"
        )

    def _check_held_out(self, instrs: Instr) -> None:
        if self.held_out == "include":
            return
        mentions = any((d.color, d.type) in HELD_OUT_PAIRS for d in instruction_objects(instrs))
        if mentions != (self.held_out == "only"):
            raise RejectSampling("instruction does not satisfy the held-out-pair filter")

    # --- gymnasium API ------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        raw, _ = super().reset(seed=seed, options=options)
        if self.observation_mode == "text":
            self._mission_array = encode_text(
                self.mission, MISSION_BYTES, "mission", "use a language with shorter words"
            ).view(MissionBytes)
        self._descriptions.clear()
        self._actions.clear()
        return self._observe(raw), self._info(success=False)

    def step(self, action: Any) -> tuple[dict[str, Any], SupportsFloat, bool, bool, dict[str, Any]]:
        a = self._check_action(action)
        raw, reward, terminated, truncated, _ = super().step(a)
        self._actions.append(a)
        obs = self._observe(raw)
        return obs, reward, terminated, truncated, self._info(success=terminated and float(reward) > 0)

    def _check_action(self, action: Any) -> int:
        value = action
        if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
            value = value.reshape(()).item() if value.dtype.kind in "iu" else value
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, (int, np.integer))
            or not (0 <= value < NUM_ACTIONS)
        ):
            names = ", ".join(f"{i}={n}" for i, n in enumerate(self.action_names))
            raise ValueError(f"invalid action {action!r}: BabyAI-Text actions are integers 0-5 ({names})")
        return int(value)

    def gen_obs(self) -> dict[str, Any]:
        # Same observation as MiniGridEnv.gen_obs, several times faster.
        image = egocentric_view(self.grid, self.agent_pos, self.agent_dir, self.carrying)
        return {"image": image, "direction": self.agent_dir, "mission": self.mission}

    def _observe(self, raw: dict[str, Any]) -> dict[str, Any]:
        image = raw["image"]
        self._sentences = self._describer.describe(image)
        if self.observation_mode == "minigrid":
            return {"image": image, "direction": int(raw["direction"]), "mission": self.mission}
        row = encode_text(
            SENTENCE_SEPARATOR.join(self._sentences),
            self.description_bytes,
            "description",
            "pass a larger description_bytes",
        )
        self._descriptions.append(row)
        obs = {
            "image": image,
            "direction": raw["direction"],
            "mission": self._mission_array.copy(),
            "action_names": self._action_names_array.copy(),
            "descriptions": stack_rows(list(self._descriptions), self.description_bytes, self.history_length),
        }
        if self.history_length > 1:
            actions = np.full(self.history_length - 1, PAD_ACTION, dtype=np.int64)
            if self._actions:
                actions[len(actions) - len(self._actions) :] = self._actions
            obs["actions"] = actions
        return obs

    def _info(self, success: bool) -> dict[str, Any]:
        return {
            "mission": self.mission,
            "descriptions": list(self._sentences),
            "action_names": self.action_names,
            "task": self._task.name,
            "success": bool(success),
        }

    def render(self) -> Any:
        if self.render_mode == "ansi":
            return "\n".join([f"Mission: {self.mission}", *self._sentences]) + "\n"
        return super().render()


def check_observation(observation: object) -> None:
    """Raise ``ValueError`` unless ``observation`` is one of :data:`OBSERVATIONS`."""
    if not isinstance(observation, str) or observation not in OBSERVATIONS:
        raise ValueError(
            f"observation must be one of {OBSERVATIONS}, got {observation!r}: 'text' is BabyAI-Text's array "
            "observation (the default of the BabyAI-Text-* ids), 'minigrid' is minigrid's dict with the mission "
            "as a string (the default of GLAM's ids), the one minigrid's wrappers read"
        )


def _padded(grid: Grid, width: int) -> Grid:
    """``grid`` widened to ``width`` with wall columns on the right."""
    padded = Grid(width, grid.height)
    for y in range(grid.height):
        padded.grid[y * width : y * width + grid.width] = grid.grid[y * grid.width : (y + 1) * grid.width]
        for x in range(grid.width, width):
            padded.grid[y * width + x] = Wall()
    return padded


def scatter_objects(env: BabyAITextEnv, count: int, *, all_unique: bool = False) -> list[Any]:
    """Place the agent, then ``count`` random keys/balls/boxes, in a one-room grid; all reachable.

    The random draws are exactly those of minigrid's ``GoToLocal``, so a seed gives the
    same level as there.
    """
    if env.num_cols != 1:
        raise ValueError("scatter_objects is for one-room levels")
    env.place_agent()
    objs = env.add_distractors(num_distractors=count, all_unique=all_unique)
    env.check_objs_reachable()
    return objs
