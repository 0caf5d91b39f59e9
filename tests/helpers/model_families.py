"""Tiny random models of real model families, with tokenizers trained here (test scaffolding).

Each family's tokenizer is trained locally, with the ``tokenizers`` package, on BabyAI-Text
prompts (several envs, French, synonyms and invented words included), and then given the
real family's ``tokenizer.json`` pipeline: normalizer, pre-tokenizer, model options,
decoder, post-processor and special tokens.  The model is a tiny random network of the
family's architecture (a few thousand parameters).  Both are saved with
``save_pretrained``, so ``LLMPolicy(model=path)`` loads them the way it loads a real
checkpoint (``AutoTokenizer``: with transformers 5 the tokenizer class declared in
``tokenizer_config.json`` matters, see :data:`TOKENIZER_CLASSES`).

Families (``build_family(name, directory)``):

- ``"word"``: the word-level tiny Llama of :mod:`tests.helpers.tiny_models`.
- ``"llama2"``: Llama-2 / Mistral-v0.1 / TinyLlama legacy SentencePiece BPE, loaded verbatim
  from ``tokenizer.json`` (``Prepend("▁")`` normalizer: a lone text ``" turn left"``
  tokenizes with a spurious leading ``"▁"``).
- ``"llama2-hf"``: the same files declared as ``LlamaTokenizer`` (``legacy: false``), as on
  the hub: transformers 5 then rebuilds the pipeline (``Metaspace`` pre-tokenizer, no
  normalizer) from the vocabulary and merges.
- ``"llama3"``: Llama-3 byte-level BPE (tiktoken-style split regex), ``<|begin_of_text|>``.
- ``"qwen2"``: Qwen2 byte-level BPE (NFC, the split regex with single digits), no BOS.
- ``"gpt2"``: GPT-2 byte-level BPE (its own regex), ``<|endoftext|>`` for everything,
  learned absolute positions.
- ``"gemma"``: Gemma SentencePiece BPE without a dummy prefix, byte fallback, ``<bos>``,
  embeddings scaled by ``sqrt(hidden_size)`` (in transformers 5 inside the embedding
  module, so ``inputs_embeds`` are not scaled again).
- ``"t5"``: T5 Unigram with ``Metaspace`` and ``$A </s>``, 100 ``<extra_id_*>``;
  encoder-decoder with relative positions.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

import babyai_text  # noqa: F401  (registers the envs)
from babyai_text import decode_observation
from babyai_text.prompt import PromptTemplate

FAMILIES: tuple[str, ...] = ("word", "llama2", "llama2-hf", "llama3", "qwen2", "gpt2", "gemma", "t5")
CAUSAL_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f != "t5")

#: The class each family's hub ``tokenizer_config.json`` declares (what ``AutoTokenizer`` follows).
TOKENIZER_CLASSES = {
    "llama2": "PreTrainedTokenizerFast",  # tokenizer.json verbatim, as transformers 4's LlamaTokenizerFast kept it
    "llama2-hf": "LlamaTokenizer",
    "llama3": "PreTrainedTokenizerFast",
    "qwen2": "Qwen2Tokenizer",
    "gpt2": "GPT2Tokenizer",
    "gemma": "GemmaTokenizer",
    "t5": "T5Tokenizer",
}

CORPUS_ENV_IDS = (
    "BabyAI-Text-MixedTrain-v0",
    "BabyAI-Text-MixedTest-v0",
    "BabyAI-Text-GoToS5N2-v0",
    "BabyAI-Text-GoTo-French-v0",
    "BabyAI-Text-MixedTrain-French-v0",
    "BabyAI-Text-MixedTrain-SynonymActions-v0",
    "BabyAI-Text-MixedTrain-ColourSynonyms-v0",
    "BabyAI-Text-MixedTrain-InventedWords-v0",
    "BabyAI-Text-MixedTrain-RenamedObjects-v0",
)

#: Llama-3's split regex (tiktoken cl100k-like: digits in groups of up to three).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: Qwen2's: the same with single digits.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
MAX_POSITIONS = 2048
SEED = 1234


@functools.lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    """BabyAI-Text prompts, each followed by one of its candidate actions, from several envs."""
    template = PromptTemplate()
    texts = []
    rng = np.random.default_rng(0)
    for env_id in CORPUS_ENV_IDS:
        env = gym.make(env_id)
        for episode in range(2):
            obs, _ = env.reset(seed=episode)
            for _ in range(6):
                text = decode_observation(obs)
                prompt = template.render(text)
                texts.extend(prompt + c for c in template.candidates(text))
                obs, _, terminated, truncated, _ = env.step(int(rng.integers(0, 6)))
                if terminated or truncated:
                    break
        env.close()
    return tuple(texts)


# --- tokenizers ------------------------------------------------------------------------


def _bpe_parts(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    data = json.loads(tokenizer.to_str())["model"]
    return data["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in data["merges"]]


def _train_sentencepiece_bpe(vocab_size: int, specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Merges learned on words pre-split at "▁" (as SentencePiece does), so none spans a word boundary.

    The vocabulary is ``specials``, the 256 byte-fallback tokens, then the learned pieces.
    """
    trainer_tok = Tokenizer(models.BPE(unk_token=specials[0] if "<unk>" in specials else None))
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=[])
    trainer_tok.train_from_iterator(corpus(), trainer=trainer)
    learned, merges = _bpe_parts(trainer_tok)
    vocab = {t: i for i, t in enumerate(specials + BYTE_TOKENS)}
    for token, _ in sorted(learned.items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def _train_byte_level_bpe(vocab_size: int, split: pre_tokenizers.PreTokenizer, nfc: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = split
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.decoder = decoders.ByteLevel()
    return tok


def _special(tok: Tokenizer, tokens: list[str]) -> None:
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])


def llama2_tokenizer() -> Tokenizer:
    """Llama-2's tokenizer.json: Prepend+Replace normalizer, no pre-tokenizer, byte-fallback BPE."""
    specials = ["<unk>", "<s>", "</s>"]
    vocab, merges = _train_sentencepiece_bpe(700, specials)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    _special(tok, specials)
    return tok


def gemma_tokenizer() -> Tokenizer:
    """Gemma's tokenizer.json: Replace(" ", "▁") only (no dummy prefix), byte-fallback BPE, <bos>."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
    vocab, merges = _train_sentencepiece_bpe(700, specials)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    _special(tok, specials)
    return tok


def llama3_tokenizer() -> Tokenizer:
    """Llama-3's tokenizer.json: split regex + ByteLevel (no regex, no prefix space), <|begin_of_text|>."""
    split = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok = _train_byte_level_bpe(600, split, nfc=False)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    _special(tok, specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ]
    )
    return tok


def qwen2_tokenizer() -> Tokenizer:
    """Qwen2's tokenizer.json: NFC, split regex + ByteLevel, no BOS, <|endoftext|>."""
    split = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok = _train_byte_level_bpe(600, split, nfc=True)
    _special(tok, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tok


def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's tokenizer.json: ByteLevel with its own regex, no prefix space, <|endoftext|> last."""
    split = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok = _train_byte_level_bpe(600, split, nfc=False)
    _special(tok, ["<|endoftext|>"])
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    return tok


T5_EXTRA_IDS = 100


def t5_tokenizer() -> Tokenizer:
    """T5's tokenizer.json: whitespace normalisation, WhitespaceSplit + Metaspace(always), Unigram, ``$A </s>``.

    The pieces are learned as BPE merges (the ``tokenizers`` Unigram trainer keeps few pieces
    on so small a corpus: prompts three times as long as other families'), each scored with
    its log-frequency in the corpus, as a SentencePiece Unigram model scores its pieces.
    """
    normalizer = normalizers.Replace(Regex(" {2,}"), " ")
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.normalizer = normalizer
    learner.pre_tokenizer = pre_tokenizer
    learner.train_from_iterator(
        corpus(), trainer=trainers.BpeTrainer(vocab_size=500, show_progress=False, special_tokens=["<unk>"])
    )
    counts = dict.fromkeys(learner.get_vocab(), 1)
    for encoding in learner.encode_batch(list(corpus())):
        for token in encoding.tokens:
            counts[token] += 1
    counts.pop("<unk>")
    total = sum(counts.values())
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(token, math.log(count / total)) for token, count in sorted(counts.items())]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_EXTRA_IDS))]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    _special(tok, ["<pad>", "</s>", "<unk>", *[f"<extra_id_{i}>" for i in range(T5_EXTRA_IDS)]])
    return tok


RAW_TOKENIZERS = {
    "llama2": llama2_tokenizer,
    "llama2-hf": llama2_tokenizer,
    "llama3": llama3_tokenizer,
    "qwen2": qwen2_tokenizer,
    "gpt2": gpt2_tokenizer,
    "gemma": gemma_tokenizer,
    "t5": t5_tokenizer,
}


@functools.cache
def raw_tokenizer(name: str) -> Tokenizer:
    """The family's ``tokenizers.Tokenizer`` as a real ``tokenizer.json`` would hold it."""
    return RAW_TOKENIZERS[name]()


#: Special tokens of each family (``None``: the family has none of that kind).
SPECIAL_TOKENS: dict[str, dict[str, str | None]] = {
    # Llama-2 has no pad token: none is set (the scorer pads with EOS).
    "llama2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "llama2-hf": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
    "qwen2": {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    "gpt2": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
    "gemma": {
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    },
    "t5": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
}
#: Further ``tokenizer_config.json`` entries of the family's hub checkpoints.
CONFIG_EXTRAS: dict[str, dict] = {
    "llama2": {"add_bos_token": True, "add_eos_token": False},
    "llama2-hf": {"add_bos_token": True, "add_eos_token": False, "legacy": False},  # Llama-2-7b-hf, TinyLlama
    "llama3": {},
    "qwen2": {
        "add_prefix_space": False,
        "bos_token": None,
        "unk_token": None,
        "extra_special_tokens": ["<|im_start|>", "<|im_end|>"],
    },
    "gpt2": {"add_prefix_space": False},
    "gemma": {"add_bos_token": True, "add_eos_token": False},
    "t5": {"extra_ids": T5_EXTRA_IDS},
}


def wrap_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """The family's tokenizer in transformers (saved, it is declared as the hub's class)."""
    if name not in RAW_TOKENIZERS:
        raise ValueError(f"unknown family {name!r}; one of {FAMILIES}")
    tok = Tokenizer.from_str(raw_tokenizer(name).to_str())
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS[name])


def save_tokenizer(name: str, directory: Path) -> None:
    """Save the family's tokenizer with the ``tokenizer_config.json`` its hub checkpoints have."""
    wrap_tokenizer(name).save_pretrained(directory)
    path = directory / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(CONFIG_EXTRAS[name])
    config["tokenizer_class"] = TOKENIZER_CLASSES[name]
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False))


# --- models ----------------------------------------------------------------------------


def _model(name: str, vocab: int, tok) -> torch.nn.Module:
    common = {"vocab_size": vocab, "max_position_embeddings": MAX_POSITIONS}
    if name in ("llama2", "llama2-hf", "llama3"):
        config = LlamaConfig(
            **common,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2 if name == "llama3" else 4,
            rope_theta=500000.0 if name == "llama3" else 10000.0,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            tie_word_embeddings=False,
        )
        return LlamaForCausalLM(config)
    if name == "qwen2":
        config = Qwen2Config(
            **common,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_theta=1000000.0,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=tok.eos_token_id,
        )
        return Qwen2ForCausalLM(config)
    if name == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_positions=MAX_POSITIONS,
            n_embd=32,
            n_layer=3,
            n_head=4,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        return GPT2LMHeadModel(config)
    if name == "gemma":
        config = GemmaConfig(
            **common,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        return GemmaForCausalLM(config)
    if name == "t5":
        config = T5Config(
            vocab_size=vocab,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=3,
            num_heads=4,
            decoder_start_token_id=tok.pad_token_id,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        return T5ForConditionalGeneration(config)
    raise ValueError(f"unknown family {name!r}; one of {FAMILIES}")


def build_family(name: str, directory: Path) -> Path:
    """Save a tiny random model of family ``name`` and its tokenizer in ``directory``."""
    directory = Path(directory)
    if name == "word":
        from tests.helpers.tiny_models import build_tiny_model

        return build_tiny_model(directory, "llama")
    if name not in RAW_TOKENIZERS:
        raise ValueError(f"unknown family {name!r}; one of {FAMILIES}")
    save_tokenizer(name, directory)
    tok = AutoTokenizer.from_pretrained(directory)
    torch.manual_seed(SEED)
    model = _model(name, len(tok), tok)
    model.save_pretrained(directory)
    return directory
