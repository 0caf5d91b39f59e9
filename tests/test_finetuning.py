"""Which weights each fine-tuning mode trains, per architecture."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from llm_policy.finetuning import apply_finetune_mode


def _gpt2() -> GPT2LMHeadModel:
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=3, n_head=2))


def _llama() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2
    )
    return LlamaForCausalLM(config)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (_gpt2, {"transformer.h.2.", "transformer.ln_f."}),
        (_llama, {"model.layers.2.", "model.norm."}),
    ],
)
def test_top_k_trains_the_top_blocks_and_the_final_norm(build, expected: set[str]) -> None:
    torch.manual_seed(0)
    model = build()
    apply_finetune_mode(model, "top_k", top_k=1)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(any(n.startswith(prefix) for prefix in expected) for n in trained)
    assert all(any(n.startswith(prefix) for n in trained) for prefix in expected)
