"""Tiny language models built locally, for tests and quick experiments (nothing downloaded).

A word-level tokenizer over the BabyAI-Text vocabulary (every word any built-in language
can produce, and GLAM's prompt words) and Llama- or T5-style models of a few thousand
parameters, saved with ``save_pretrained`` so that any code loading a model by path
(``LLMPolicy(model=path)``) can use them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import gymnasium as gym
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

import babyai_text
from llm_policy.prompt import PromptTemplate

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]


def babyai_vocabulary(episodes: int = 30) -> list[str]:
    """Every word of the built-in languages' sentences, missions and actions, and the prompt's."""
    texts: list[str] = []
    for language in babyai_text.VARIANTS.values():
        for colour in ("red", "green", "blue", "purple", "yellow", "grey"):
            for obj_type, state in (
                ("key", None),
                ("ball", None),
                ("box", None),
                ("door", "open"),
                ("door", "closed"),
                ("door", "locked"),
            ):
                texts.append(language.see_object(obj_type, colour, state, -3, 6))
                texts.append(language.see_object(obj_type, colour, state, 3, 1))
            for obj_type in ("key", "ball", "box"):
                texts.append(language.carry(obj_type, colour))
        texts.append(language.see_wall(0, 2))
        texts.extend(language.action_names)
    for variant in babyai_text.VARIANTS:
        for env_id in ("BabyAI-Text-MixedTrain-v0", "BabyAI-Text-PickUpSeqPickUp-v0"):
            env = gym.make(env_id, variant=variant)
            for seed in range(episodes):
                texts.append(env.reset(seed=seed)[1]["mission"])
    template = PromptTemplate()
    texts += [template.actions, template.goal, template.observation, template.action, "0 1 2 3 4 5 6 7 8 9"]
    words = {w for t in texts for w in re.findall(r"\w+|[^\w\s]", t)}
    return SPECIAL + sorted(words)


def build_tokenizer(directory: Path | None = None) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(babyai_vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
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
