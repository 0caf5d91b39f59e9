"""Languages that turn structured BabyAI facts into text.

A :class:`Language` renders three things from structured data, never by editing a
finished sentence: the names of the six actions, the sentences describing what the
agent sees, and the mission (from minigrid's instruction tree).  The generalization
variants of the GLAM paper are languages too: English with other words
(:data:`VARIANTS`) or French, which has its own grammar (gender agreement,
contractions, elision).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from minigrid.envs.babyai.core.verifier import (
    ActionInstr,
    AfterInstr,
    AndInstr,
    BeforeInstr,
    GoToInstr,
    Instr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)

if TYPE_CHECKING:
    from minigrid.minigrid_env import MiniGridEnv

#: minigrid's names, in the order of their indices in the symbolic image.
COLOURS: tuple[str, ...] = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECT_TYPES: tuple[str, ...] = ("key", "ball", "box", "door", "wall")
DOOR_STATES: tuple[str, ...] = ("open", "closed", "locked")

#: The six BabyAI-Text actions (minigrid's actions 0-5; minigrid's "done" is not offered).
STANDARD_ACTION_NAMES: tuple[str, ...] = (
    "turn left",
    "turn right",
    "go forward",
    "pick up",
    "drop",
    "toggle",
)
NUM_ACTIONS = len(STANDARD_ACTION_NAMES)


def _frozen(mapping: Mapping[str, object]) -> dict:
    # A private copy (not a MappingProxyType, which cannot be pickled with the env).
    return dict(mapping)


def _check_keys(kind: str, mapping: Mapping[str, object], expected: tuple[str, ...]) -> None:
    missing = [k for k in expected if k not in mapping]
    unknown = [k for k in mapping if k not in expected]
    if missing or unknown:
        raise ValueError(f"{kind} table must name exactly {list(expected)}; missing {missing}, unknown {unknown}")


def instruction_objects(instr: Instr) -> list[ObjDesc]:
    """Return every object description an instruction mentions, in reading order."""
    if isinstance(instr, (BeforeInstr, AfterInstr, AndInstr)):
        return instruction_objects(instr.instr_a) + instruction_objects(instr.instr_b)
    if isinstance(instr, PutNextInstr):
        return [instr.desc_move, instr.desc_fixed]
    if isinstance(instr, ActionInstr):
        return [instr.desc]
    raise TypeError(f"unsupported instruction type {type(instr).__name__}")


@dataclass(frozen=True, eq=False)
class Language(ABC):
    """Base class of the languages an environment can speak.

    :param name: a short name, shown in ``repr`` and errors.
    :param action_names: the names of actions 0-5 (turn left, turn right, go forward,
        pick up, drop, toggle), as the agent is told them.
    """

    name: str
    action_names: tuple[str, ...] = STANDARD_ACTION_NAMES

    def __post_init__(self) -> None:
        if len(self.action_names) != NUM_ACTIONS:
            raise ValueError(f"language {self.name!r} must name {NUM_ACTIONS} actions, got {len(self.action_names)}")
        if len(set(self.action_names)) != NUM_ACTIONS:
            raise ValueError(f"language {self.name!r} has duplicate action names {self.action_names}")

    # --- descriptions -------------------------------------------------------------------

    @abstractmethod
    def see_object(self, obj_type: str, colour: str, state: str | None, dx: int, dy: int) -> str:
        """Sentence for an object ``dx`` cells to the right (negative: left) and ``dy`` ahead."""

    @abstractmethod
    def see_wall(self, dx: int, dy: int) -> str:
        """Sentence for a wall straight ahead (``dx == 0``) or straight to one side (``dy == 0``)."""

    @abstractmethod
    def carry(self, obj_type: str, colour: str) -> str:
        """Sentence for the object the agent carries."""

    # --- missions -----------------------------------------------------------------------

    def mission(self, instr: Instr, env: MiniGridEnv) -> str:
        """Render a minigrid instruction tree as this language's mission string.

        Whether an object is "the X" or "a X" follows minigrid's rule: "the" when the
        description matches exactly one object of the current grid.
        """
        if isinstance(instr, BeforeInstr):
            return self.then(self.mission(instr.instr_a, env), instr.instr_b, env)
        if isinstance(instr, AfterInstr):
            return self.after(self.mission(instr.instr_a, env), instr.instr_b, env)
        if isinstance(instr, AndInstr):
            return self.conjunction(self.mission(instr.instr_a, env), self.mission(instr.instr_b, env))
        if isinstance(instr, ActionInstr):
            return self.clause(instr, env)
        raise TypeError(f"unsupported instruction type {type(instr).__name__}")

    @abstractmethod
    def clause(self, instr: ActionInstr, env: MiniGridEnv) -> str:
        """A single imperative clause ("go to the red ball")."""

    @abstractmethod
    def then(self, first: str, second: Instr, env: MiniGridEnv) -> str:
        """'A, then B'."""

    @abstractmethod
    def after(self, main: str, before: Instr, env: MiniGridEnv) -> str:
        """'A after you B'."""

    @abstractmethod
    def conjunction(self, a: str, b: str) -> str:
        """'A and B'."""

    @staticmethod
    def _is_unique(desc: ObjDesc, env: MiniGridEnv) -> bool:
        if desc.loc is not None:
            raise NotImplementedError(
                f"object descriptions with a location ({desc.loc!r}) are not rendered by BabyAI-Text"
            )
        objs, _ = desc.find_matching_objs(env)
        if not objs:
            raise ValueError(f"no object in the grid matches the description {desc!r}")
        return len(objs) == 1


@dataclass(frozen=True, eq=False)
class English(Language):
    """English, minigrid's surface grammar; word tables can be replaced (the variants).

    :param nouns: word for each of key, ball, box, door, wall.
    :param colours: word for each of minigrid's six colours.
    :param door_states: word for each of open, closed, locked.
    """

    nouns: Mapping[str, str] = field(
        default_factory=lambda: _frozen({t: t for t in OBJECT_TYPES}),
    )
    colours: Mapping[str, str] = field(default_factory=lambda: _frozen({c: c for c in COLOURS}))
    door_states: Mapping[str, str] = field(
        default_factory=lambda: _frozen({s: s for s in DOOR_STATES}),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_keys("nouns", self.nouns, OBJECT_TYPES)
        _check_keys("colours", self.colours, COLOURS)
        _check_keys("door_states", self.door_states, DOOR_STATES)
        for attr in ("nouns", "colours", "door_states"):
            object.__setattr__(self, attr, _frozen(getattr(self, attr)))

    def replace(self, name: str, **changes: object) -> English:
        """A copy with other words; ``changes`` maps fields to (partial) word tables."""
        merged: dict[str, object] = {"name": name}
        for key, value in changes.items():
            current = getattr(self, key)
            merged[key] = {**current, **value} if isinstance(current, Mapping) else value  # type: ignore[dict-item]
        return dataclasses.replace(self, **merged)  # type: ignore[arg-type]

    @staticmethod
    def _indefinite(phrase: str) -> str:
        return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase

    @staticmethod
    def _steps(n: int, direction: str) -> str:
        return f"{n} step {direction}" if n == 1 else f"{n} steps {direction}"

    def _where(self, dx: int, dy: int) -> str:
        parts = []
        if dx:
            parts.append(self._steps(abs(dx), "left" if dx < 0 else "right"))
        if dy:
            parts.append(self._steps(dy, "forward"))
        return " and ".join(parts)

    def _thing(self, obj_type: str, colour: str | None, state: str | None = None) -> str:
        words = [self.door_states[state]] if state is not None else []
        if colour is not None:
            words.append(self.colours[colour])
        words.append(self.nouns[obj_type])
        return " ".join(words)

    def see_object(self, obj_type: str, colour: str, state: str | None, dx: int, dy: int) -> str:
        thing = self._indefinite(self._thing(obj_type, colour, state))
        return f"You see {thing} {self._where(dx, dy)}"

    def see_wall(self, dx: int, dy: int) -> str:
        return f"You see {self._indefinite(self.nouns['wall'])} {self._where(dx, dy)}"

    def carry(self, obj_type: str, colour: str) -> str:
        return f"You carry {self._indefinite(self._thing(obj_type, colour))}"

    def _object(self, desc: ObjDesc, env: MiniGridEnv) -> str:
        thing = self._thing(desc.type, desc.color) if desc.type else self._thing_any(desc.color)
        return ("the " + thing) if self._is_unique(desc, env) else self._indefinite(thing)

    def _thing_any(self, colour: str | None) -> str:
        return f"{self.colours[colour]} object" if colour else "object"

    def clause(self, instr: ActionInstr, env: MiniGridEnv) -> str:
        if isinstance(instr, GoToInstr):
            return "go to " + self._object(instr.desc, env)
        if isinstance(instr, PickupInstr):
            return "pick up " + self._object(instr.desc, env)
        if isinstance(instr, OpenInstr):
            return "open " + self._object(instr.desc, env)
        if isinstance(instr, PutNextInstr):
            return f"put {self._object(instr.desc_move, env)} next to {self._object(instr.desc_fixed, env)}"
        raise TypeError(f"unsupported instruction type {type(instr).__name__}")

    def then(self, first: str, second: Instr, env: MiniGridEnv) -> str:
        return f"{first}, then {self.mission(second, env)}"

    def after(self, main: str, before: Instr, env: MiniGridEnv) -> str:
        return f"{main} after you {self.mission(before, env)}"

    def conjunction(self, a: str, b: str) -> str:
        return f"{a} and {b}"


_FRENCH_VOWELS = "aeiouyàâéèêëîïôûùh"


@dataclass(frozen=True, eq=False)
class French(Language):
    """Grammatical French: articles and adjectives agree with the noun's gender.

    :param nouns: ``(word, gender)`` for each of key, ball, box, door, wall; gender is
        ``"f"`` or ``"m"``.
    :param colours: ``(masculine, feminine)`` forms for each colour.
    :param door_states: ``(masculine, feminine)`` forms for open, closed, locked.
    """

    action_names: tuple[str, ...] = (
        "tourner à gauche",
        "tourner à droite",
        "aller tout droit",
        "attraper",
        "lâcher",
        "basculer",
    )
    nouns: Mapping[str, tuple[str, str]] = field(
        default_factory=lambda: _frozen(
            {
                "key": ("clé", "f"),
                "ball": ("balle", "f"),
                "box": ("boîte", "f"),
                "door": ("porte", "f"),
                "wall": ("mur", "m"),
            }
        )
    )
    colours: Mapping[str, tuple[str, str]] = field(
        default_factory=lambda: _frozen(
            {
                "red": ("rouge", "rouge"),
                "green": ("vert", "verte"),
                "blue": ("bleu", "bleue"),
                "purple": ("violet", "violette"),
                "yellow": ("jaune", "jaune"),
                "grey": ("gris", "grise"),
            }
        )
    )
    door_states: Mapping[str, tuple[str, str]] = field(
        default_factory=lambda: _frozen(
            {"open": ("ouvert", "ouverte"), "closed": ("fermé", "fermée"), "locked": ("verrouillé", "verrouillée")}
        )
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_keys("nouns", self.nouns, OBJECT_TYPES)
        _check_keys("colours", self.colours, COLOURS)
        _check_keys("door_states", self.door_states, DOOR_STATES)
        for word, gender in self.nouns.values():
            if gender not in ("m", "f"):
                raise ValueError(f"gender of {word!r} must be 'm' or 'f', got {gender!r}")
        for attr in ("nouns", "colours", "door_states"):
            object.__setattr__(self, attr, _frozen(getattr(self, attr)))

    @staticmethod
    def _form(forms: tuple[str, str], gender: str) -> str:
        return forms[1] if gender == "f" else forms[0]

    def _noun_phrase(self, obj_type: str | None, colour: str | None, state: str | None = None) -> tuple[str, str]:
        """Noun with its adjectives (colour, then door state), and the noun's gender."""
        noun, gender = self.nouns[obj_type] if obj_type else ("objet", "m")
        words = [noun]
        if colour is not None:
            words.append(self._form(self.colours[colour], gender))
        if state is not None:
            words.append(self._form(self.door_states[state], gender))
        return " ".join(words), gender

    @staticmethod
    def _indefinite(phrase: str, gender: str) -> str:
        return ("une " if gender == "f" else "un ") + phrase

    @staticmethod
    def _definite(phrase: str, gender: str) -> str:
        if phrase[:1].lower() in _FRENCH_VOWELS:
            return "l'" + phrase
        return ("la " if gender == "f" else "le ") + phrase

    @staticmethod
    def _contract(preposition: str, noun_phrase: str) -> str:
        """``à``/``de`` followed by an article: au, du, d'une, à la, de l'..."""
        if noun_phrase.startswith("le "):
            return ("au " if preposition == "à" else "du ") + noun_phrase[3:]
        if preposition == "de" and noun_phrase[:1] in _FRENCH_VOWELS:
            return "d'" + noun_phrase
        return f"{preposition} {noun_phrase}"

    @staticmethod
    def _where(dx: int, dy: int) -> str:
        parts = []
        if dx:
            parts.append(f"{abs(dx)} pas {'à gauche' if dx < 0 else 'à droite'}")
        if dy:
            parts.append(f"{dy} pas devant")
        return "à " + " et ".join(parts)

    def see_object(self, obj_type: str, colour: str, state: str | None, dx: int, dy: int) -> str:
        phrase, gender = self._noun_phrase(obj_type, colour, state)
        return f"Tu vois {self._indefinite(phrase, gender)} {self._where(dx, dy)}"

    def see_wall(self, dx: int, dy: int) -> str:
        phrase, gender = self._noun_phrase("wall", None)
        return f"Tu vois {self._indefinite(phrase, gender)} {self._where(dx, dy)}"

    def carry(self, obj_type: str, colour: str) -> str:
        phrase, gender = self._noun_phrase(obj_type, colour)
        return f"Tu portes {self._indefinite(phrase, gender)}"

    def _object(self, desc: ObjDesc, env: MiniGridEnv) -> str:
        phrase, gender = self._noun_phrase(desc.type, desc.color)
        if self._is_unique(desc, env):
            return self._definite(phrase, gender)
        return self._indefinite(phrase, gender)

    def _clause(self, instr: ActionInstr, env: MiniGridEnv, *, past: bool) -> str:
        """Imperative clause, or (``past``) the past infinitive used after "après"."""
        if isinstance(instr, GoToInstr):
            verb = "être allé" if past else "va"
            return f"{verb} {self._contract('à', self._object(instr.desc, env))}"
        if isinstance(instr, PickupInstr):
            return f"{'avoir ramassé' if past else 'ramasse'} {self._object(instr.desc, env)}"
        if isinstance(instr, OpenInstr):
            return f"{'avoir ouvert' if past else 'ouvre'} {self._object(instr.desc, env)}"
        if isinstance(instr, PutNextInstr):
            fixed = self._contract("de", self._object(instr.desc_fixed, env))
            return f"{'avoir posé' if past else 'pose'} {self._object(instr.desc_move, env)} à côté {fixed}"
        raise TypeError(f"unsupported instruction type {type(instr).__name__}")

    def clause(self, instr: ActionInstr, env: MiniGridEnv) -> str:
        return self._clause(instr, env, past=False)

    def then(self, first: str, second: Instr, env: MiniGridEnv) -> str:
        return f"{first}, puis {self.mission(second, env)}"

    def after(self, main: str, before: Instr, env: MiniGridEnv) -> str:
        if not isinstance(before, ActionInstr):
            raise NotImplementedError("French 'après' clauses take a single action")
        return f"{main} après {self._clause(before, env, past=True)}"

    def conjunction(self, a: str, b: str) -> str:
        return f"{a} et {b}"


ENGLISH = English(name="Standard")

#: Every built-in language, by the variant name that selects it.
VARIANTS: Mapping[str, Language] = MappingProxyType(
    {
        "Standard": ENGLISH,
        "RenamedObjects": ENGLISH.replace("RenamedObjects", nouns={"key": "chair", "ball": "table", "box": "car"}),
        "InventedWords": ENGLISH.replace(
            "InventedWords",
            nouns={"key": "dax", "ball": "xolo", "box": "afze"},
            colours={
                "red": "faze",
                "green": "jatu",
                "blue": "croh",
                "purple": "vurst",
                "yellow": "gakul",
                "grey": "sil",
            },
        ),
        "ColourSynonyms": ENGLISH.replace(
            "ColourSynonyms",
            colours={
                "red": "vermilion",
                "green": "jade",
                "blue": "cyan",
                "purple": "violet",
                "yellow": "golden",
                "grey": "silver",
            },
        ),
        "SynonymActions": ENGLISH.replace(
            "SynonymActions",
            action_names=("rotate left", "rotate right", "move ahead", "take", "release", "switch"),
        ),
        "French": French(name="French"),
    }
)


def get_language(variant: str | Language) -> Language:
    """Resolve a variant name (or pass a :class:`Language` through)."""
    if isinstance(variant, Language):
        return variant
    try:
        return VARIANTS[variant]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)} or pass a babyai_text.Language"
        ) from None
