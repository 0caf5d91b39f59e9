"""Symbolic-PPO: BabyAI's FiLM-conditioned CNN over the symbolic view, as an SB3 features extractor."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from babyai_text import decode_missions
from glam_baselines.text_encoding import GRUTextEncoder, SavedVocabulary, WordVocabulary

_IMAGE_CHANNEL_SIZES = (11, 6, 3)  # minigrid object, colour and door-state indices


class FiLM(nn.Module):
    """Conv block whose features are scaled and shifted by the instruction (Perez et al. 2018)."""

    def __init__(self, channels: int, condition_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.gamma = nn.Linear(condition_dim, channels)
        self.beta = nn.Linear(condition_dim, channels)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out * self.gamma(condition)[:, :, None, None] + self.beta(condition)[:, :, None, None]
        return torch.relu(out) + x


class BabyAIFeaturesExtractor(SavedVocabulary, BaseFeaturesExtractor):
    """BabyAI-style features from ``image``, ``direction`` and ``mission``; text descriptions are ignored.

    Each cell's (object, colour, state) indices are embedded and summed, two convolutions
    follow, then ``film_layers`` FiLM blocks conditioned on a GRU encoding of the mission
    words, and a max-pool over the 7x7 view; the heading is appended one-hot.

    :param observation_space: a BabyAI-Text observation space.
    :param channels: width of the convolutional features.
    :param instruction_dim: size of the mission encoding.
    :param film_layers: number of FiLM blocks.
    :param vocabulary: the mission word list (``<pad>``, ``<unk>`` first); default: the
        fixed standard-English list of :class:`WordVocabulary`.  It is saved in the
        ``state_dict`` too, so loading weights restores the ids they were trained with.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        channels: int = 128,
        instruction_dim: int = 128,
        film_layers: int = 2,
        vocabulary: Sequence[str] | None = None,
    ) -> None:
        for key in ("image", "direction", "mission"):
            if key not in observation_space.spaces:
                raise ValueError(f"BabyAIFeaturesExtractor needs the {key!r} field of BabyAI-Text observations")
        super().__init__(observation_space, features_dim=channels + 4)
        vocab = WordVocabulary() if vocabulary is None else WordVocabulary(words=vocabulary)
        self.cell_embedding = nn.ModuleList(nn.Embedding(n, channels) for n in _IMAGE_CHANNEL_SIZES)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        self.instruction = GRUTextEncoder(len(vocab), instruction_dim, instruction_dim)
        self.set_vocabulary(vocab)
        self.films = nn.ModuleList(FiLM(channels, instruction_dim) for _ in range(film_layers))

    def vocabulary_embeddings(self) -> list[nn.Embedding]:
        return [self.instruction.embedding]

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        image = observations["image"].long()  # (batch, 7, 7, 3) indices
        cells = sum(emb(image[..., c]) for c, emb in enumerate(self.cell_embedding))  # (batch, 7, 7, channels)
        x = self.stem(cells.permute(0, 3, 1, 2))
        ids, lengths = self.vocabulary.batch(decode_missions(observations), x.device)
        condition = self.instruction(ids, lengths)
        for film in self.films:
            x = film(x, condition)
        pooled = torch.amax(x, dim=(2, 3))
        direction = observations["direction"].float().reshape(len(pooled), -1)  # SB3 one-hot encodes Discrete(4)
        return torch.cat([pooled, direction], dim=1)
