"""Reference agents with SB3's ``predict`` interface, so evaluation treats every agent alike."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from gymnasium import spaces
from minigrid.utils.baby_ai_bot import BabyAIBot
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv


def _batch_size(observation: Any) -> tuple[int, bool]:
    mission = np.asarray(observation["mission"])
    return (mission.shape[0], True) if mission.ndim == 2 else (1, False)


class RandomAgent:
    """Uniformly random actions.

    :param action_space: the env's (Discrete) action space.
    :param seed: seed of the agent's generator.
    """

    def __init__(self, action_space: spaces.Discrete, seed: int | None = None) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"RandomAgent needs a Discrete action space, got {action_space}")
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        n, batched = _batch_size(observation)
        actions = self.rng.integers(0, int(self.action_space.n), size=n)
        return (actions if batched else actions[0]), None


class BotAgent:
    """minigrid's BabyAIBot, which reads the true state of each env (an oracle, not a learner).

    :param env: the ``DummyVecEnv`` (or single env) whose observations ``predict`` receives;
        the bot needs each env's internal state, so envs in other processes cannot work.
    """

    def __init__(self, env: VecEnv | Any) -> None:
        if isinstance(env, DummyVecEnv):
            self.envs = [e.unwrapped for e in env.envs]
        elif isinstance(env, VecEnv):
            raise ValueError(
                "BotAgent reads each env's state: use a DummyVecEnv (or a single env), not a subprocess VecEnv"
            )
        else:
            self.envs = [env.unwrapped]
        self.bots: list[BabyAIBot | None] = [None] * len(self.envs)
        self._instrs: list[object] = [None] * len(self.envs)

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        n, batched = _batch_size(observation)
        if n != len(self.envs):
            raise ValueError(f"BotAgent drives {len(self.envs)} envs but got {n} observations")
        actions = np.zeros(n, dtype=np.int64)
        for i, env in enumerate(self.envs):
            bot = self.bots[i]
            # A new episode has a new instruction object; episode_start cannot be trusted for
            # this (evaluate_policy stops updating it for envs that finished their quota).
            if bot is None or self._instrs[i] is not env.instrs:
                bot = self.bots[i] = BabyAIBot(env)
                self._instrs[i] = env.instrs
            with contextlib.redirect_stdout(io.StringIO()):
                action = int(bot.replan())
            actions[i] = action if action < 6 else 0  # never minigrid's "done"
        return (actions if batched else actions[0]), None

    def reset(self) -> None:
        """Forget the plans."""
        self.bots = [None] * len(self.envs)
        self._instrs = [None] * len(self.envs)
