"""The array observation round-trips to the text, with history, and never truncates."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import babyai_text
from babyai_text import PAD_ACTION, decode_batch, decode_observation


def test_decode_matches_info_and_history() -> None:
    env = gym.make("BabyAI-Text-GoTo-v0")
    obs, info = env.reset(seed=1)
    first = decode_observation(obs)
    assert first.mission == info["mission"]
    assert first.action_names == env.unwrapped.action_names
    assert first.descriptions == (tuple(info["descriptions"]),)
    assert first.actions == ()
    np.testing.assert_array_equal(obs["actions"], [PAD_ACTION, PAD_ACTION])

    seen = [tuple(info["descriptions"])]
    for t, action in enumerate([1, 2, 0, 2]):
        obs, _, _, _, info = env.step(action)
        seen.append(tuple(info["descriptions"]))
        decoded = decode_observation(obs)
        assert decoded.descriptions == tuple(seen[-3:])  # default history: 3 observations
        assert decoded.actions == tuple([1, 2, 0, 2][: t + 1][-2:])
        assert decoded.current == tuple(info["descriptions"])


def test_history_cleared_at_reset() -> None:
    env = gym.make("BabyAI-Text-GoTo-v0")
    env.reset(seed=0)
    for _ in range(4):
        env.step(2)
    obs, info = env.reset(seed=1)
    decoded = decode_observation(obs)
    assert decoded.actions == () and decoded.descriptions == (tuple(info["descriptions"]),)
    assert obs["descriptions"][: 2 * env.unwrapped.description_bytes].sum() == 0


@pytest.mark.parametrize("history_length", [1, 2, 5])
def test_history_length_is_configurable(history_length: int) -> None:
    env = gym.make("BabyAI-Text-GoToS5N2-v0", history_length=history_length)
    obs, _ = env.reset(seed=0)
    if history_length == 1:
        assert "actions" not in obs  # SB3 cannot store a zero-size array
    else:
        assert obs["actions"].shape == (history_length - 1,)
    for _ in range(6):
        obs, *_ = env.step(1)
    decoded = decode_observation(obs)
    assert len(decoded.descriptions) == history_length
    assert decoded.actions == (1,) * (history_length - 1)
    assert env.observation_space.contains(obs)


def test_history_length_one_works_with_sb3_buffers() -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = gym.make("BabyAI-Text-GoToS5N2-v0", history_length=1)
    sb3_check_env(env.unwrapped, warn=False)
    vec = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0", history_length=1)] * 2)
    decoded = decode_observation(vec.reset())
    assert [d.actions for d in decoded] == [(), ()] and all(len(d.descriptions) == 1 for d in decoded)


def test_batched_numpy_float_and_torch_observations() -> None:
    vec = gym.vector.SyncVectorEnv([lambda: gym.make("BabyAI-Text-MixedTrain-v0")] * 3)
    obs, info = vec.reset(seed=[0, 1, 2])
    obs, *_, info = vec.step(np.array([0, 1, 2]))
    expected = decode_batch(obs)
    assert [e.mission for e in expected] == list(info["mission"])
    as_float = {k: v.astype(np.float32) for k, v in obs.items()}
    as_torch = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in obs.items()}
    assert decode_observation(as_float) == expected
    assert decode_observation(as_torch) == expected
    single = {k: v[1] for k, v in obs.items()}
    assert decode_batch(single) == [expected[1]]


def test_decode_rejects_what_it_cannot_parse() -> None:
    env = gym.make("BabyAI-Text-GoTo-v0")
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"lacks the BabyAI-Text field\(s\) \['mission'"):
        decode_observation({k: v for k, v in obs.items() if k != "mission"})
    with pytest.raises(ValueError, match="not bytes"):
        decode_observation({**obs, "mission": obs["mission"] / 255.0})
    bad = obs["mission"].copy()
    bad[0] = 0xFF
    with pytest.raises(ValueError, match="not valid UTF-8"):
        decode_observation({**obs, "mission": bad})
    with pytest.raises(ValueError, match="padded action history"):
        decode_observation({**obs, "actions": np.array([3, PAD_ACTION])})
    with pytest.raises(ValueError, match="inconsistent"):
        decode_observation({**obs, "actions": obs["actions"][None]})
    with pytest.raises(TypeError, match="observation dict"):
        decode_observation(obs["mission"])


def test_description_overflow_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"pass description_bytes=\d+"):
        gym.make("BabyAI-Text-GoTo-v0", num_dists=25, room_size=12)
    env = gym.make("BabyAI-Text-GoTo-v0", num_dists=25, room_size=12, description_bytes=4096)
    obs, _ = env.reset(seed=0)
    assert obs["descriptions"].shape == (3 * 4096,)


def test_text_that_does_not_fit_raises_not_truncates() -> None:
    long_colour = "x" * 300
    lang = babyai_text.ENGLISH.replace("long", colours={"red": long_colour})
    env = gym.make("BabyAI-Text-GoTo-v0", variant=lang, description_bytes=100_000)
    with pytest.raises(ValueError, match=r"mission text of .* bytes does not fit"):
        for seed in range(50):  # some seed makes a red target
            env.reset(seed=seed)


def test_default_sizes_fit_every_registered_configuration() -> None:
    """Default fields hold the worst case of every id, so all ids share one observation space."""
    spaces = {env_id: gym.make(env_id).observation_space for env_id in babyai_text.registered_ids()}
    assert len({repr(s) for s in spaces.values()}) == 1
