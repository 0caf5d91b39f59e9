"""Missions and sentences in every language: English parity with minigrid, variants, French grammar."""

from __future__ import annotations

import contextlib
import io
import re

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.world_object import Ball, Box, Door, Key
from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    BeforeInstr,
    GoToInstr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)

import babyai_text
from babyai_text import ENGLISH, VARIANTS, French
from tests.helpers import ALL_IDS, rollout


def texts_of(env_id: str, episodes: int = 40, steps_per_episode: int = 10) -> list[str]:
    env = gym.make(env_id)
    texts = list(env.unwrapped.action_names)
    for seed in range(episodes):
        for *_, info in rollout(env, seed=seed, steps=steps_per_episode, action_seed=seed):
            texts.append(info["mission"])
            texts.extend(info["descriptions"])
    return texts


def words_in(texts: list[str]) -> set[str]:
    return {w for t in texts for w in re.findall(r"[\wàâçéèêëîïôûù']+", t.lower())}


@pytest.mark.parametrize(
    "env_id",
    [i for i in ALL_IDS if "Invented" not in i and "Renamed" not in i and "Colour" not in i and "French" not in i],
)
def test_english_missions_equal_minigrid_surface(env_id: str) -> None:
    env = gym.make(env_id)
    for seed in range(30):
        _, info = env.reset(seed=seed)
        assert info["mission"] == env.unwrapped.instrs.surface(env.unwrapped)


@pytest.mark.parametrize(
    ("ours", "minigrids"),
    [
        ("BabyAI-Text-GoTo-v0", "BabyAI-GoToLocal-v0"),
        ("BabyAI-Text-GoToS5N2-v0", "BabyAI-GoToLocalS5N2-v0"),
        ("BabyAI-Text-PutNext-v0", "BabyAI-PutNextLocal-v0"),
    ],
)
def test_same_levels_as_minigrid(ours: str, minigrids: str) -> None:
    a, b = gym.make(ours), gym.make(minigrids)
    for seed in range(20):
        obs_a, info_a = a.reset(seed=seed)
        with contextlib.redirect_stdout(io.StringIO()):
            obs_b, _ = b.reset(seed=seed)
        assert info_a["mission"] == obs_b["mission"]
        np.testing.assert_array_equal(obs_a["image"], obs_b["image"])


REPLACED = {
    "RenamedObjects": ({"key", "ball", "box"}, {"chair", "table", "car"}),
    "InventedWords": (
        {"key", "ball", "box", "red", "green", "blue", "purple", "yellow", "grey"},
        {"dax", "xolo", "afze", "faze", "jatu", "croh", "vurst", "gakul", "sil"},
    ),
    "ColourSynonyms": (
        {"red", "green", "blue", "purple", "yellow", "grey"},
        {"vermilion", "jade", "cyan", "violet", "golden", "silver"},
    ),
}


@pytest.mark.parametrize("task", ["GoTo", "MixedTrain"])
@pytest.mark.parametrize("variant", sorted(REPLACED))
def test_variant_replaces_words(task: str, variant: str) -> None:
    words = words_in(texts_of(f"BabyAI-Text-{task}-{variant}-v0"))
    old, new = REPLACED[variant]
    assert not words & old, f"{variant} still says {words & old}"
    assert new <= words, f"{variant} never said {new - words}"


@pytest.mark.parametrize("task", ["GoTo", "MixedTrain"])
def test_synonym_actions(task: str) -> None:
    env = gym.make(f"BabyAI-Text-{task}-SynonymActions-v0")
    names = env.unwrapped.action_names
    assert names == ("rotate left", "rotate right", "move ahead", "take", "release", "switch")
    assert not set(names) & set(babyai_text.language.STANDARD_ACTION_NAMES)
    obs, _ = env.reset(seed=0)
    assert babyai_text.decode_observation(obs).action_names == names


def test_variants_keep_the_dynamics() -> None:
    """A variant changes words only: same seed and actions give the same symbolic trajectory."""
    base = rollout(gym.make("BabyAI-Text-MixedTrain-v0"), seed=9, steps=200)
    for variant in babyai_text.REGISTERED_VARIANTS:
        other = rollout(gym.make(f"BabyAI-Text-MixedTrain-{variant}-v0"), seed=9, steps=200)
        for (oa, ra, *_), (ob, rb, *_) in zip(base, other, strict=True):
            np.testing.assert_array_equal(oa["image"], ob["image"])
            assert ra == rb


def test_replacements_work_on_words_not_substrings() -> None:
    lang = VARIANTS["ColourSynonyms"]
    # "red" inside a longer word is untouched because nothing is substituted in text.
    assert lang.see_object("box", "red", None, 0, 2) == "You see a vermilion box 2 steps forward"
    assert VARIANTS["RenamedObjects"].carry("box", "red") == "You carry a red car"


FRENCH_SENTENCES = [
    (("see_object", "ball", "red", None, -1, 2), "Tu vois une balle rouge à 1 pas à gauche et 2 pas devant"),
    (("see_object", "key", "blue", None, -2, 0), "Tu vois une clé bleue à 2 pas à gauche"),
    (("see_object", "box", "purple", None, 3, 6), "Tu vois une boîte violette à 3 pas à droite et 6 pas devant"),
    (("see_object", "door", "grey", "locked", 2, 0), "Tu vois une porte grise verrouillée à 2 pas à droite"),
    (("see_object", "door", "green", "open", 0, 1), "Tu vois une porte verte ouverte à 1 pas devant"),
    (
        ("see_object", "door", "yellow", "closed", 1, 1),
        "Tu vois une porte jaune fermée à 1 pas à droite et 1 pas devant",
    ),
    (("see_wall", 0, 3), "Tu vois un mur à 3 pas devant"),
    (("see_wall", -1, 0), "Tu vois un mur à 1 pas à gauche"),
    (("carry", "key", "yellow"), "Tu portes une clé jaune"),
    (("carry", "ball", "grey"), "Tu portes une balle grise"),
]


@pytest.mark.parametrize(("call", "expected"), FRENCH_SENTENCES)
def test_french_sentences(call: tuple, expected: str) -> None:
    method, *args = call
    assert getattr(VARIANTS["French"], method)(*args) == expected


@pytest.fixture
def scene():
    """An Open level with a purple door, a red ball, a blue key, a yellow ball and two green boxes."""
    env = gym.make("BabyAI-Text-Open-v0").unwrapped
    env.reset(seed=0)
    for x in range(1, env.room_size - 1):
        for y in range(1, env.room_size - 1):
            if not isinstance(env.grid.get(x, y), Door):
                env.grid.set(x, y, None)
    env.agent_pos = (3, 3)
    for obj, pos in (
        (Ball("red"), (1, 1)),
        (Key("blue"), (1, 2)),
        (Box("green"), (1, 3)),
        (Box("green"), (1, 5)),
        (Ball("yellow"), (5, 1)),
    ):
        env.grid.set(*pos, obj)
    next(c for c in env.grid.grid if isinstance(c, Door)).color = "purple"
    return env


def _instr(kind: str):
    red_ball, blue_key, green_box = ObjDesc("ball", "red"), ObjDesc("key", "blue"), ObjDesc("box", "green")
    return {
        "goto": GoToInstr(red_ball),
        "pickup": PickupInstr(blue_key),
        "pickup_ambiguous": PickupInstr(green_box),
        "goto_ambiguous": GoToInstr(ObjDesc("box", "green")),
        "putnext": PutNextInstr(red_ball, ObjDesc("key", "blue")),
        "putnext_ambiguous": PutNextInstr(ObjDesc("ball", "yellow"), ObjDesc("box", "green")),
        "open": OpenInstr(ObjDesc("door", "purple")),
        "open_any": OpenInstr(ObjDesc("door")),
        "then": BeforeInstr(PickupInstr(ObjDesc("key", "blue")), GoToInstr(ObjDesc("ball", "red"))),
        "after": AfterInstr(GoToInstr(ObjDesc("ball", "red")), PickupInstr(ObjDesc("key", "blue"))),
        "after_pickup": AfterInstr(PickupInstr(ObjDesc("ball", "red")), PickupInstr(ObjDesc("key", "blue"))),
    }[kind]


MISSIONS = [
    ("goto", "go to the red ball", "va à la balle rouge"),
    ("pickup", "pick up the blue key", "ramasse la clé bleue"),
    ("pickup_ambiguous", "pick up a green box", "ramasse une boîte verte"),
    ("goto_ambiguous", "go to a green box", "va à une boîte verte"),
    ("putnext", "put the red ball next to the blue key", "pose la balle rouge à côté de la clé bleue"),
    ("putnext_ambiguous", "put the yellow ball next to a green box", "pose la balle jaune à côté d'une boîte verte"),
    ("open", "open the purple door", "ouvre la porte violette"),
    ("open_any", "open the door", "ouvre la porte"),
    ("then", "pick up the blue key, then go to the red ball", "ramasse la clé bleue, puis va à la balle rouge"),
    (
        "after",
        "go to the red ball after you pick up the blue key",
        "va à la balle rouge après avoir ramassé la clé bleue",
    ),
    (
        "after_pickup",
        "pick up the red ball after you pick up the blue key",
        "ramasse la balle rouge après avoir ramassé la clé bleue",
    ),
]


@pytest.mark.parametrize(("kind", "english", "french"), MISSIONS)
def test_missions(scene, kind: str, english: str, french: str) -> None:
    instr = _instr(kind)
    assert ENGLISH.mission(instr, scene) == english
    assert instr.surface(scene) == english  # minigrid's own surface agrees
    assert VARIANTS["French"].mission(instr, scene) == french


def test_french_agreement_with_masculine_nouns(scene) -> None:
    """Gender comes from the noun table: a masculine ball changes articles, contractions and adjectives."""
    lang = French(name="fr-ballon", nouns={**VARIANTS["French"].nouns, "ball": ("ballon", "m")})
    assert lang.mission(GoToInstr(ObjDesc("ball", "red")), scene) == "va au ballon rouge"
    assert lang.mission(PutNextInstr(ObjDesc("key", "blue"), ObjDesc("ball", "red")), scene) == (
        "pose la clé bleue à côté du ballon rouge"
    )
    assert lang.see_object("ball", "green", None, 0, 2) == "Tu vois un ballon vert à 2 pas devant"
    assert lang.carry("ball", "purple") == "Tu portes un ballon violet"
    assert lang.mission(AfterInstr(PickupInstr(ObjDesc("key", "blue")), GoToInstr(ObjDesc("ball", "red"))), scene) == (
        "ramasse la clé bleue après être allé au ballon rouge"
    )


def test_english_article_before_vowel() -> None:
    assert ENGLISH.see_object("door", "red", "open", 0, 1) == "You see an open red door 1 step forward"
    assert VARIANTS["InventedWords"].carry("box", "red") == "You carry a faze afze"


def test_french_env_speaks_only_french() -> None:
    english = {"you", "see", "carry", "step", "steps", "forward", "left", "right", "go", "to", "the", "a", "pick", "up"}
    english |= {"red", "green", "blue", "purple", "yellow", "grey", "key", "ball", "box", "door", "wall", "turn"}
    words = words_in(texts_of("BabyAI-Text-MixedTrain-French-v0", episodes=60))
    assert not words & english, words & english
    assert {"tu", "vois", "pas", "devant", "va", "ramasse", "pose", "ouvre", "après", "puis"} <= words


def test_custom_language_validation() -> None:
    with pytest.raises(ValueError, match="must name 6 actions"):
        ENGLISH.replace("bad", action_names=("a", "b"))
    with pytest.raises(ValueError, match="colours table"):
        ENGLISH.replace("bad", colours={"pink": "rose"})
    with pytest.raises(ValueError, match="gender"):
        French(name="bad", nouns={**VARIANTS["French"].nouns, "key": ("clé", "x")})
