"""Record what an agent sees and decides, step by step, on seeded BabyAI-Text episodes.

:func:`record_episodes` plays any agent :func:`glam_experiments.agents.load_agent`
accepts (or an already loaded one) and keeps, per step, the minigrid frame, the mission,
the text observation, the prompt (language-model agents), the probability of every
action, the value estimate, the action taken, the reward and the return so far.  The
viewer (:mod:`glam_experiments.viewer`) and the TensorBoard callback
(:class:`glam_experiments.callbacks.EpisodeRecorder`) are built on it.

The probabilities are those the action is drawn from:

- actor-critic policies (:class:`~llm_policy.LLMPolicy`, Symbolic-PPO, any SB3
  ``ActorCriticPolicy``, sb3-contrib's recurrent one): the policy's distribution;
- DQN (DRRN): epsilon-greedy, ``eps / n`` everywhere plus ``1 - eps`` on the greedy action
  (``eps`` = the model's ``exploration_rate``), or DRRN's ``softmax(Q / temperature)``;
  the value is the greedy one, ``max Q``;
- ``random``: uniform; ``bot``: all on the bot's action;
- with ``deterministic=True``, all on the action taken (the argmax of the above).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.dqn.policies import DQNPolicy

import babyai_text  # noqa: F401  (registers the ids)
from babyai_text.observation import decode_observation
from glam_baselines import BotAgent, RandomAgent
from glam_experiments.agents import load_agent
from glam_experiments.diagnostics import argmax_agreement, bot_action


@dataclass
class StepRecord:
    """One decision of the agent, and what followed."""

    frame: np.ndarray
    """``(H, W, 3)`` uint8 minigrid frame (``render_mode="rgb_array"``) the agent acted in"""
    mission: str
    observation: str
    """the text observation of this step, one sentence per line"""
    action_names: tuple[str, ...]
    action: int
    probabilities: np.ndarray
    """``(n,)`` probability of every action under the agent's decision rule"""
    value: float | None
    """the agent's value estimate (``None``: the agent has none)"""
    reward: float
    cumulative_return: float
    prompt: str | None = None
    """the exact text a language-model agent scored its actions after"""
    obs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """the raw observation (batch of one), to recompute the decision"""
    bot_action: int | None = None
    """what the BabyAI bot would do from this state (:func:`glam_experiments.diagnostics.bot_action`)"""


@dataclass
class EpisodeRecord:
    """A recorded episode."""

    agent: str
    env_id: str
    seed: int
    steps: list[StepRecord]
    success: bool

    @property
    def length(self) -> int:
        return len(self.steps)

    @property
    def episode_return(self) -> float:
        return self.steps[-1].cumulative_return if self.steps else 0.0

    @property
    def bot_agreement(self) -> float | None:
        """Share of the steps whose most likely action is the bot's (ties share the credit)."""
        steps = [s for s in self.steps if s.bot_action is not None]
        if not steps:
            return None
        return argmax_agreement(np.stack([s.probabilities for s in steps]), np.array([s.bot_action for s in steps]))


@dataclass
class _Decision:
    action: int
    probabilities: np.ndarray
    value: float | None
    prompt: str | None


class _Decider:
    """The action, its distribution and the value estimate of one agent, one env."""

    def __init__(self, agent: Any, num_actions: int, deterministic: bool, seed: int) -> None:
        from llm_policy.policy import LLMPolicy

        self.agent = agent
        self.n = num_actions
        self.deterministic = deterministic
        self.rng = np.random.default_rng(seed)
        policy = agent if isinstance(agent, torch.nn.Module) else getattr(agent, "policy", None)
        self.policy = policy
        if isinstance(policy, LLMPolicy):
            self.kind = "llm"
        elif isinstance(policy, RecurrentActorCriticPolicy):
            self.kind = "recurrent"
        elif isinstance(policy, ActorCriticPolicy):
            self.kind = "actor-critic"
        elif isinstance(policy, DQNPolicy):
            self.kind = "dqn"
        elif isinstance(agent, RandomAgent):
            self.kind = "random"
        elif isinstance(agent, BotAgent):
            self.kind = "bot"
        else:
            raise TypeError(
                f"cannot record {type(agent).__name__}: pass an SB3 PPO/RecurrentPPO/DQN model or policy, "
                "a RandomAgent, a BotAgent, or an agent spec (see glam_experiments.agents.load_agent)"
            )
        self.lstm_states: RNNStates | None = None

    def _choose(self, probabilities: np.ndarray) -> int:
        if self.deterministic:
            return int(np.argmax(probabilities))
        return int(self.rng.choice(self.n, p=probabilities / probabilities.sum()))

    @torch.no_grad()
    def decide(self, obs: dict[str, np.ndarray], episode_start: bool) -> _Decision:
        if self.kind in ("random", "bot"):
            action = int(np.asarray(self.agent.predict(obs, deterministic=self.deterministic)[0])[0])
            uniform = self.kind == "random" and not self.deterministic
            probabilities = np.full(self.n, 1.0 / self.n) if uniform else np.eye(self.n)[action]
            return _Decision(action, probabilities, None, None)

        policy = self.policy
        policy.set_training_mode(False)
        tensor, _ = policy.obs_to_tensor(obs)
        prompt = None
        if self.kind == "llm":  # one forward gives the scores and the value-head input
            prompt = policy.prompts(tensor)[0][0]
            out = policy.score(tensor)
            probs = torch.softmax(out.scores.float(), dim=-1)
            value = float(policy.values(out.hidden).item())
        elif self.kind == "actor-critic":
            probs = policy.get_distribution(tensor).distribution.probs
            value = float(policy.predict_values(tensor).item())
        elif self.kind == "recurrent":
            starts = torch.tensor([float(episode_start)], device=policy.device)
            if self.lstm_states is None or episode_start:
                zeros = torch.zeros(policy.lstm_hidden_state_shape, device=policy.device)
                self.lstm_states = RNNStates((zeros, zeros.clone()), (zeros.clone(), zeros.clone()))
            distribution, _ = policy.get_distribution(tensor, self.lstm_states.pi, starts)
            probs = distribution.distribution.probs
            _, values, _, self.lstm_states = policy(tensor, self.lstm_states, starts)
            value = float(values.item())
        else:  # DQN
            q_net = policy.q_net
            q = q_net(tensor).float()
            value = float(q.max().item())
            if getattr(q_net, "exploration", "epsilon") == "softmax" and not self.deterministic:
                probs = torch.softmax(q / q_net.temperature, dim=-1)
            else:
                eps = 0.0 if self.deterministic else float(getattr(self.agent, "exploration_rate", 0.0))
                probs = torch.full_like(q, eps / self.n)
                probs[0, int(q.argmax())] += 1.0 - eps
        probabilities = probs.double().cpu().numpy()[0]
        return _Decision(self._choose(probabilities), probabilities, value, prompt)


def record_episodes(
    agent: Any,
    env_id: str,
    episodes: int = 1,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    deterministic: bool = False,
    agent_name: str | None = None,
    llm_kwargs: dict[str, Any] | None = None,
    max_steps: int | None = None,
) -> list[EpisodeRecord]:
    """Play and record ``episodes`` episodes, episode ``k`` seeded ``seed + k``.

    :param agent: an agent spec (a saved ``.zip``, ``random``, ``bot``, a language-model name
        or directory; see :func:`glam_experiments.agents.load_agent`), or a loaded SB3
        model or policy, a :class:`~glam_baselines.RandomAgent` or
        :class:`~glam_baselines.BotAgent` (re-bound to the recorded env).
    :param env_id: a BabyAI-Text id.
    :param env_kwargs: extra ``gym.make`` arguments.
    :param deterministic: the most probable action instead of sampling.
    :param agent_name: the agent's name in the records (default: the spec or class name).
    :param llm_kwargs: extra :class:`~llm_policy.LLMPolicy` arguments for a zero-shot model.
    :param max_steps: stop an episode after this many steps (``None``: the env's own limit).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be None or at least 1, got {max_steps}")
    kwargs = {**(env_kwargs or {}), "render_mode": "rgb_array"}
    vec = DummyVecEnv([lambda: gym.make(env_id, **kwargs)])
    if isinstance(agent, str):
        name = agent_name or agent
        agent = load_agent(agent, vec, llm_kwargs, seed=seed)
    else:
        name = agent_name or type(agent).__name__
        if isinstance(agent, BotAgent):  # it reads the state of the env it plays: this one
            agent = BotAgent(vec)
    env = vec.envs[0]
    decider = _Decider(agent, int(vec.action_space.n), deterministic, seed)
    records = []
    try:
        for k in range(episodes):
            vec.seed(seed + k)
            obs = vec.reset()
            steps: list[StepRecord] = []
            total, done, success = 0.0, False, False
            while not done and (max_steps is None or len(steps) < max_steps):
                frame = env.render()
                one = {key: value[0] for key, value in obs.items()}
                text = decode_observation(one)
                expert = bot_action(env)
                decision = decider.decide(obs, episode_start=not steps)
                step_obs = {key: value.copy() for key, value in obs.items()}
                obs, rewards, dones, infos = vec.step(np.array([decision.action]))
                total += float(rewards[0])
                done = bool(dones[0])
                success = bool(infos[0].get("success", False))
                steps.append(
                    StepRecord(
                        frame=np.asarray(frame, dtype=np.uint8),
                        mission=text.mission,
                        observation="\n".join(text.current),
                        action_names=text.action_names,
                        action=decision.action,
                        probabilities=decision.probabilities,
                        value=decision.value,
                        reward=float(rewards[0]),
                        cumulative_return=total,
                        prompt=decision.prompt,
                        obs=step_obs,
                        bot_action=expert,
                    )
                )
            records.append(EpisodeRecord(agent=name, env_id=env_id, seed=seed + k, steps=steps, success=success))
    finally:
        vec.close()
    return records
