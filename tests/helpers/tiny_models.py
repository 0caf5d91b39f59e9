"""Tiny language models built locally, for tests and quick experiments (nothing downloaded).

A word-level tokenizer over the BabyAI-Text vocabulary (every word any built-in language
can produce, and GLAM's prompt words) and Llama- or T5-style models of a few thousand
parameters, saved with ``save_pretrained`` so that any code loading a model by path
(``LLMPolicy(model=path)``) can use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

from babyai_text.prompt import PromptTemplate
from babyai_text.vocabulary import babyai_vocabulary, split_words

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]


def tokenizer_vocabulary() -> list[str]:
    """Special tokens, BabyAI-Text's words and GLAM's prompt words."""
    template = PromptTemplate()
    prompt_words = split_words(" ".join([template.actions, template.goal, template.observation, template.action]))
    return SPECIAL + sorted(set(babyai_vocabulary()) | set(prompt_words))


def build_tokenizer(directory: Path | None = None) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(tokenizer_vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if directory is not None:
        fast.save_pretrained(directory)
    return fast


def build_tiny_model(directory: Path, family: Literal["llama", "t5"] = "llama", seed: int = 12345) -> Path:
    """Save a tiny random model of ``family`` with the BabyAI tokenizer in ``directory``."""
    directory = Path(directory)
    tokenizer = build_tokenizer()
    if family == "t5":
        # T5 adds </s> after the input and no <s>
        tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
            single="$A </s>", special_tokens=[("</s>", tokenizer.eos_token_id)]
        )
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    vocab = len(tokenizer)
    if family == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
            attention_dropout=0.1,
        )
        model = LlamaForCausalLM(config)
    elif family == "t5":
        config = T5Config(
            vocab_size=vocab,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=3,
            num_heads=4,
            dropout_rate=0.1,
            decoder_start_token_id=tokenizer.pad_token_id,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = T5ForConditionalGeneration(config)
    else:
        raise ValueError(f"family must be 'llama' or 't5', got {family!r}")
    model.save_pretrained(directory)
    return directory
