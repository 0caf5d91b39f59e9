"""DRRN (He et al. 2016), as GLAM used it, for stock SB3 ``DQN``: ``DQN(DRRNPolicy, env)``.

``Q(s, a) = MLP([GRU(prompt(s)), GRU(name(a))])``: the state is GLAM's prompt text and
each action is encoded from its name in the observation, so the Q-values permute with the
action names and a renamed or translated action is still an input, not an index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from babyai_text import decode_batch
from babyai_text.language import ENGLISH, Language
from babyai_text.observation import TEXT_KEYS
from babyai_text.prompt import PromptTemplate
from glam_baselines.text_encoding import GRUTextEncoder, SavedVocabulary, WordVocabulary

Exploration = Literal["epsilon", "softmax"]

#: Bytes one transition of a default BabyAI-Text env takes in SB3's DictReplayBuffer
#: (observation and next observation, 5,227 bytes each, plus action, reward and flags).
BYTES_PER_TRANSITION = 10_474


def drrn_vocabulary(prompt_template: PromptTemplate | None = None, language: Language = ENGLISH) -> WordVocabulary:
    """DRRN's vocabulary: the words of ``language`` and of the prompt's fixed lines.

    The default, standard English, is the training language of the GLAM tests: the
    words the generalization variants bring (renamed objects, invented words, French)
    are ``<unk>``.  To train on another language, pass
    ``vocabulary=drrn_vocabulary(language=VARIANTS["French"]).words`` to the policy.

    :param prompt_template: the prompt whose fixed lines add their words (default: GLAM's).
    :param language: the language whose words are known.
    """
    template = prompt_template or PromptTemplate()
    return WordVocabulary([template.actions, template.goal, template.observation, template.action], language=language)


class DRRNQNetwork(SavedVocabulary, BasePolicy):
    """Q-values of every action of a batch of BabyAI-Text observations.

    :param embedding_dim: word embedding size (GLAM: 128).
    :param hidden_dim: GRU size, for the prompt and the action encoders (GLAM: 128).
    :param exploration: ``"epsilon"`` (greedy here; DQN adds its epsilon) or
        ``"softmax"`` (sample from ``softmax(Q / temperature)`` when not deterministic, as GLAM).
    :param temperature: softmax temperature.
    :param prompt_template: how observations become the state text.
    :param vocabulary: the word list (``<pad>``, ``<unk>`` first), e.g. a saved model's;
        default :func:`drrn_vocabulary`.  It is saved in the ``state_dict`` too, so loading
        weights restores the ids they were trained with.
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
        vocabulary: Sequence[str] | None = None,
    ) -> None:
        super().__init__(observation_space, action_space)
        self.template = prompt_template or PromptTemplate()
        vocab = drrn_vocabulary(self.template) if vocabulary is None else WordVocabulary(words=vocabulary)
        self.exploration = exploration
        self.temperature = temperature
        self.state_encoder = GRUTextEncoder(len(vocab), embedding_dim, hidden_dim)
        self.action_encoder = GRUTextEncoder(len(vocab), embedding_dim, hidden_dim)
        self.head = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        self.set_vocabulary(vocab)

    def vocabulary_embeddings(self) -> list[nn.Embedding]:
        return [self.state_encoder.embedding, self.action_encoder.embedding]

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
            vocabulary=self.vocabulary.words,
        )
        return data


class DRRNPolicy(DQNPolicy):
    """SB3 DQN policy whose online and target Q-networks are :class:`DRRNQNetwork`.

    Accepts DQNPolicy's arguments (``optimizer_class``, ``optimizer_kwargs``...) and the
    :class:`DRRNQNetwork` options ``embedding_dim``, ``hidden_dim``, ``exploration``,
    ``temperature``, ``prompt_template`` and ``vocabulary``.  Use ``exploration="softmax"``
    with DQN's ``exploration_initial_eps=exploration_final_eps=0`` for GLAM's softmax(Q)
    sampling.

    Pass DQN a ``buffer_size``: SB3's default of 1,000,000 transitions at
    :data:`BYTES_PER_TRANSITION` (~10.5 kB with the default history of 3 observations)
    is ~10.5 GB of replay buffer, e.g. ``DQN(DRRNPolicy, env, buffer_size=50_000)``
    (~0.5 GB).  A DRRN agent loaded by ``glam_experiments.evaluate`` gets a one-transition buffer.
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
        vocabulary: Sequence[str] | None = None,
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
            # made once, so that the online and target networks share one list
            "vocabulary": drrn_vocabulary(prompt_template).words if vocabulary is None else tuple(vocabulary),
        }
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_q_net(self) -> DRRNQNetwork:  # type: ignore[override]
        return DRRNQNetwork(self.observation_space, self.action_space, **self.drrn_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.drrn_kwargs)
        return data
