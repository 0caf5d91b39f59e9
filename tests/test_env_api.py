"""Gymnasium / SB3 contract of every registered id."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import babyai_text
from tests.helpers import ALL_IDS, rollout


def assert_same_trajectory(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (obs_a, r_a, te_a, tr_a, info_a), (obs_b, r_b, te_b, tr_b, info_b) in zip(a, b, strict=True):
        assert obs_a.keys() == obs_b.keys()
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        assert (r_a, te_a, tr_a) == (r_b, te_b, tr_b)
        assert info_a == info_b


def test_registered_ids_cover_issue() -> None:
    ids = set(ALL_IDS)
    tasks = ["GoTo", "PickUp", "PutNext", "Open", "PickUpThenGoTo", "GoToAfterPickUp", "PickUpSeqGoTo"]
    tasks += ["PickUpSeqPickUp", "MixedTrain", "MixedTest", "GoToS5N2", "GoToS6N3", "PickUpS5N2", "PickUpS6N3"]
    expected = {f"BabyAI-Text-{t}-v0" for t in tasks}
    for variant in ("RenamedObjects", "InventedWords", "ColourSynonyms", "SynonymActions", "French"):
        expected |= {f"BabyAI-Text-MixedTrain-{variant}-v0", f"BabyAI-Text-GoTo-{variant}-v0"}
    assert expected == ids
    assert all(i in gym.registry for i in ids)


@pytest.mark.parametrize("observation", ["text", "minigrid"])
def test_gymnasium_check_env(env_id: str, observation: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pygame font lookups from the rgb_array render check
        check_env(gym.make(env_id, observation=observation).unwrapped)


def test_sb3_check_env(env_id: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(gym.make(env_id))
    # The only remarks SB3 may make are about the 7x7 symbolic view not being a CNN image.
    for w in caught:
        assert "image" in str(w.message), str(w.message)


@pytest.mark.parametrize("wrapper", ["FlatObsWrapper", "ImgObsWrapper"])
def test_sb3_check_env_through_minigrid_wrappers(wrapper: str) -> None:
    """minigrid's string mission is not for SB3 (as on minigrid's envs); its array wrappers are."""
    from minigrid import wrappers as mw

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(getattr(mw, wrapper)(gym.make("BabyAI-Text-GoTo-v0", observation="minigrid")))
    for w in caught:
        assert "image" in str(w.message), str(w.message)


def test_same_seed_same_trajectory(env_id: str) -> None:
    a = rollout(gym.make(env_id), seed=3, steps=150)
    b = rollout(gym.make(env_id), seed=3, steps=150)
    assert_same_trajectory(a, b)
    c = rollout(gym.make(env_id), seed=4, steps=150)
    # Another seed gives other levels (trajectory lengths may differ, hence strict=False).
    assert any(x[4]["descriptions"] != y[4]["descriptions"] for x, y in zip(a, c, strict=False))


def test_pickling_mid_episode(env_id: str) -> None:
    env = gym.make(env_id)
    rollout(env, seed=5, steps=7)
    clone = pickle.loads(pickle.dumps(env))
    rng = np.random.default_rng(1)
    for _ in range(40):
        action = int(rng.integers(0, 6))
        a, b = env.step(action), clone.step(action)
        assert_same_trajectory([a], [b])
        if a[2] or a[3]:
            break


def test_sync_vector_env(env_id: str) -> None:
    vec = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * 2)
    obs, info = vec.reset(seed=[0, 1])
    assert obs["mission"].shape == (2, *vec.single_observation_space["mission"].shape)
    decoded = babyai_text.decode_observation(obs)
    assert [d.mission for d in decoded] == list(info["mission"])
    for _ in range(5):
        obs, *_ = vec.step(np.array([2, 1]))
    assert vec.observation_space.contains(obs)


@pytest.mark.parametrize("vec_cls", [DummyVecEnv, SubprocVecEnv])
def test_sb3_vec_envs(vec_cls: type) -> None:
    # The "module:" prefix makes a fresh (forkserver) worker import babyai_text itself.
    env_id = "babyai_text:BabyAI-Text-MixedTrain-French-v0"
    vec = vec_cls([lambda: gym.make(env_id)] * 2)
    try:
        vec.seed(0)
        obs = vec.reset()
        decoded = babyai_text.decode_observation(obs)
        assert len(decoded) == 2 and all(d.actions == () for d in decoded)
        for _ in range(3):
            obs, _, _, infos = vec.step(np.array([0, 2]))
        decoded = babyai_text.decode_observation(obs)
        assert decoded[0].actions[-1] == 0 and decoded[1].actions[-1] == 2
        assert decoded[0].action_names[0] == "tourner à gauche"
        assert [d.current for d in decoded] == [tuple(i["descriptions"]) for i in infos]
    finally:
        vec.close()


def test_sb3_multi_input_policy_accepts_env() -> None:
    from stable_baselines3 import PPO

    model = PPO("MultiInputPolicy", gym.make("BabyAI-Text-GoToS5N2-v0"), n_steps=16, batch_size=16, n_epochs=1)
    model.learn(16)


def test_ansi_render_is_the_text_view() -> None:
    env = gym.make("BabyAI-Text-GoTo-v0", render_mode="ansi")
    _, info = env.reset(seed=0)
    text = env.render()
    assert text.splitlines() == [f"Mission: {info['mission']}", *info["descriptions"]]


def test_rgb_render_comes_from_minigrid() -> None:
    env = gym.make("BabyAI-Text-GoToS5N2-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8


def test_reward_and_success_follow_minigrid_formula() -> None:
    from minigrid.utils.baby_ai_bot import BabyAIBot

    env = gym.make("BabyAI-Text-GoTo-v0")
    env.reset(seed=2)
    bot = BabyAIBot(env.unwrapped)
    while True:
        _, reward, terminated, truncated, info = env.step(bot.replan())
        if terminated or truncated:
            break
    u = env.unwrapped
    assert terminated and info["success"]
    assert reward == pytest.approx(1 - 0.9 * u.step_count / u.max_steps)


@pytest.mark.parametrize(
    ("env_id", "max_steps"),
    [
        ("BabyAI-Text-GoTo-v0", 64),
        ("BabyAI-Text-PickUp-v0", 64),
        ("BabyAI-Text-PutNext-v0", 128),
        ("BabyAI-Text-Open-v0", 128),
        ("BabyAI-Text-PickUpSeqGoTo-v0", 128),
        ("BabyAI-Text-PickUpSeqPickUp-v0", 128),
        ("BabyAI-Text-GoToS5N2-v0", 25),
    ],
)
def test_default_episode_length(env_id: str, max_steps: int) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    assert env.unwrapped.max_steps == max_steps
    for t in range(1, max_steps + 1):
        _, _, terminated, truncated, _ = env.step(0)  # turning never succeeds
        assert not terminated
        assert truncated == (t == max_steps)


def test_max_steps_kwarg_truncates() -> None:
    env = gym.make("BabyAI-Text-GoTo-v0", max_steps=3)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]


def test_docs_list_every_id_and_docstrings_follow_minigrid_template() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "environments.md").read_text()
    for env_id in ALL_IDS:
        generic = env_id.rsplit("-", 2)[0] + "-<Variant>-v0" if env_id.count("-") == 4 else env_id
        assert f"`{env_id}`" in doc or f"`{generic}`" in doc, env_id
    for env_id in ALL_IDS:
        text = type(gym.make(env_id).unwrapped).__doc__
        sections = ["## Description", "## Mission Space", "## Action Space", "## Observation", "## Rewards"]
        sections += ["## Termination", "## Registered Configurations"]
        positions = [text.index(s) for s in sections]
        assert positions == sorted(positions), env_id
