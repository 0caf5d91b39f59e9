"""The observation contract: fixed-size arrays that stock Stable-Baselines3 can store.

SB3's buffers need shaped numeric arrays, so ``gymnasium.spaces.Text`` is not an
option.  Every BabyAI-Text observation is a :class:`gymnasium.spaces.Dict` of:

``image``          ``uint8 (7, 7, 3)``: minigrid's egocentric symbolic view.
``direction``      ``Discrete(4)``: the agent's heading.
``mission``        ``uint8 (MISSION_BYTES,)``: the mission, UTF-8, zero-padded.
``action_names``   ``uint8 (6 * ACTION_NAME_BYTES,)``: the names of actions 0-5, one
                   zero-padded slot of ``ACTION_NAME_BYTES`` each.
``descriptions``   ``uint8 (history_length * description_bytes,)``: one slot per
                   remembered step, oldest first, the current step in the last slot;
                   each holds that step's sentences joined by newlines; slots before
                   the episode start are zero.
``actions``        ``int64 (history_length - 1,)``: the actions taken between those
                   steps, oldest first; ``PAD_ACTION`` (-1) before the episode start.
                   Absent when ``history_length`` is 1 (SB3 cannot store empty arrays).

:func:`decode_observation` turns one observation, or a batch of them (numpy arrays or
torch tensors of any numeric dtype, as SB3 hands them to a policy), back into strings.
Text that does not fit its field raises an error; nothing is ever truncated.
The multi-slot fields are flat (1-D) because SB3's policies and env checker expect
either images or vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from minigrid.envs.babyai.core.roomgrid_level import BabyAIMissionSpace

from babyai_text.description import VIEW_SIZE
from babyai_text.language import NUM_ACTIONS

MISSION_BYTES = 256
ACTION_NAME_BYTES = 32
DEFAULT_DESCRIPTION_BYTES = 1536
DEFAULT_HISTORY_LENGTH = 3
PAD_ACTION = -1
SENTENCE_SEPARATOR = "\n"
#: Fields every BabyAI-Text observation has ("actions" too when ``history_length`` > 1).
TEXT_KEYS = ("mission", "action_names", "descriptions")

# Largest value of each channel of minigrid's symbolic view (object, colour, door state).
# Declaring it (rather than 255) also keeps SB3 from mistaking the 7x7 view for an
# image to normalise and feed to a CNN.
_IMAGE_HIGH = np.broadcast_to(np.array([10, 5, 2], dtype=np.uint8), (VIEW_SIZE, VIEW_SIZE, 3)).copy()


def make_observation_space(history_length: int, description_bytes: int) -> spaces.Dict:
    """The observation space for a history of ``history_length`` observations."""
    fields: dict[str, spaces.Space] = {
        "image": spaces.Box(low=0, high=_IMAGE_HIGH, dtype=np.uint8),
        "direction": spaces.Discrete(4),
        "mission": spaces.Box(0, 255, (MISSION_BYTES,), np.uint8),
        "action_names": spaces.Box(0, 255, (NUM_ACTIONS * ACTION_NAME_BYTES,), np.uint8),
        "descriptions": spaces.Box(0, 255, (history_length * description_bytes,), np.uint8),
    }
    if history_length > 1:
        fields["actions"] = spaces.Box(PAD_ACTION, NUM_ACTIONS - 1, (history_length - 1,), np.int64)
    return spaces.Dict(fields)


def minigrid_observation_space() -> spaces.Dict:
    """minigrid's observation space for BabyAI levels: ``image``, ``direction`` and ``mission``
    (minigrid's ``BabyAIMissionSpace``, which accepts any mission string)."""
    return spaces.Dict(
        {
            "image": spaces.Box(0, 255, (VIEW_SIZE, VIEW_SIZE, 3), np.uint8),
            "direction": spaces.Discrete(4),
            "mission": BabyAIMissionSpace(),
        }
    )


#: What to do instead of reading the text observation's mission as minigrid's string.
MINIGRID_ROUTE = (
    "BabyAI-Text's default (text) observation holds the mission as UTF-8 bytes in a uint8 array, not "
    "minigrid's mission string. For minigrid's wrappers (FlatObsWrapper, DictObservationSpaceWrapper, ...) "
    'build the env with gym.make(env_id, observation="minigrid"), or put babyai_text.MinigridObservation '
    "directly on it, below them; to read the mission, use info['mission'] or babyai_text.decode_observation(obs)"
)


class MissionBytes(np.ndarray):
    """The ``mission`` field of a text observation: a ``uint8`` array of UTF-8 bytes that
    says so when code treats it as minigrid's mission string.

    Why: minigrid's ``FlatObsWrapper`` compares the mission with its cached string
    (``mission != None`` on its first observation) and ``DictObservationSpaceWrapper``
    calls ``mission.replace(...)``; on a plain array these fail deep inside minigrid
    ("The truth value of an array with more than one element is ambiguous", "no
    attribute 'replace'") with no hint of the fix.  This subclass raises an error naming
    :data:`MINIGRID_ROUTE` instead, on the first ``reset()``.

    Only those uses change: comparing the field with a string or ``None`` (``==``,
    ``!=``, ``in``) raises ``TypeError``, and a ``str`` method (``replace``, ``lower``...)
    raises ``AttributeError``.  Everything else is ``ndarray``'s: arithmetic, comparisons
    with arrays, pickling; ``np.asarray``, ``np.copy``, vector envs and SB3's buffers give
    back plain arrays.

    Example::

        obs, info = gym.make("BabyAI-Text-GoTo-v0").reset(seed=0)
        obs["mission"].dtype                        # uint8
        obs["mission"].lower()                      # AttributeError: ... observation="minigrid" ...
        decode_observation(obs).mission == info["mission"]   # True
    """

    # Defining __eq__ would otherwise make instances hashable; ndarrays are not.
    __hash__ = None  # type: ignore[assignment]

    def _refuse_comparison(self, other: object) -> None:
        if other is None or isinstance(other, str):
            raise TypeError(f"cannot compare the mission field with {other!r}. {MINIGRID_ROUTE}")

    def __eq__(self, other: object) -> Any:  # type: ignore[override]
        self._refuse_comparison(other)
        return super().__eq__(other)

    def __ne__(self, other: object) -> Any:  # type: ignore[override]
        self._refuse_comparison(other)
        return super().__ne__(other)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes ndarray lacks; str's methods get the explanation.
        if not name.startswith("_") and hasattr(str, name):
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r} (a str method). {MINIGRID_ROUTE}"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def encode_text(text: str | bytes, size: int, field: str, fix: str) -> np.ndarray:
    """UTF-8 bytes of ``text`` zero-padded to ``size``; raises rather than truncate.

    :param field: the observation field, named in the error.
    :param fix: what the user can do about an overflow, appended to the error.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) > size:
        raise ValueError(
            f"BabyAI-Text: {field} text of {len(data)} bytes does not fit its {size}-byte "
            f"observation field ({data[:60]!r}...); {fix}"
        )
    out = np.zeros(size, dtype=np.uint8)
    out[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return out


@dataclass(frozen=True)
class TextObservation:
    """The text content of one BabyAI-Text observation.

    :param mission: the instruction, e.g. ``"go to the red ball"``.
    :param action_names: names of actions 0-5 in the environment's language.
    :param descriptions: sentences of each remembered step, oldest first; the last entry
        is the current step.  Its length is between 1 and ``history_length``.
    :param actions: the action indices taken between those steps
        (``len(descriptions) - 1`` of them).
    """

    mission: str
    action_names: tuple[str, ...]
    descriptions: tuple[tuple[str, ...], ...]
    actions: tuple[int, ...]

    @property
    def current(self) -> tuple[str, ...]:
        """The sentences describing the current step."""
        return self.descriptions[-1]


def _as_array(value: Any, key: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly on an accelerator
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"observation field {key!r} has dtype {arr.dtype}; expected numbers")
    return arr


def _as_bytes(value: Any, key: str) -> np.ndarray:
    arr = _as_array(value, key)
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255 or not np.array_equal(arr, np.round(arr))):
            raise ValueError(
                f"observation field {key!r} holds values that are not bytes (0-255 integers); it was "
                "changed after the environment produced it (normalised or scaled?). BabyAI-Text text "
                "fields must reach the policy unchanged: do not wrap the env in VecNormalize for them."
            )
        arr = arr.astype(np.uint8)
    return arr


def _text(row: np.ndarray, key: str) -> str:
    data = row.tobytes().rstrip(b"\0")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"observation field {key!r} is not valid UTF-8 text: {err}") from None


def _decode_one(fields: Mapping[str, np.ndarray], i: int | None) -> TextObservation:
    def pick(key: str) -> np.ndarray:
        return fields[key] if i is None else fields[key][i]

    actions_arr = pick("actions")
    actions = [int(a) for a in actions_arr.reshape(-1).tolist()]
    past = [a for a in actions if a != PAD_ACTION]
    if any(a < 0 or a >= NUM_ACTIONS for a in past) or actions[: len(actions) - len(past)] != [PAD_ACTION] * (
        len(actions) - len(past)
    ):
        raise ValueError(f"observation field 'actions' = {actions} is not a padded action history")
    rows = pick("descriptions").reshape(len(actions) + 1, -1)
    descriptions = tuple(
        tuple(s for s in _text(row, "descriptions").split(SENTENCE_SEPARATOR) if s)
        for row in rows[rows.shape[0] - len(past) - 1 :]
    )
    return TextObservation(
        mission=_text(pick("mission"), "mission"),
        action_names=tuple(_text(row, "action_names") for row in pick("action_names").reshape(NUM_ACTIONS, -1)),
        descriptions=descriptions,
        actions=tuple(past),
    )


def decode_observation(obs: Mapping[str, Any]) -> TextObservation | list[TextObservation]:
    """Decode the text fields of one observation, or of a batch (leading batch axis).

    :param obs: a BabyAI-Text observation dict, as returned by the env or a VecEnv, or
        as SB3 hands it to a policy (float tensors are accepted if they hold bytes).
    :return: a :class:`TextObservation`, or a list of them for a batch.
    """
    if not isinstance(obs, Mapping):
        raise TypeError(f"expected a BabyAI-Text observation dict, got {type(obs).__name__}")
    missing = [k for k in TEXT_KEYS if k not in obs]
    if missing:
        raise ValueError(
            f"observation lacks the BabyAI-Text field(s) {missing} (it has {sorted(obs)}); build the "
            "environment with gym.make('BabyAI-Text-...') after `import babyai_text`"
        )
    fields = {k: _as_bytes(obs[k], k) for k in ("mission", "action_names", "descriptions")}
    if "actions" in obs:
        fields["actions"] = _as_array(obs["actions"], "actions")
    else:  # history_length 1: no past actions
        fields["actions"] = np.zeros((*fields["mission"].shape[:-1], 0), dtype=np.int64)
    ndim = fields["mission"].ndim
    if ndim not in (1, 2):
        raise ValueError(
            f"observation field 'mission' has shape {fields['mission'].shape}; expected (bytes,) or (batch, bytes)"
        )
    for key in ("action_names", "descriptions", "actions"):
        if fields[key].ndim != ndim or fields[key].shape[:-1] != fields["mission"].shape[:-1]:
            raise ValueError(
                f"observation field {key!r} has shape {fields[key].shape}, inconsistent with "
                f"mission's shape {fields['mission'].shape}"
            )
    history = fields["actions"].shape[-1] + 1
    if fields["descriptions"].shape[-1] % history or fields["action_names"].shape[-1] % NUM_ACTIONS:
        raise ValueError(
            f"observation fields 'descriptions' {fields['descriptions'].shape} and 'action_names' "
            f"{fields['action_names'].shape} do not split into {history} and {NUM_ACTIONS} slots"
        )
    if ndim == 1:
        return _decode_one(fields, None)
    return [_decode_one(fields, i) for i in range(fields["mission"].shape[0])]


def decode_missions(obs: Mapping[str, Any]) -> list[str]:
    """Only the missions of an observation or a batch (for agents that read nothing else)."""
    if "mission" not in obs:
        raise ValueError("observation lacks the BabyAI-Text field 'mission'")
    arr = _as_bytes(obs["mission"], "mission")
    return [_text(row, "mission") for row in arr.reshape(-1, arr.shape[-1])]


def decode_batch(obs: Mapping[str, Any]) -> list[TextObservation]:
    """Like :func:`decode_observation`, but always returns a list (a single obs becomes one item)."""
    decoded = decode_observation(obs)
    return decoded if isinstance(decoded, list) else [decoded]


def stack_rows(rows: Sequence[np.ndarray], width: int, num_rows: int) -> np.ndarray:
    """Flat ``num_rows * width`` zeros with ``rows`` in the last slots."""
    out = np.zeros((num_rows, width), dtype=np.uint8)
    if rows:
        out[num_rows - len(rows) :] = rows
    return out.reshape(-1)
