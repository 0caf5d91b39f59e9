"""Demonstrations in an off-policy agent's replay buffer: DRRN (SB3 ``DQN``) starting from the bot's transitions.

    model = DQN(DRRNPolicy, env, buffer_size=50_000, learning_starts=256)
    prefill_replay_buffer(model, load_demonstrations("babyai-text/PickUpS5N2/bot-v0"))
    model.learn(10_240)                   # the first minibatches already hold the bot's successes

The transitions go in exactly as SB3 stores the agent's own (observation, next observation,
action, reward, done, with a time-limit truncation flagged), so DQN's sampling and targets
treat them alike; the agent's transitions then overwrite them once the buffer is full.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from glam_algorithms.bc.bc import check_demonstrations, concatenate_rows, take_rows


def prefill_replay_buffer(
    model: OffPolicyAlgorithm, dataset: Any, episodes: int | None = None, reward_scale: float = 1.0
) -> int:
    """Add the transitions of ``dataset``'s episodes to ``model.replay_buffer``; returns how many.

    SB3's buffer takes one transition per env at a time, so transitions go in groups of
    ``model.n_envs``; the last group is completed with the first transitions again (fewer than
    ``n_envs`` duplicates).

    :param model: an SB3 off-policy algorithm (``DQN``) whose env has the dataset's spaces.
    :param dataset: a ``minari.MinariDataset`` (:func:`glam_experiments.demonstrations.load_demonstrations`).
    :param episodes: the dataset's first ``episodes`` episodes only (``None``: all).
    :param reward_scale: multiply the rewards as the agent's env does (``make_text_vec_env``'s ``reward_scale``).
    :raises ValueError: other spaces than the model's, an empty dataset, ``episodes`` < 1, or more
        transitions than the buffer holds (they would overwrite each other).
    """
    if episodes is not None and episodes < 1:
        raise ValueError(f"episodes must be at least 1 (or None for all), got {episodes}")
    check_demonstrations(dataset, model.observation_space, model.action_space)
    buffer = model.replay_buffer
    if buffer is None:
        raise ValueError("the model has no replay buffer: prefill an off-policy algorithm (DQN) after creating it")
    observations, next_observations, actions, rewards, dones, truncated = [], [], [], [], [], []
    for episode in dataset.iterate_episodes(np.asarray(dataset.episode_indices)[: episodes or None]):
        steps = len(episode.actions)
        if steps == 0:
            continue
        observations.append(take_rows(episode.observations, slice(0, steps)))
        next_observations.append(take_rows(episode.observations, slice(1, steps + 1)))
        actions.append(np.asarray(episode.actions).reshape(steps))
        rewards.append(np.asarray(episode.rewards, dtype=np.float32).reshape(steps) * reward_scale)
        terminations = np.asarray(episode.terminations, dtype=bool).reshape(steps)
        truncations = np.asarray(episode.truncations, dtype=bool).reshape(steps)
        dones.append(terminations | truncations)
        truncated.append(truncations & ~terminations)
    total = sum(len(a) for a in actions)
    if total > buffer.buffer_size * buffer.n_envs:
        raise ValueError(
            f"{total} demonstration transitions do not fit in the replay buffer ({buffer.buffer_size} x "
            f"{buffer.n_envs} envs): raise buffer_size or pass fewer episodes"
        )
    obs, next_obs = concatenate_rows(observations), concatenate_rows(next_observations)
    columns = [np.concatenate(c) for c in (actions, rewards, dones, truncated)]
    n_envs = buffer.n_envs
    for start in range(0, total, n_envs):
        rows = np.arange(start, start + n_envs) % total  # the last group wraps around to the first transitions
        action, reward, done, timeout = (c[rows] for c in columns)
        infos = [{"TimeLimit.truncated": bool(t)} for t in timeout]
        buffer.add(take_rows(obs, rows), take_rows(next_obs, rows), action, reward, done, infos)  # type: ignore[arg-type]
    return total
