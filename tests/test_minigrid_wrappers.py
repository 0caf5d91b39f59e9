"""minigrid's own wrappers (``minigrid.wrappers``) on every BabyAI-Text id, through MinigridObservation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from minigrid import wrappers as mw

from babyai_text.wrappers import MinigridObservation, mission_word_dict
from tests.conftest import ALL_IDS, rollout

MIXED_IDS = [i for i in ALL_IDS if "-Mixed" in i]
FRENCH_IDS = [i for i in ALL_IDS if "French" in i]
SEEDS = (0, 1)
STEPS = 8


def _dict_words(env: gym.Env) -> gym.Env:
    return mw.DictObservationSpaceWrapper(env, word_dict=mission_word_dict(env.unwrapped.language))


#: Each of minigrid's observation wrappers, as applied on top of MinigridObservation.
OBSERVATION_WRAPPERS: dict[str, Callable[[gym.Env], gym.Env]] = {
    "none": lambda env: env,
    "FlatObsWrapper": mw.FlatObsWrapper,
    "DictObservationSpaceWrapper": _dict_words,
    "ImgObsWrapper": mw.ImgObsWrapper,
    "OneHotPartialObsWrapper": mw.OneHotPartialObsWrapper,
    "RGBImgObsWrapper": mw.RGBImgObsWrapper,
    "RGBImgPartialObsWrapper": mw.RGBImgPartialObsWrapper,
    "FullyObsWrapper": mw.FullyObsWrapper,
    "ViewSizeWrapper": lambda env: mw.ViewSizeWrapper(env, agent_view_size=5),
    "SymbolicObsWrapper": mw.SymbolicObsWrapper,
    "DirectionObsWrapper": mw.DirectionObsWrapper,
}
#: minigrid's other wrappers (reward, action, seeding), each with a check of its effect.
OTHER_WRAPPERS: dict[str, Callable[[gym.Env], gym.Env]] = {
    "ReseedWrapper": lambda env: mw.ReseedWrapper(env, seeds=(3, 5)),
    "ActionBonus": mw.ActionBonus,
    "PositionBonus": mw.PositionBonus,
    "StochasticActionWrapper": lambda env: mw.StochasticActionWrapper(env, prob=0.5),
    "NoDeath": lambda env: mw.NoDeath(env, no_death_types=("lava",)),
}


def _flat_mission(obs: np.ndarray, env: gym.Env) -> str:
    """The mission FlatObsWrapper one-hot encoded after the image."""
    chars = obs[-env.maxStrLen * env.numCharCodes :].reshape(env.maxStrLen, env.numCharCodes)
    alphabet = "abcdefghijklmnopqrstuvwxyz ,"
    return "".join(alphabet[int(row.argmax())] for row in chars if row.any())


def _check_mission(name: str, env: gym.Env, obs: Any, info: dict[str, Any]) -> None:
    if name == "FlatObsWrapper":
        assert _flat_mission(obs, env) == info["mission"].lower()
    elif name == "DictObservationSpaceWrapper":
        words = {i + 1: w for w, i in env.word_dict.items()}
        assert [words[i] for i in obs["mission"] if i] == info["mission"].replace(",", " , ").split()
    elif name == "ImgObsWrapper":
        assert isinstance(obs, np.ndarray) and obs.shape == (7, 7, 3)
    else:
        assert isinstance(obs["mission"], str) and obs["mission"] == info["mission"]


def _expected_error(name: str, env_id: str) -> tuple[type[Exception], str] | None:
    """minigrid's own limits: how the wrapper refuses an id, or None where it works."""
    if name == "DirectionObsWrapper":  # as on minigrid's BabyAI levels: there is no goal square
        return ValueError, "requires an environment with a Goal object"
    if name == "FlatObsWrapper" and env_id in FRENCH_IDS:  # it one-hot encodes a-z, space and comma only
        return ValueError, "is not available in mission string"
    return None


@pytest.mark.parametrize("name", list(OBSERVATION_WRAPPERS))
def test_observation_wrapper_on_every_id(env_id: str, name: str) -> None:
    env = OBSERVATION_WRAPPERS[name](MinigridObservation(gym.make(env_id)))
    expected = _expected_error(name, env_id)
    if expected is not None:
        with pytest.raises(expected[0], match=expected[1]):
            env.reset(seed=0)
        return
    for seed in SEEDS:
        for obs, _, _, _, info in rollout(env, seed=seed, steps=STEPS, action_seed=seed):
            assert env.observation_space.contains(obs), (name, env_id)
            _check_mission(name, env, obs, info)
            assert info["descriptions"] and info["action_names"]  # our text stays in info


@pytest.mark.parametrize("name", list(OTHER_WRAPPERS))
def test_other_wrappers_on_every_id(env_id: str, name: str) -> None:
    env = OTHER_WRAPPERS[name](MinigridObservation(gym.make(env_id)))
    base = MinigridObservation(gym.make(env_id))
    if name == "ReseedWrapper":
        first, _ = env.reset()
        second, _ = env.reset()
        assert first["mission"] == base.reset(seed=3)[0]["mission"]
        assert second["mission"] == base.reset(seed=5)[0]["mission"]
        return
    obs, info = env.reset(seed=0)
    base.reset(seed=0)
    for action in (2, 1, 2, 0, 2):
        obs, reward, terminated, truncated, info = env.step(action)
        _, base_reward, *_ = base.step(action)
        assert env.observation_space.contains(obs) and obs["mission"] == info["mission"]
        if name in ("ActionBonus", "PositionBonus"):
            assert float(reward) > float(base_reward)
        if terminated or truncated:
            break


def test_raw_observation_is_not_minigrids() -> None:
    """Without MinigridObservation the mission is bytes, and minigrid's text wrappers fail on it."""
    env = gym.make("BabyAI-Text-GoTo-v0")
    obs, info = env.reset(seed=0)
    assert isinstance(obs["mission"], np.ndarray) and obs["mission"].dtype == np.uint8
    with pytest.raises(ValueError, match="ambiguous"):  # it compares the array to its cached string
        mw.FlatObsWrapper(gym.make("BabyAI-Text-GoTo-v0")).reset(seed=0)
    with pytest.raises(AttributeError, match="replace"):
        mw.DictObservationSpaceWrapper(gym.make("BabyAI-Text-GoTo-v0")).reset(seed=0)
    obs, info = MinigridObservation(env).reset(seed=0)
    assert obs["mission"] == info["mission"] and set(obs) == {"image", "direction", "mission"}


def test_minigrid_dictionary_lacks_our_words() -> None:
    """minigrid's default word list misses BabyAI-Text words: pass mission_word_dict."""
    env = mw.DictObservationSpaceWrapper(MinigridObservation(gym.make("BabyAI-Text-PutNext-v0")))
    with pytest.raises(ValueError, match="Unknown word"):
        env.reset(seed=0)


def test_mission_space_is_minigrids_and_accepts_every_language() -> None:
    env = MinigridObservation(gym.make("BabyAI-Text-GoTo-French-v0"))
    obs, info = env.reset(seed=0)
    space = env.observation_space["mission"]
    assert obs["mission"] == info["mission"] and obs["mission"].startswith("va ")
    assert type(space) is type(gym.make("BabyAI-GoToLocal-v0").unwrapped.observation_space["mission"])
    assert space.contains(obs["mission"]) and space.contains("va à la balle rouge") and space.contains("glorp")
    assert env.observation_space["image"] == gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    assert env.observation_space["direction"] == gym.spaces.Discrete(4)


@pytest.mark.parametrize("env_id", MIXED_IDS[:2])
def test_full_grid_has_one_shape_on_mixed_ids(env_id: str) -> None:
    """One- and two-room episodes alternate; the padded grid keeps the space's shape."""
    env = mw.FullyObsWrapper(MinigridObservation(gym.make(env_id)))
    unpadded = mw.FullyObsWrapper(MinigridObservation(gym.make(env_id), pad_grid=False))
    tasks, misfits = set(), 0
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        tasks.add(info["task"])
        assert env.observation_space.contains(obs)
        misfits += not unpadded.observation_space.contains(unpadded.reset(seed=seed)[0])
    assert {"Open", "GoTo"} <= tasks and misfits  # both room counts met; unpadded grids misfit


@pytest.mark.parametrize("env_id", MIXED_IDS[:2])
def test_padding_changes_nothing_the_agent_sees(env_id: str) -> None:
    """Same seed and actions: the same observations, rewards and info as the bare env."""
    bare, wrapped = gym.make(env_id), MinigridObservation(gym.make(env_id))
    widths = set()
    for seed in range(6):
        steps_a = rollout(bare, seed=seed, steps=30, action_seed=seed)
        steps_b = rollout(wrapped, seed=seed, steps=30, action_seed=seed)
        widths.add(wrapped.unwrapped.grid.width)
        for (oa, *ra, ia), (ob, *rb, ib) in zip(steps_a, steps_b, strict=True):
            assert ra == rb and ia == ib
            assert np.array_equal(oa["image"], ob["image"]) and oa["direction"] == ob["direction"]
    assert widths == {15}


def test_refuses_other_envs() -> None:
    with pytest.raises(TypeError, match="BabyAI-Text envs"):
        MinigridObservation(gym.make("BabyAI-GoToLocal-v0"))


def test_spec_recreates_the_wrapper() -> None:
    env = MinigridObservation(gym.make("BabyAI-Text-MixedTrain-v0"), pad_grid=False)
    again = gym.make(env.spec)
    assert isinstance(again, MinigridObservation) and again._grid_width is None
    assert again.reset(seed=4)[0]["mission"] == env.reset(seed=4)[0]["mission"]
