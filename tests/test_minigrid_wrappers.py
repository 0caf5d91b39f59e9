"""minigrid's own wrappers (``minigrid.wrappers``) on every BabyAI-Text id.

Two routes give minigrid's observation: ``gym.make(id, observation="minigrid")`` (the
way minigrid's docs apply wrappers, directly on ``gym.make``) and MinigridObservation on
an env built with the text observation.  On the text observation, the wrappers that read
the mission string fail at the first reset with an error naming both routes.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from minigrid import wrappers as mw

import babyai_text
from babyai_text.observation import MissionBytes
from babyai_text.wrappers import MinigridObservation, mission_word_dict
from tests.helpers import ALL_IDS, rollout

MIXED_IDS = [i for i in ALL_IDS if "-Mixed" in i]
FRENCH_IDS = [i for i in ALL_IDS if "French" in i]
SEEDS = (0, 1)
STEPS = 8
#: The two ways to get minigrid's observation from an id.
ROUTES: dict[str, Callable[[str], gym.Env]] = {
    "option": lambda env_id: gym.make(env_id, observation="minigrid"),
    "MinigridObservation": lambda env_id: MinigridObservation(gym.make(env_id)),
}
#: Where minigrid's error on the text observation was numpy's, ours names the fix.
TEXT_OBSERVATION_ERRORS: dict[str, type[Exception]] = {
    "FlatObsWrapper": TypeError,  # ``mission != self.cachedStr`` (None at first)
    "DictObservationSpaceWrapper": AttributeError,  # ``mission.replace(...)``
}


def _dict_words(env: gym.Env) -> gym.Env:
    return mw.DictObservationSpaceWrapper(env, word_dict=mission_word_dict(env.unwrapped.language))


#: Each of minigrid's observation wrappers, as applied on an env with minigrid's observation.
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


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("name", list(OBSERVATION_WRAPPERS))
def test_observation_wrapper_on_every_id(env_id: str, name: str, route: str) -> None:
    env = OBSERVATION_WRAPPERS[name](ROUTES[route](env_id))
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


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("name", list(OTHER_WRAPPERS))
def test_other_wrappers_on_every_id(env_id: str, name: str, route: str) -> None:
    env = OTHER_WRAPPERS[name](ROUTES[route](env_id))
    base = ROUTES[route](env_id)
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


@pytest.mark.parametrize("name", list(TEXT_OBSERVATION_ERRORS))
@pytest.mark.parametrize(
    "make",
    [
        lambda: gym.make("BabyAI-Text-GoTo-v0"),
        lambda: gym.make("BabyAI-Text-MixedTrain-French-v0", observation="text"),
        lambda: gym.make("BabyAI-MixedTrainLocal-v0", observation="text"),
    ],
    ids=["default", "text", "GLAM-text"],
)
def test_text_observation_names_the_minigrid_route(name: str, make: Callable[[], gym.Env]) -> None:
    """On the text observation, minigrid's mission-reading wrappers fail at the first reset, saying what to do."""
    env = OBSERVATION_WRAPPERS[name](make())  # construction reads only the image's space
    with pytest.raises(TEXT_OBSERVATION_ERRORS[name]) as caught:
        env.reset(seed=0)
    message = str(caught.value)
    assert 'observation="minigrid"' in message and "MinigridObservation" in message, message
    assert "ambiguous" not in message


@pytest.mark.parametrize(
    "name", ["ImgObsWrapper", "OneHotPartialObsWrapper", "RGBImgPartialObsWrapper", "ViewSizeWrapper"]
)
def test_image_wrappers_keep_the_text_observation(name: str) -> None:
    """The wrappers that read only the image work on the text observation, text fields kept."""
    env = OBSERVATION_WRAPPERS[name](gym.make("BabyAI-Text-MixedTrain-v0"))
    for obs, *_, info in rollout(env, seed=0, steps=STEPS):
        assert env.observation_space.contains(obs)
        if name != "ImgObsWrapper":
            assert babyai_text.decode_observation(obs).mission == info["mission"]


@pytest.mark.parametrize("name", ["FullyObsWrapper", "RGBImgObsWrapper", "SymbolicObsWrapper"])
def test_full_grid_wrappers_on_text_observation_of_mixed_ids(name: str) -> None:
    """The documented limit: without padding two-room episodes misfit the space; pad_grid(True) fixes it."""
    bare, padded = gym.make("BabyAI-Text-MixedTrain-v0"), gym.make("BabyAI-Text-MixedTrain-v0")
    padded.unwrapped.pad_grid(True)  # before the wrapper reads the width
    bare, padded = OBSERVATION_WRAPPERS[name](bare), OBSERVATION_WRAPPERS[name](padded)
    seed = 4  # an Open (two-room) episode
    obs, info = bare.reset(seed=seed)
    assert info["task"] == "Open" and not bare.observation_space.contains(obs)
    for seed in range(6):
        obs, info = padded.reset(seed=seed)
        assert padded.observation_space.contains(obs)
        assert babyai_text.decode_observation(obs).mission == info["mission"]


def test_full_grid_misfit_error_in_sb3() -> None:
    """The exact error the docs quote for FullyObsWrapper on a text MixedTrain env in an SB3 VecEnv."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    vec = DummyVecEnv([lambda: mw.FullyObsWrapper(gym.make("BabyAI-Text-MixedTrain-v0"))])
    vec.seed(4)
    with pytest.raises(
        ValueError, match=re.escape("could not broadcast input array from shape (15,8,3) into shape (8,8,3)")
    ):
        vec.reset()


def test_mission_bytes_is_an_array_for_everything_else() -> None:
    """The mission field explains itself only where minigrid's string was expected."""
    env = gym.make("BabyAI-Text-GoTo-v0")
    obs, info = env.reset(seed=0)
    mission = obs["mission"]
    assert isinstance(mission, MissionBytes) and isinstance(mission, np.ndarray) and mission.dtype == np.uint8
    assert env.observation_space.contains(obs) and babyai_text.decode_observation(obs).mission == info["mission"]
    assert (mission == mission.copy()).all() and not (mission != mission).any()
    assert type(np.asarray(mission)) is np.ndarray and type(np.copy(mission)) is np.ndarray
    assert np.array_equal(pickle.loads(pickle.dumps(mission)), mission)
    with pytest.raises(TypeError, match='observation="minigrid"'):
        _ = "go" in mission
    with pytest.raises(TypeError, match="MinigridObservation"):
        _ = mission == info["mission"]
    with pytest.raises(AttributeError, match='observation="minigrid"'):
        mission.lower()
    with pytest.raises(AttributeError, match=r"^'MissionBytes' object has no attribute 'nothing'$"):
        _ = mission.nothing
    assert not hasattr(mission, "startswith")
    vec = gym.vector.SyncVectorEnv([lambda: gym.make("BabyAI-Text-GoTo-v0")] * 2)
    assert type(vec.reset(seed=0)[0]["mission"]) is np.ndarray


def test_option_is_minigrids_observation(env_id: str) -> None:
    """observation="minigrid": minigrid's observation; the level, view, rewards and info are the text env's."""
    text, ours = gym.make(env_id), gym.make(env_id, observation="minigrid")
    assert ours.observation_space == MinigridObservation(gym.make(env_id)).observation_space
    steps_a = rollout(text, seed=1, steps=STEPS, action_seed=1)
    steps_b = rollout(ours, seed=1, steps=STEPS, action_seed=1)
    for (oa, *ra, ia), (ob, *rb, ib) in zip(steps_a, steps_b, strict=True):
        assert set(ob) == {"image", "direction", "mission"} and ours.observation_space.contains(ob)
        assert ob["mission"] == ia["mission"] and isinstance(ob["direction"], int)
        assert np.array_equal(oa["image"], ob["image"]) and oa["direction"] == ob["direction"]
        assert ra == rb and ia == ib


def test_option_round_trips_through_spec(env_id: str) -> None:
    env = gym.make(env_id, observation="minigrid")
    assert env.spec.kwargs["observation"] == "minigrid"
    again = gym.make(env.spec)
    assert again.unwrapped.observation_mode == "minigrid" and again.observation_space == env.observation_space
    a, b = env.reset(seed=2)[0], again.reset(seed=2)[0]
    assert a["mission"] == b["mission"] and np.array_equal(a["image"], b["image"])
    assert gym.make(env_id).unwrapped.observation_mode == "text"  # the default is unchanged


@pytest.mark.parametrize("env_id", [ALL_IDS[0], *babyai_text.glam_ids()[:1]])
@pytest.mark.parametrize("value", ["pixels", "Minigrid", None, 1])
def test_unknown_observation_is_refused(env_id: str, value: Any) -> None:
    with pytest.raises(ValueError, match=r"observation must be one of \('text', 'minigrid'\), got"):
        gym.make(env_id, observation=value)


def test_minigrid_observation_has_no_text_fields_to_size() -> None:
    """history_length and description_bytes size the text observation only; minigrid's has none to overflow."""
    with pytest.raises(ValueError, match="description_bytes"):
        gym.make("BabyAI-Text-GoTo-v0", description_bytes=8)
    env = gym.make("BabyAI-Text-GoTo-v0", observation="minigrid", description_bytes=8)
    _, info = env.reset(seed=0)
    assert info["descriptions"]


def test_wrapper_on_the_option_changes_nothing() -> None:
    ours = gym.make("BabyAI-Text-MixedTrain-v0", observation="minigrid")
    wrapped = MinigridObservation(gym.make("BabyAI-Text-MixedTrain-v0", observation="minigrid"))
    assert wrapped.observation_space == ours.observation_space
    for (oa, *ra), (ob, *rb) in zip(rollout(ours, 3, STEPS), rollout(wrapped, 3, STEPS), strict=True):
        assert oa["mission"] == ob["mission"] and np.array_equal(oa["image"], ob["image"]) and ra == rb


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


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("env_id", MIXED_IDS[:2])
def test_full_grid_has_one_shape_on_mixed_ids(env_id: str, route: str) -> None:
    """One- and two-room episodes alternate; the padded grid keeps the space's shape."""
    env = mw.FullyObsWrapper(ROUTES[route](env_id))
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
