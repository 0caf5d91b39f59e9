"""Baselines of the GLAM paper for BabyAI-Text: Symbolic-PPO, DRRN, random and bot agents.

NPAE is :class:`llm_policy.LLMPolicy` with ``pretrained=False``.
"""

from glam_baselines.drrn import DRRNPolicy, DRRNQNetwork
from glam_baselines.reference_agents import BotAgent, RandomAgent
from glam_baselines.symbolic import BabyAIFeaturesExtractor
from glam_baselines.text_encoding import GRUTextEncoder, WordVocabulary

__all__ = [
    "BabyAIFeaturesExtractor",
    "BotAgent",
    "DRRNPolicy",
    "DRRNQNetwork",
    "GRUTextEncoder",
    "RandomAgent",
    "WordVocabulary",
]
