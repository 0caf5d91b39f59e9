"""Bad input gets a clear exception naming the problem and the fix."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"room_size": 2}, "room_size must be an integer >= 4"),
        ({"room_size": 8.5}, "room_size must be an integer"),
        ({"num_dists": 0}, "num_dists must be an integer >= 1"),
        ({"num_dists": 40}, "do not fit in a room of size 8"),
        ({"max_steps": 0}, "max_steps must be an integer >= 1"),
        ({"history_length": 0}, "history_length must be an integer >= 1"),
        ({"held_out": "maybe"}, "held_out must be one of"),
        ({"variant": "Klingon"}, r"unknown variant 'Klingon'; choose one of \['ColourSynonyms'"),
        ({"render_mode": "video"}, "render_mode must be one of"),
    ],
)
def test_bad_kwargs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.make("BabyAI-Text-GoTo-v0", **kwargs)


def test_unknown_kwarg_is_named() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['num_distractors'\]"):
        gym.make("BabyAI-Text-GoTo-v0", num_distractors=3)


def test_putnext_needs_two_objects() -> None:
    with pytest.raises(ValueError, match="num_dists must be an integer >= 2"):
        gym.make("BabyAI-Text-PutNext-v0", num_dists=1)


@pytest.mark.parametrize("action", [6, -1, 2.0, "go forward", True, np.array([1, 2])])
def test_invalid_action(action: object) -> None:
    env = gym.make("BabyAI-Text-GoTo-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"invalid action .*integers 0-5 \(0=turn left"):
        env.unwrapped.step(action)


@pytest.mark.parametrize("action", [np.int64(2), np.array(2), np.array([2]), 2])
def test_valid_action_forms(action: object) -> None:
    env = gym.make("BabyAI-Text-GoTo-v0")
    env.reset(seed=0)
    env.unwrapped.step(action)
