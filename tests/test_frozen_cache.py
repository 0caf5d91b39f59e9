"""The frozen-block cache: exact or off from construction, invalidated by weight changes, bounded in bytes."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from llm_policy.finetuning import apply_finetune_mode, transformer_blocks
from llm_policy.frozen_cache import FrozenBlockCache


def tiny_llama_model(cls: type = LlamaForCausalLM) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64,
    )  # fmt: skip
    model = cls(config).eval()
    apply_finetune_mode(model, "top_k", top_k=1)
    return model


def cache_of(model: torch.nn.Module, max_bytes: int = 1 << 20) -> FrozenBlockCache:
    blocks = transformer_blocks(model)
    return FrozenBlockCache(model, blocks, len(blocks) - 1, max_bytes)


def fill(cache: FrozenBlockCache, model: torch.nn.Module, rows: int, width: int = 8) -> list[tuple]:
    ids = torch.randint(0, 64, (rows, width))
    keys = [("row", i, width) for i in range(rows)]
    with torch.no_grad(), cache.capture(keys, [width] * rows):
        model(input_ids=ids)
    return keys


def test_exact_model_gets_a_cache() -> None:
    cache = cache_of(tiny_llama_model())
    assert cache.enabled and cache.disabled_reason is None and not cache.entries


def test_memory_is_bounded_in_bytes_least_recent_first() -> None:
    model = tiny_llama_model()
    row_bytes = 8 * 16 * 4  # width × hidden × fp32
    cache = cache_of(model, max_bytes=3 * row_bytes)
    keys = fill(cache, model, rows=5)
    assert cache.bytes == 3 * row_bytes == sum(t.numel() * t.element_size() for t in cache.entries.values())
    assert list(cache.entries) == keys[2:]


def test_any_change_of_a_frozen_weight_empties_it() -> None:
    model = tiny_llama_model()
    cache = cache_of(model)
    keys = fill(cache, model, rows=2)
    assert cache.has_all(keys)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["model.layers.0.mlp.up_proj.weight"] += 0.1
    model.load_state_dict(state)
    assert not cache.has_all(keys) and not cache.entries
    keys = fill(cache, model, rows=2)
    with torch.no_grad():
        model.model.embed_tokens.weight[0] += 1.0  # an in-place edit
    assert not cache.has_all(keys)


def test_trained_weights_do_not_empty_it() -> None:
    model = tiny_llama_model()
    cache = cache_of(model)
    keys = fill(cache, model, rows=2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # what the optimizer changes: top block and final norm
                p.add_(0.01)
    assert cache.has_all(keys)


class _ScaledLogits(LlamaForCausalLM):
    """A model that post-processes its logits (like Gemma-2's soft-capping)."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 2
        return out


def test_model_the_cache_cannot_reproduce_gets_none_at_construction() -> None:
    cache = cache_of(tiny_llama_model(_ScaledLogits))
    assert not cache.enabled and "do not reproduce its full forward" in cache.disabled_reason


def test_per_layer_attention_types_get_none() -> None:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64, use_sliding_window=True, sliding_window=4,
        max_window_layers=1,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config).eval()
    assert len(set(config.layer_types)) > 1
    apply_finetune_mode(model, "top_k", top_k=1)
    cache = cache_of(model)
    assert not cache.enabled and "attend differently per layer" in cache.disabled_reason


def test_trained_lower_weights_get_none() -> None:
    model = tiny_llama_model()
    model.model.layers[0].requires_grad_(True)
    assert "trains weights below block" in cache_of(model).disabled_reason


@pytest.mark.parametrize("max_bytes", [0, -1])
def test_bad_bound(max_bytes: int) -> None:
    with pytest.raises(ValueError, match="max_bytes must be > 0"):
        cache_of(tiny_llama_model(), max_bytes=max_bytes)


def test_the_cached_path_runs_the_models_own_modules(tiny_llama: str) -> None:
    """No module is swapped: the top block's own hooks fire and the block stack stays the same object."""
    import gymnasium as gym
    from stable_baselines3.common.utils import obs_as_tensor

    import babyai_text  # noqa: F401
    from llm_policy import LLMPolicy
    from tests.helpers import text_batch

    env = gym.make("BabyAI-Text-GoToS5N2-v0")
    policy = LLMPolicy(
        env.observation_space, env.action_space, lambda _: 1e-4, model=tiny_llama, finetune="top_k", top_k=1
    )
    layers = policy.lm.model.layers
    ids = {id(m) for m in policy.lm.modules()}
    obs = obs_as_tensor(text_batch("BabyAI-Text-GoToS5N2-v0", n=3), policy.device)
    with torch.no_grad():
        policy(obs)
    seen = []
    handles = [layers[-1].register_forward_hook(lambda *_: seen.append("top"))]
    handles.append(layers[0].register_forward_hook(lambda *_: seen.append("bottom")))
    try:
        values, log_prob, _ = policy.evaluate_actions(obs, torch.tensor([0, 1, 2]))
        (values.sum() + log_prob.sum()).backward()
    finally:
        for h in handles:
            h.remove()
    assert "top" in seen and "bottom" not in seen  # (one forward per bucket of prompt lengths)
    assert policy.lm.model.layers is layers and {id(m) for m in policy.lm.modules()} == ids
    assert policy.scorer.lower_cache.hits == 3
