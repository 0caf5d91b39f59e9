"""LLMPolicy: a language model as the policy of a Stable-Baselines3 agent (GLAM).

::

    import gymnasium as gym
    import babyai_text
    from stable_baselines3 import PPO
    from llm_policy import LLMPolicy

    model = PPO(LLMPolicy, gym.make("BabyAI-Text-GoTo-v0"), policy_kwargs=dict(model="SmolLM2-135M-Instruct"))
    model.learn(10_000)
"""

from babyai_text.prompt import PromptTemplate
from llm_policy.builtin_models import ModelCacheError
from llm_policy.chat import ChatTemplateError
from llm_policy.finetuning import FINETUNE_MODES, apply_finetune_mode, disable_dropout
from llm_policy.models import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    LoadedModel,
    ModelNotFoundError,
    load_language_model,
)
from llm_policy.policy import LLMPolicy
from llm_policy.saving import BaseWeightsMismatchError
from llm_policy.scoring import NORMALIZATIONS, STRATEGIES, ActionScorer, PromptTooLongError, Scores

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "FINETUNE_MODES",
    "NORMALIZATIONS",
    "STRATEGIES",
    "ActionScorer",
    "BaseWeightsMismatchError",
    "ChatTemplateError",
    "LLMPolicy",
    "LoadedModel",
    "ModelCacheError",
    "ModelNotFoundError",
    "PromptTemplate",
    "PromptTooLongError",
    "Scores",
    "apply_finetune_mode",
    "disable_dropout",
    "load_language_model",
]
