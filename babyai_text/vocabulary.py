"""The words BabyAI-Text can say, for word-level tokenizers (baseline agents, tiny test models)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from babyai_text.language import COLOURS, DOOR_STATES, VARIANTS, Language

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


@cache
def babyai_vocabulary(episodes: int = 40) -> tuple[str, ...]:
    """Every word the built-in languages use in actions, descriptions and missions, sorted.

    Missions are sampled from every task kind (MixedTrain, PickUpSeqPickUp, the sequence
    tasks) in every variant, so their connectives ("then", "after", "puis", "après
    avoir"...) are included; digits cover the step counts.
    """
    import gymnasium as gym

    words = set("0123456789")
    texts: list[str] = []
    for name, language in VARIANTS.items():
        texts.extend(_language_texts(language))
        for env_id in ("BabyAI-Text-MixedTrain-v0", "BabyAI-Text-PickUpSeqPickUp-v0", "BabyAI-Text-MixedTest-v0"):
            env = gym.make(env_id, variant=name)
            texts.extend(env.reset(seed=seed)[1]["mission"] for seed in range(episodes))
    for text in texts:
        words.update(split_words(text))
    return tuple(sorted(words))
