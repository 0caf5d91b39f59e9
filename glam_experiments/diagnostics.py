"""Grounding diagnostics: does the policy read what it sees?

A policy can beat a random agent on an easy level by learning a good *marginal* action
distribution (mostly "go forward", some "turn right") without reading its observation.
Success alone does not tell the two apart; these measures do, on a fixed, seeded set of
states along minigrid's BabyAI bot's own paths (:class:`BotStates`):

- **bot agreement**: how often the policy's most likely action is the bot's, beside the
  agreement of the best *constant* action (always answering the bot's commonest action);
  a policy that does not read its observation cannot beat the constant;
- **state dependence**: the mean total-variation distance between the policy's
  distribution at each state and its average distribution over the states (0 for a
  policy that gives every state the same distribution);
- **value spread**: the standard deviation of the value estimate over the states (a
  constant value gives advantages with no per-state information);
- **probe prompts** (as GLAM's updater logged): the action probabilities on a few
  hand-written observations, e.g. the goal straight ahead, to the left, a wall ahead.

One home for the training callback (:class:`glam_experiments.callbacks.GroundingLogger`),
the evaluation (:func:`glam_experiments.evaluate.evaluate` with ``grounding_states``) and
the episode viewer (the bot's action at each recorded step, :func:`bot_action`).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from minigrid.utils.baby_ai_bot import BabyAIBot

import babyai_text  # noqa: F401  (registers the ids)
from babyai_text.observation import SENTENCE_SEPARATOR, encode_text

#: An agent's answer on a batch of observations: ``(batch, n)`` action probabilities and
#: ``(batch,)`` value estimates (``None`` when the agent has no value).
ProbabilityFn = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray | None]]

#: Minigrid's "done" action (6) is not a BabyAI-Text action; the bot never needs it on
#: BabyAI-Text's levels, and we map it to 0 as :class:`glam_baselines.BotAgent` does.
_NUM_ACTIONS = 6


def bot_action(env: gym.Env) -> int | None:
    """The BabyAI bot's action from ``env``'s current state (a fresh plan: the bot reads the
    true state, so it takes over from most states an agent reaches), or ``None`` where it cannot
    plan: minigrid's bot asserts, e.g., when it would pick up the goal while the agent holds
    another object (its plans never make it carry one)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the bot prints its plans
            action = int(BabyAIBot(env.unwrapped).replan())
    except AssertionError:
        return None
    return action if action < _NUM_ACTIONS else 0


@dataclass
class BotStates:
    """A fixed, seeded set of states along the BabyAI bot's own paths on one level.

    :param env_id: the BabyAI-Text id.
    :param env_kwargs: its ``gym.make`` arguments.
    :param seed: episode ``k`` was reset with ``seed + k``.
    :param obs: the observations, a dict of ``(n, ...)`` arrays as a VecEnv gives them.
    :param actions: ``(n,)`` the bot's action at each state.
    :param episodes: episodes the states come from.
    :param returns: ``(n,)`` the bot's discounted return from each state (``gamma``).
    :param gamma: the discount of ``returns``.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    seed: int
    obs: dict[str, np.ndarray]
    actions: np.ndarray
    episodes: int
    returns: np.ndarray
    gamma: float

    @classmethod
    def collect(
        cls,
        env_id: str,
        num_states: int = 300,
        seed: int = 0,
        env_kwargs: dict[str, Any] | None = None,
        gamma: float = 0.99,
    ) -> BotStates:
        """Play the bot on episodes seeded ``seed, seed + 1, ...`` and keep its first ``num_states`` states."""
        if num_states < 1:
            raise ValueError(f"num_states must be at least 1, got {num_states}")
        kwargs = dict(env_kwargs or {})
        env = gym.make(env_id, **kwargs)
        rows: list[dict[str, np.ndarray]] = []
        actions: list[int] = []
        returns: list[float] = []
        episodes = 0
        try:
            while len(rows) < num_states:
                obs, _ = env.reset(seed=seed + episodes)
                episodes += 1
                with contextlib.redirect_stdout(io.StringIO()):
                    bot = BabyAIBot(env.unwrapped)
                    done = False
                    rewards: list[float] = []
                    while not done:  # whole episodes, so that every kept state has its return
                        action = int(bot.replan())
                        action = action if action < _NUM_ACTIONS else 0
                        rows.append({k: np.array(v) for k, v in obs.items()})
                        actions.append(action)
                        obs, reward, terminated, truncated, _ = env.step(action)
                        rewards.append(float(reward))
                        done = terminated or truncated
                    to_go = 0.0
                    for reward in reversed(rewards):
                        to_go = reward + gamma * to_go
                        returns.append(to_go)
                    returns[len(returns) - len(rewards) :] = returns[len(returns) - len(rewards) :][::-1]
        finally:
            env.close()
        stacked = {k: np.stack([r[k] for r in rows[:num_states]]) for k in rows[0]}
        return cls(
            env_id,
            kwargs,
            seed,
            stacked,
            np.array(actions[:num_states], dtype=np.int64),
            episodes,
            np.array(returns[:num_states]),
            gamma,
        )

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def constant_agreement(self) -> float:
        """Agreement of the best constant action: the share of the bot's commonest action."""
        return float(np.bincount(self.actions, minlength=_NUM_ACTIONS).max() / len(self.actions))

    def batches(self, size: int) -> list[dict[str, np.ndarray]]:
        return [{k: v[i : i + size] for k, v in self.obs.items()} for i in range(0, len(self), size)]


@dataclass
class Grounding:
    """The grounding diagnostics of one policy on one :class:`BotStates`.

    :param states: states measured.
    :param bot_agreement: share of states whose most likely action is the bot's (ties
        share the credit: a uniform policy scores ``1 / n``).
    :param constant_agreement: the same for the best constant action.
    :param state_dependence: mean total-variation distance between each state's
        distribution and the mean distribution (0: the policy ignores its observation).
    :param value_mean: mean value estimate (``None``: the agent has no value).
    :param value_std: its standard deviation over the states.
    :param mean_probabilities: the mean distribution, per action.
    :param probes: action probabilities on the probe observations (:data:`PROBES`), by name.
    """

    states: int
    bot_agreement: float
    constant_agreement: float
    state_dependence: float
    value_mean: float | None
    value_std: float | None
    mean_probabilities: list[float]
    probes: dict[str, list[float]] = field(default_factory=dict)

    @property
    def agreement_gain(self) -> float:
        """Bot agreement above the best constant action's."""
        return self.bot_agreement - self.constant_agreement

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agreement_gain": self.agreement_gain}

    def summary(self) -> str:
        value = "" if self.value_std is None else f", value {self.value_mean:.3f} ± {self.value_std:.3f}"
        return (
            f"bot agreement {self.bot_agreement:.2f} (best constant {self.constant_agreement:.2f}), "
            f"state dependence {self.state_dependence:.2f}{value} on {self.states} bot states"
        )


def argmax_agreement(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean over rows of ``[target is a most likely action] / (number of most likely actions)``."""
    top = probabilities >= probabilities.max(axis=1, keepdims=True) - 1e-9
    hit = top[np.arange(len(targets)), targets]
    return float((hit / top.sum(axis=1)).mean())


def state_dependence(probabilities: np.ndarray) -> float:
    """Mean total-variation distance between each row and the mean row."""
    mean = probabilities.mean(axis=0, keepdims=True)
    return float(0.5 * np.abs(probabilities - mean).sum(axis=1).mean())


def measure(
    agent: Any, states: BotStates, batch_size: int = 32, probes: dict[str, dict[str, np.ndarray]] | None = None
) -> Grounding:
    """The grounding diagnostics of ``agent`` on ``states``.

    :param agent: an SB3 model or policy with a stateless actor-critic policy (LLMPolicy,
        feed-forward Symbolic-PPO...), a :class:`~glam_baselines.RandomAgent`, or a
        :data:`ProbabilityFn`.
    :param batch_size: observations scored together.
    :param probes: probe observations by name (:func:`probe_observations`), or ``None``.
    """
    fn = probability_fn(agent)
    probs, values = _run(fn, states.batches(batch_size))
    probe_probs: dict[str, list[float]] = {}
    if probes:
        names = list(probes)
        batch = {k: np.concatenate([probes[n][k] for n in names]) for k in probes[names[0]]}
        p, _ = fn(batch)
        probe_probs = {n: [float(x) for x in row] for n, row in zip(names, p, strict=True)}
    return Grounding(
        states=len(states),
        bot_agreement=argmax_agreement(probs, states.actions),
        constant_agreement=states.constant_agreement,
        state_dependence=state_dependence(probs),
        value_mean=None if values is None else float(values.mean()),
        value_std=None if values is None else float(values.std()),
        mean_probabilities=[float(x) for x in probs.mean(axis=0)],
        probes=probe_probs,
    )


def _run(fn: ProbabilityFn, batches: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray | None]:
    probs, values = [], []
    for batch in batches:
        p, v = fn(batch)
        probs.append(p)
        if v is not None:
            values.append(v)
    return np.concatenate(probs), (np.concatenate(values) if values else None)


def probability_fn(agent: Any) -> ProbabilityFn:
    """The :data:`ProbabilityFn` of an agent (see :func:`measure`)."""
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from stable_baselines3.common.policies import ActorCriticPolicy

    from glam_baselines import RandomAgent

    if callable(agent) and not isinstance(agent, torch.nn.Module):
        return agent
    if isinstance(agent, RandomAgent):
        n = int(agent.action_space.n)
        return lambda obs: (np.full((len(next(iter(obs.values()))), n), 1.0 / n), None)
    policy = agent if isinstance(agent, torch.nn.Module) else getattr(agent, "policy", None)
    if isinstance(policy, RecurrentActorCriticPolicy):
        raise TypeError(
            "grounding diagnostics need a stateless policy: a recurrent policy's answer on a bot state depends "
            "on the path that led there (train Symbolic-PPO with recurrent=False to measure it)"
        )
    if not isinstance(policy, ActorCriticPolicy):
        raise TypeError(
            f"cannot measure {type(agent).__name__}: pass an SB3 actor-critic model or policy, a RandomAgent, "
            "or a function from an observation batch to (probabilities, values)"
        )
    from llm_policy import LLMPolicy

    @torch.no_grad()
    def fn(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        was_training = policy.training
        policy.set_training_mode(False)
        try:
            tensor, _ = policy.obs_to_tensor(obs)
            if isinstance(policy, LLMPolicy):  # one forward gives the scores and the value-head input
                out = policy.score(tensor)
                p = torch.softmax(out.scores.float(), dim=-1)
                v = policy.values(out.hidden)
            else:
                p = policy.get_distribution(tensor).distribution.probs
                v = policy.predict_values(tensor)
        finally:
            policy.set_training_mode(was_training)
        return p.double().cpu().numpy(), v.reshape(-1).double().cpu().numpy()

    return fn


# --- probe prompts ----------------------------------------------------------------------

#: GLAM-style probe observations: ``{goal}`` is the mission's object ("red ball"), and the
#: expected bot action (by BabyAI-Text's action index) says what a grounded agent does.
PROBES: dict[str, tuple[tuple[str, ...], str]] = {
    "goal_ahead": (("You see a {goal} 2 steps forward",), "go forward"),
    "goal_left": (("You see a {goal} 2 steps left",), "turn left"),
    "goal_right": (("You see a {goal} 2 steps right",), "turn right"),
    "goal_adjacent": (("You see a {goal} 1 step forward",), "pick up / stop"),
    "wall_ahead": (("You see a wall 1 step forward", "You see a {goal} 2 steps left"), "turn left"),
    "goal_unseen": (("You see a wall 3 steps forward", "You see a wall 2 steps right"), "turn left"),
}

_GOAL = re.compile(r"^(?:go to|pick up) (?:a|the) (\w+ \w+)$")


def probe_observations(env_id: str, seed: int = 0, env_kwargs: dict[str, Any] | None = None) -> dict[str, dict]:
    """The :data:`PROBES` as observation batches of one, built on ``env_id``'s first seeded
    observation: its mission's goal object fills the template, the rest of the observation
    (action names, history slots) is the env's own.

    Raises ``ValueError`` when the mission is not an English "go to / pick up the <colour> <object>".
    """
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        obs, info = env.reset(seed=seed)
        size = env.unwrapped.description_bytes
    finally:
        env.close()
    match = _GOAL.match(info["mission"])
    if match is None:
        raise ValueError(
            f"probe prompts need an English 'go to / pick up the <colour> <object>' mission; {env_id} (seed {seed}) "
            f"gave {info['mission']!r}: measure it with BotStates alone"
        )
    goal = match.group(1)
    out = {}
    for name, (sentences, _) in PROBES.items():
        one = {k: np.array(v)[None] for k, v in obs.items()}
        text = SENTENCE_SEPARATOR.join(s.format(goal=goal) for s in sentences)
        row = encode_text(text, size, "description", "shorter probe")
        one["descriptions"][0, -size:] = row  # the current step's slot; earlier ones stay empty
        out[name] = one
    return out


__all__ = [
    "PROBES",
    "BotStates",
    "Grounding",
    "ProbabilityFn",
    "argmax_agreement",
    "bot_action",
    "measure",
    "probability_fn",
    "probe_observations",
    "state_dependence",
]
