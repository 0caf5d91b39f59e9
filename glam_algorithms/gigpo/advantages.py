"""Critic-free advantages of a group of episodes that started from one initial state.

GRPO (as agents use it, e.g. verl-agent): each episode's return is compared with its
group's, ``A^E = (R - mean(R)) / F`` with ``F`` the group's standard deviation (or 1), and
that one value is given to every step of the episode.

GiGPO (Feng et al., 2025, arXiv 2505.10978): inside the same group, the steps whose
observation is identical — *anchor states* that several rollouts (or one rollout, twice)
went through — form step groups; a step's ``A^S`` is its discounted return from that step
minus its step group's mean, divided by the step group's standard deviation (or 1).  A
step whose observation no other step of the group shares gets ``A^S = 0``.  Each step
trains on ``A = A^E + omega * A^S``.

Standard deviations are the sample's (``ddof=1``, as ``torch.std``), and a spread of zero
gives zero advantages (no division by zero: an all-equal group carries no signal).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

#: added to a standard deviation before dividing by it
EPS = 1e-6


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = r_t + gamma * G_{t+1}`` for every step of one episode (``G`` after its last step is 0)."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def _relative(values: np.ndarray, std_normalize: bool) -> np.ndarray:
    """``values`` minus their mean, divided by their sample sd when asked; zeros when they are all equal."""
    centred = values - values.mean()
    if len(values) < 2 or np.allclose(centred, 0.0):
        return np.zeros_like(values, dtype=np.float64)
    return centred / (values.std(ddof=1) + EPS) if std_normalize else centred


@dataclass(frozen=True)
class GroupAdvantages:
    """The advantages of one group of episodes, and what they were made of.

    :param advantages: per episode, its steps' ``A^E + omega * A^S``.
    :param episode: per episode, ``A^E`` (one value).
    :param step: per episode, its steps' ``A^S`` (zeros when ``omega`` is 0).
    :param step_group_sizes: per episode, the size of each step's step group (1: a singleton).
    """

    advantages: list[np.ndarray]
    episode: np.ndarray
    step: list[np.ndarray]
    step_group_sizes: list[np.ndarray]


def group_advantages(
    rewards: Sequence[np.ndarray],
    keys: Sequence[Sequence[Hashable]] | None = None,
    *,
    gamma: float = 0.95,
    step_coef: float = 1.0,
    std_normalize: bool = True,
) -> GroupAdvantages:
    """GRPO's (``step_coef=0`` or ``keys=None``) or GiGPO's advantages of one group.

    :param rewards: per episode of the group, its rewards in step order (episodes may differ in length).
    :param keys: per episode, the observation each step acted on, as a hashable key (steps with equal
        keys form a step group); ``None``: GRPO.
    :param gamma: discount of the steps' returns (GiGPO's step groups; episode returns are undiscounted sums).
    :param step_coef: ``omega``, the weight of the step advantages.
    :param std_normalize: divide by the group's (and each step group's) standard deviation; ``False``: only
        subtract the mean.
    :raises ValueError: fewer than 2 episodes, an empty episode, or keys that do not match the rewards.
    """
    if len(rewards) < 2:
        raise ValueError(f"a group needs at least 2 episodes to compare, got {len(rewards)}")
    if any(len(r) == 0 for r in rewards):
        raise ValueError("every episode of a group needs at least one step")
    returns = np.array([float(np.sum(r)) for r in rewards])
    episode = _relative(returns, std_normalize)
    step = [np.zeros(len(r)) for r in rewards]
    sizes = [np.ones(len(r), dtype=np.int64) for r in rewards]
    if keys is not None and step_coef != 0.0:
        if len(keys) != len(rewards) or any(len(k) != len(r) for k, r in zip(keys, rewards, strict=True)):
            raise ValueError("keys must give one key per step of every episode")
        members: defaultdict[Hashable, list[tuple[int, int]]] = defaultdict(list)
        for e, episode_keys in enumerate(keys):
            for t, key in enumerate(episode_keys):
                members[key].append((e, t))
        step_returns = [discounted_returns(np.asarray(r, dtype=np.float64), gamma) for r in rewards]
        for where in members.values():
            values = np.array([step_returns[e][t] for e, t in where])
            relative = _relative(values, std_normalize)
            for (e, t), value in zip(where, relative, strict=True):
                step[e][t] = value
                sizes[e][t] = len(where)
    advantages = [episode[e] + step_coef * step[e] for e in range(len(rewards))]
    return GroupAdvantages(advantages=advantages, episode=episode, step=step, step_group_sizes=sizes)


__all__ = ["EPS", "GroupAdvantages", "discounted_returns", "group_advantages"]
