"""DRRN (He et al. 2016), as GLAM used it, for stock SB3 ``DQN``: ``DQN(DRRNPolicy, env)``.

``Q(s, a) = MLP([GRU(prompt(s)), GRU(name(a))])``: the state is GLAM's prompt text and
each action is encoded from its name in the observation, so the Q-values permute with the
action names and a renamed or translated action is still an input, not an index.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from babyai_text import decode_batch
from babyai_text.observation import TEXT_KEYS
from glam_baselines.text_encoding import GRUTextEncoder, WordVocabulary
from llm_policy.prompt import PromptTemplate

Exploration = Literal["epsilon", "softmax"]


class DRRNQNetwork(BasePolicy):
    """Q-values of every action of a batch of BabyAI-Text observations.

    :param embedding_dim: word embedding size (GLAM: 128).
    :param hidden_dim: GRU size, for the prompt and the action encoders (GLAM: 128).
    :param exploration: ``"epsilon"`` (greedy here; DQN adds its epsilon) or
        ``"softmax"`` (sample from ``softmax(Q / temperature)`` when not deterministic, as GLAM).
    :param temperature: softmax temperature.
    :param prompt_template: how observations become the state text.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        embedding_dim: int = 128,
        hidden_dim: int = 128,
        exploration: Exploration = "epsilon",
        temperature: float = 1.0,
        prompt_template: PromptTemplate | None = None,
    ) -> None:
        super().__init__(observation_space, action_space)
        self.template = prompt_template or PromptTemplate()
        self.vocabulary = WordVocabulary(
            [self.template.actions, self.template.goal, self.template.observation, self.template.action]
        )
        self.exploration = exploration
        self.temperature = temperature
        self.state_encoder = GRUTextEncoder(len(self.vocabulary), embedding_dim, hidden_dim)
        self.action_encoder = GRUTextEncoder(len(self.vocabulary), embedding_dim, hidden_dim)
        self.head = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))

    def forward(self, obs: PyTorchObs) -> torch.Tensor:
        texts = decode_batch(obs)
        device = self.device
        state = self.state_encoder(*self.vocabulary.batch([self.template.render(t) for t in texts], device))
        names = [name for t in texts for name in t.action_names]
        actions = self.action_encoder(*self.vocabulary.batch(names, device))
        per_env = len(names) // len(texts)
        pairs = torch.cat([state.repeat_interleave(per_env, dim=0), actions], dim=1)
        return self.head(pairs).view(len(texts), per_env)

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> torch.Tensor:
        q_values = self(observation)
        if deterministic or self.exploration == "epsilon":
            return q_values.argmax(dim=1)
        return torch.distributions.Categorical(logits=q_values / self.temperature).sample()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            embedding_dim=self.state_encoder.embedding.embedding_dim,
            hidden_dim=self.state_encoder.gru.hidden_size,
            exploration=self.exploration,
            temperature=self.temperature,
            prompt_template=self.template,
        )
        return data


class DRRNPolicy(DQNPolicy):
    """SB3 DQN policy whose online and target Q-networks are :class:`DRRNQNetwork`.

    Accepts DQNPolicy's arguments (``optimizer_class``, ``optimizer_kwargs``...) and the
    :class:`DRRNQNetwork` options ``embedding_dim``, ``hidden_dim``, ``exploration``,
    ``temperature`` and ``prompt_template``.  Use ``exploration="softmax"`` with DQN's
    ``exploration_initial_eps=exploration_final_eps=0`` for GLAM's softmax(Q) sampling.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        embedding_dim: int = 128,
        hidden_dim: int = 128,
        exploration: Exploration = "epsilon",
        temperature: float = 1.0,
        prompt_template: PromptTemplate | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(observation_space, spaces.Dict) or any(k not in observation_space.spaces for k in TEXT_KEYS):
            raise ValueError("DRRNPolicy needs BabyAI-Text observations (gym.make('BabyAI-Text-...'))")
        if exploration not in ("epsilon", "softmax"):
            raise ValueError(f"exploration must be 'epsilon' or 'softmax', got {exploration!r}")
        self.drrn_kwargs = {
            "embedding_dim": embedding_dim,
            "hidden_dim": hidden_dim,
            "exploration": exploration,
            "temperature": temperature,
            "prompt_template": prompt_template,
        }
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_q_net(self) -> DRRNQNetwork:  # type: ignore[override]
        return DRRNQNetwork(self.observation_space, self.action_space, **self.drrn_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.drrn_kwargs)
        return data
