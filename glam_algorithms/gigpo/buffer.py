"""The rollout of a group-advantage algorithm: whole episodes, grouped by their initial state."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from glam_algorithms.gigpo.advantages import group_advantages


@dataclass(frozen=True)
class GroupSamples:
    """A minibatch: observations (a tensor, or a dict of tensors), actions, the rollout's log-probabilities,
    advantages, and the reference policy's action log-probabilities (``None`` without a KL penalty)."""

    observations: torch.Tensor | dict[str, torch.Tensor]
    actions: torch.Tensor
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    reference_log_probs: torch.Tensor | None


class EpisodeGroupBuffer:
    """Steps of complete episodes, each known by its round and env; envs ``g*G .. g*G+G-1`` of a round
    started from one initial state and form group ``g``.

    :param group_size: ``G``, episodes per group.
    :param gamma: discount of GiGPO's step returns.
    :param step_coef: ``omega`` (0: GRPO; keys are then not needed).
    :param std_normalize: divide by the groups' standard deviations.
    :param device: where the minibatches go.
    """

    def __init__(
        self, group_size: int, gamma: float, step_coef: float, std_normalize: bool, device: torch.device
    ) -> None:
        self.group_size = group_size
        self.gamma = gamma
        self.step_coef = step_coef
        self.std_normalize = std_normalize
        self.device = device
        self.reset()

    def reset(self) -> None:
        self._obs: list[np.ndarray | dict[str, np.ndarray]] = []
        self._actions: list[np.ndarray] = []
        self._log_probs: list[np.ndarray] = []
        self._rewards: list[np.ndarray] = []
        self._episode: list[np.ndarray] = []  # (round, env) of each step
        self._keys: list[Hashable] = []
        self._round = 0
        self.advantages: np.ndarray | None = None
        self.reference_log_probs: np.ndarray | None = None
        self.stats: dict[str, float] = {}

    def __len__(self) -> int:
        return int(sum(len(a) for a in self._actions))

    def add(
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        actions: np.ndarray,
        rewards: np.ndarray,
        log_probs: np.ndarray,
        env_indices: np.ndarray,
        keys: list[Hashable] | None,
    ) -> None:
        """One step of the envs ``env_indices`` (the envs still in their episode)."""
        self._obs.append(obs)
        self._actions.append(np.asarray(actions))
        self._log_probs.append(np.asarray(log_probs, dtype=np.float32))
        self._rewards.append(np.asarray(rewards, dtype=np.float64))
        self._episode.append(np.stack([np.full(len(env_indices), self._round), env_indices], axis=1))
        if keys is not None:
            self._keys.extend(keys)

    def end_round(self) -> None:
        """The episodes of this round are all complete; the next steps belong to a new round."""
        self._round += 1

    def _flat_obs(self) -> np.ndarray | dict[str, np.ndarray]:
        if isinstance(self._obs[0], dict):
            return {k: np.concatenate([o[k] for o in self._obs]) for k in self._obs[0]}  # type: ignore[index]
        return np.concatenate(self._obs)  # type: ignore[arg-type]

    def finish(self) -> None:
        """Compute every step's advantage (call once, after the last round)."""
        self.observations = self._flat_obs()
        self.actions = np.concatenate(self._actions)
        self.log_probs = np.concatenate(self._log_probs)
        rewards = np.concatenate(self._rewards)
        episode = np.concatenate(self._episode)
        keys = self._keys if self.step_coef != 0.0 else None
        # steps were added in time order: a stable sort by (round, env) keeps each episode's steps in order
        order = np.lexsort((episode[:, 1], episode[:, 0]))
        advantages = np.zeros(len(rewards))
        starts = np.flatnonzero(np.r_[True, np.any(np.diff(episode[order], axis=0) != 0, axis=1)])
        bounds = [*starts, len(order)]
        by_group: dict[tuple[int, int], list[np.ndarray]] = {}
        for a, b in itertools.pairwise(bounds):
            steps = order[a:b]
            rnd, env = episode[steps[0]]
            by_group.setdefault((int(rnd), int(env) // self.group_size), []).append(steps)
        mixed, anchored, returns = 0, 0, []
        for members in by_group.values():
            if len(members) != self.group_size:
                raise RuntimeError(f"a group holds {len(members)} episodes, not {self.group_size}")
            group = group_advantages(
                [rewards[s] for s in members],
                [[keys[i] for i in s] for s in members] if keys is not None else None,
                gamma=self.gamma,
                step_coef=self.step_coef,
                std_normalize=self.std_normalize,
            )
            for steps, values, sizes in zip(members, group.advantages, group.step_group_sizes, strict=True):
                advantages[steps] = values
                anchored += int(np.sum(sizes > 1))
            group_returns = [float(rewards[s].sum()) for s in members]
            returns.extend(group_returns)
            mixed += int(len(set(group_returns)) > 1)
        self.advantages = advantages.astype(np.float32)
        self.stats = {
            "group/groups": float(len(by_group)),
            "group/mixed_fraction": mixed / len(by_group),
            "group/mean_return": float(np.mean(returns)),
            "group/episode_length": len(rewards) / len(returns),
            "group/advantage_abs": float(np.mean(np.abs(advantages))),
        }
        if keys is not None:
            self.stats["group/anchor_step_fraction"] = anchored / len(rewards)

    def observations_at(self, idx: np.ndarray) -> torch.Tensor | dict[str, torch.Tensor]:
        """The observations of steps ``idx`` as tensors on the buffer's device."""
        if isinstance(self.observations, dict):
            return {k: torch.as_tensor(v[idx], device=self.device) for k, v in self.observations.items()}
        return torch.as_tensor(self.observations[idx], device=self.device)

    def minibatches(self, n_minibatches: int, rng: np.random.Generator) -> Iterator[GroupSamples]:
        """The steps shuffled into exactly ``n_minibatches`` minibatches of near-equal size (every rank of a
        job must run as many backward passes; with fewer steps than minibatches, steps repeat)."""
        assert self.advantages is not None, "finish() first"
        order = rng.permutation(len(self.actions))
        if len(order) < n_minibatches:
            order = np.resize(order, n_minibatches)
        for idx in np.array_split(order, n_minibatches):
            ref = self.reference_log_probs
            yield GroupSamples(
                observations=self.observations_at(idx),
                actions=torch.as_tensor(self.actions[idx], device=self.device),
                old_log_prob=torch.as_tensor(self.log_probs[idx], device=self.device),
                advantages=torch.as_tensor(self.advantages[idx], device=self.device),
                reference_log_probs=torch.as_tensor(ref[idx], device=self.device) if ref is not None else None,
            )


__all__ = ["EpisodeGroupBuffer", "GroupSamples"]
