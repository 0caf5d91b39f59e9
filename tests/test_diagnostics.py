"""Grounding diagnostics: bot states, agreement, state dependence, probes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from babyai_text.observation import decode_observation
from glam_baselines import RandomAgent
from glam_experiments.diagnostics import (
    PROBES,
    BotStates,
    argmax_agreement,
    bot_action,
    measure,
    probe_observations,
    state_dependence,
)

ENV = "BabyAI-Text-PickUpS5N2-v0"


@pytest.fixture(scope="module")
def states() -> BotStates:
    return BotStates.collect(ENV, num_states=60, seed=3)


def _lookup(states: BotStates):
    """A policy that copies the bot: it finds each observation among the states."""
    keys = {states.obs["descriptions"][i].tobytes() + states.obs["image"][i].tobytes(): i for i in range(len(states))}

    def fn(obs):
        idx = [keys[d.tobytes() + im.tobytes()] for d, im in zip(obs["descriptions"], obs["image"], strict=True)]
        return np.eye(6)[states.actions[idx]], np.arange(len(idx), dtype=float)

    return fn


def test_collect_is_seeded_and_replays(states: BotStates) -> None:
    again = BotStates.collect(ENV, num_states=60, seed=3)
    assert len(states) == 60 and states.episodes >= 2
    for key in states.obs:
        np.testing.assert_array_equal(states.obs[key], again.obs[key])
    np.testing.assert_array_equal(states.actions, again.actions)
    # the states are the bot's path: replaying its actions from the first seed gives the observations
    env = gym.make(ENV)
    obs, _ = env.reset(seed=3)
    for i in range(5):
        np.testing.assert_array_equal(obs["descriptions"], states.obs["descriptions"][i])
        obs, *_ = env.step(int(states.actions[i]))
    assert 0 < states.constant_agreement < 1


def test_bot_copy_scores_one_and_depends_on_state(states: BotStates) -> None:
    result = measure(_lookup(states), states)
    assert result.bot_agreement == 1.0
    assert result.state_dependence > 0.3
    assert result.agreement_gain == pytest.approx(1.0 - states.constant_agreement)
    assert result.value_std is not None and result.value_std > 0


def test_constant_policy_has_no_state_dependence(states: BotStates) -> None:
    common = int(np.bincount(states.actions).argmax())

    def constant(obs):
        n = len(obs["mission"])
        p = np.tile([0.1, 0.1, 0.1, 0.1, 0.1, 0.1], (n, 1))
        p[:, common] = 0.5
        return p, np.zeros(n)

    result = measure(constant, states)
    assert result.state_dependence == pytest.approx(0.0, abs=1e-12)
    assert result.bot_agreement == pytest.approx(states.constant_agreement)
    assert result.agreement_gain == pytest.approx(0.0)
    assert result.value_std == 0.0


def test_random_agent_agreement_is_chance(states: BotStates) -> None:
    result = measure(RandomAgent(gym.spaces.Discrete(6), seed=0), states)
    assert result.bot_agreement == pytest.approx(1 / 6)
    assert result.state_dependence == pytest.approx(0.0, abs=1e-12)
    assert result.value_mean is None


def test_metric_functions() -> None:
    p = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    assert argmax_agreement(p, np.array([0, 1])) == pytest.approx((0.5 + 1.0) / 2)
    assert state_dependence(p) == pytest.approx(0.25)


def test_probes_put_the_goal_in_the_current_slot() -> None:
    probes = probe_observations(ENV, seed=0)
    env = gym.make(ENV)
    _, info = env.reset(seed=0)
    goal = info["mission"].split(" ", 3)[-1]
    assert set(probes) == set(PROBES)
    text = decode_observation({k: v[0] for k, v in probes["goal_left"].items()})
    assert text.mission == info["mission"]
    assert text.current == (f"You see a {goal} 2 steps left",)
    assert len(text.descriptions) == 1


def test_probes_refuse_other_missions() -> None:
    with pytest.raises(ValueError, match="probe prompts need an English"):
        probe_observations("BabyAI-Text-GoToS5N2-v0", env_kwargs={"variant": "French"})


def test_bot_action_matches_the_collected_path(states: BotStates) -> None:
    env = gym.make(ENV)
    env.reset(seed=3)
    assert bot_action(env) == states.actions[0]


def bot_facing_its_pickup(seed: int) -> gym.Env:
    """PickUpS5N2 stepped along the bot's path to where its next action is "pick up"."""
    env = gym.make("BabyAI-Text-PickUpS5N2-v0")
    env.reset(seed=seed)
    for _ in range(30):
        action = bot_action(env)
        if action == 3:  # pick up
            return env
        env.step(action)
    raise AssertionError("the bot did not reach its pick-up")


def test_bot_action_is_none_where_the_bot_cannot_plan() -> None:
    """An agent holding another object in front of the goal: minigrid's bot asserts; no action, no crash
    (the main job's viewer met this state with the cloned agent)."""
    from minigrid.core.world_object import Key

    env = bot_facing_its_pickup(seed=1000)
    env.unwrapped.carrying = Key("grey")
    assert bot_action(env) is None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_states"):
        BotStates.collect(ENV, num_states=0)
    with pytest.raises(TypeError, match="cannot measure"):
        measure(object(), BotStates.collect(ENV, num_states=2))


def test_returns_are_the_bots_discounted_returns(states: BotStates) -> None:
    env = gym.make(ENV)
    env.reset(seed=3)
    rewards = []
    for action in states.actions:
        _, reward, terminated, truncated, _ = env.step(int(action))
        rewards.append(reward)
        if terminated or truncated:
            break
    assert rewards[-1] > 0  # the bot succeeds
    expected = [rewards[-1] * 0.99 ** (len(rewards) - 1 - t) for t in range(len(rewards))]
    np.testing.assert_allclose(states.returns[: len(rewards)], expected)
