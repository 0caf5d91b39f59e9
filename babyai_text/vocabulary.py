"""The words BabyAI-Text can say, for word-level tokenizers (baseline agents, tiny test models)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from minigrid.envs.babyai.core.verifier import (
    ActionInstr,
    AfterInstr,
    AndInstr,
    BeforeInstr,
    GoToInstr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)

from babyai_text.language import COLOURS, DOOR_STATES, ENGLISH, VARIANTS, Language

_WORD = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Words and punctuation marks of ``text`` (lower-cased), as the word tokenizers see them."""
    return _WORD.findall(text.lower())


def _language_texts(language: Language) -> Iterable[str]:
    yield from language.action_names
    for colour in COLOURS:
        for obj_type in ("key", "ball", "box"):
            yield language.carry(obj_type, colour)
            yield language.see_object(obj_type, colour, None, -2, 3)
            yield language.see_object(obj_type, colour, None, 1, 1)
        for state in DOOR_STATES:
            yield language.see_object("door", colour, state, 3, 6)
    yield language.see_wall(0, 1)
    yield language.see_wall(-2, 0)


class _Described(ObjDesc):
    """An object description that matches one object (``the``) or two (``a``) without a grid."""

    def __init__(self, obj_type: str | None, colour: str | None, unique: bool) -> None:
        super().__init__(obj_type, colour)
        self.unique = unique

    def find_matching_objs(self, env: object, use_location: bool = True) -> tuple[list[None], list[None]]:
        return [None] * (1 if self.unique else 2), []


def _mission_texts(language: Language) -> Iterable[str]:
    """Every clause form (each verb, object type or none, colour or none, definite or
    not) and every connective, rendered by ``language`` from instruction trees."""
    clauses: list[ActionInstr] = []
    for obj_type in (None, "key", "ball", "box", "door"):
        for colour in (None, *COLOURS):
            for unique in (True, False):
                desc = _Described(obj_type, colour, unique)
                clauses.append(GoToInstr(desc))
                if obj_type == "door":
                    clauses.append(OpenInstr(desc))
                else:
                    clauses.append(PickupInstr(desc))
                    clauses.append(PutNextInstr(desc, desc))
                    clauses.append(PutNextInstr(desc, _Described("door", colour, unique)))
    env = None  # the descriptions answer uniqueness themselves
    for clause in clauses:
        yield language.mission(clause, env)  # type: ignore[arg-type]
    first = clauses[0]
    for clause in clauses:  # each clause kind after each connective ("après avoir ramassé"...)
        for tree in (BeforeInstr(first, clause), AfterInstr(first, clause), AndInstr(first, clause)):
            yield language.mission(tree, env)  # type: ignore[arg-type]
    both = AndInstr(first, clauses[-1])
    yield language.mission(BeforeInstr(both, both), env)  # type: ignore[arg-type]


@cache
def language_vocabulary(language: Language = ENGLISH) -> tuple[str, ...]:
    """Every word ``language`` can say, sorted: its action names, every description and
    every mission form, rendered from its word tables (no level is generated, so the list
    is the same on every call and machine); digits cover the step counts.

    :param language: a built-in language (see :data:`~babyai_text.language.VARIANTS`) or your own.
    """
    words = set("0123456789")
    for text in (*_language_texts(language), *_mission_texts(language)):
        words.update(split_words(text))
    return tuple(sorted(words))


@cache
def babyai_vocabulary() -> tuple[str, ...]:
    """Every word the built-in languages (every variant) use in actions, descriptions and
    missions, sorted: the union of their :func:`language_vocabulary`."""
    return tuple(sorted({word for language in VARIANTS.values() for word in language_vocabulary(language)}))
