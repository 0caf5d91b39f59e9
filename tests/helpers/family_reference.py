"""The model-family suite's reference: policies of each fine-tuning mode, observations, and the slow
per-(prompt, action) scores and gradients a correct scorer must equal (``tests/test_model_families.py``)."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from babyai_text import decode_batch
from llm_policy import LLMPolicy, PromptTemplate
from tests.helpers import text_batch
from tests.helpers.model_families import CAUSAL_FAMILIES, FAMILIES

# The frozen-block cache's size: ``frozen_cache_size`` (rows) or, in newer code, ``frozen_cache_bytes``.
_CACHE_ARG, _CACHE_ON = (
    ("frozen_cache_bytes", 64 << 20)
    if "frozen_cache_bytes" in inspect.signature(LLMPolicy.__init__).parameters
    else ("frozen_cache_size", 64)
)
MODES: dict[str, dict[str, Any]] = {
    "full": {"finetune": "full"},
    "lora": {"finetune": "lora", "lora_kwargs": {"r": 4}},
    "top_k": {"finetune": "top_k", "top_k": 1, _CACHE_ARG: 0},
    "top_k-cache": {"finetune": "top_k", "top_k": 1, _CACHE_ARG: _CACHE_ON},
}


def modes_of(family: str) -> list[str]:
    """The fine-tuning modes that apply (the frozen-block cache is for decoder-only models)."""
    return [m for m in MODES if not (m == "top_k-cache" and family not in CAUSAL_FAMILIES)]


CASES = [pytest.param(f, m, id=f"{f}-{m}") for f in FAMILIES for m in modes_of(f)]
PPO_ENV_ID = "BabyAI-Text-GoToS5N2-v0"
ATOL = 1e-4


# --- observations and policies ---------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _observations() -> dict[str, np.ndarray]:
    parts = [
        text_batch("BabyAI-Text-MixedTrain-v0", n=2, steps=3),
        text_batch("BabyAI-Text-GoTo-French-v0", n=1, steps=2),  # " tourner à gauche": non-ASCII actions
    ]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def observations() -> dict[str, np.ndarray]:
    """Three observations with history, of different prompt lengths, English and French."""
    return {key: value.copy() for key, value in _observations().items()}


@functools.lru_cache(maxsize=1)
def _spaces() -> tuple[gym.Space, gym.Space]:
    env = gym.make(PPO_ENV_ID)
    return env.observation_space, env.action_space


def as_if_trained(policy: LLMPolicy, mode: str) -> None:
    """LoRA starts as the identity (B = 0) with random A: give the adapters seeded weights, as training would."""
    if mode != "lora":
        return
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def make_policy(path: str, mode: str, **kwargs: Any) -> LLMPolicy:
    observation_space, action_space = _spaces()
    policy = LLMPolicy(
        observation_space, action_space, lambda _: 3e-4, model=path, value_head=(16,), **MODES[mode], **kwargs
    )
    as_if_trained(policy, mode)
    return policy


def obs_tensor(policy: LLMPolicy, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return policy.obs_to_tensor(obs)[0]


def trainable(policy: LLMPolicy) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in policy.named_parameters() if p.requires_grad}


# --- the reference ---------------------------------------------------------------------


@dataclass
class Reference:
    """Slow per-(prompt, action) results; every array is ``(batch, actions)``."""

    logp: np.ndarray  # summed log-probabilities of the action's tokens
    eos: np.ndarray  # log-probability of EOS right after the action
    tokens: np.ndarray  # number of action tokens (EOS excluded)
    words: np.ndarray  # number of words of the action
    hidden: torch.Tensor  # (batch, hidden): last prompt position / first decoder position
    prompt_lengths: list[int]
    action_tokens: list[list[list[str]]]  # the action's tokens, as strings
    alone_tokens: list[list[list[str]]]  # the action tokenized alone (what a naive scorer scores)
    candidates: list[list[str]]

    def scores(self, normalization: str, score_eos: bool) -> np.ndarray:
        total = self.logp + (self.eos if score_eos else 0.0)
        size = {"sum": 1.0, "token": self.tokens + (1 if score_eos else 0), "word": self.words}[normalization]
        return total / size


def _strip_trailing_special(ids: list[int], special: set[int]) -> list[int]:
    ids = list(ids)
    while ids and ids[-1] in special:
        ids.pop()
    return ids


def reference(policy: LLMPolicy, path: str, obs: dict[str, np.ndarray]) -> Reference:
    """Independent of the scorer: the model's own tokenizer, one plain forward per (prompt, action)."""
    tok = AutoTokenizer.from_pretrained(path)
    model = policy.lm  # the policy's weights (LoRA adapters included), run as a plain HF model
    template = PromptTemplate()
    texts = decode_batch(obs)
    prompts = [template.render(t) for t in texts]
    candidates = [template.candidates(t) for t in texts]
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    eos_id = tok.eos_token_id
    special = set(tok.all_special_ids)
    shape = (len(prompts), len(candidates[0]))
    logps, eoss, counts = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    words = np.array([[max(1, len(c.split())) for c in row] for row in candidates], dtype=np.float64)
    hidden, lengths, action_tokens, alone_tokens = [], [], [], []
    with torch.no_grad():
        for b, (prompt, row) in enumerate(zip(prompts, candidates, strict=True)):
            action_tokens.append([])
            alone_tokens.append([])
            if seq2seq:
                encoder_ids = tok(prompt).input_ids
                lengths.append(len(encoder_ids))
                encoded = model.get_encoder()(input_ids=torch.tensor([encoder_ids]))
            else:
                prompt_ids = _strip_trailing_special(tok(prompt).input_ids, special)
                lengths.append(len(prompt_ids))
            for a, cand in enumerate(row):
                if seq2seq:
                    targets = tok(cand.strip(), add_special_tokens=False).input_ids
                    start = model.config.decoder_start_token_id
                    out = model(
                        encoder_outputs=encoded,
                        decoder_input_ids=torch.tensor([[start, *targets]]),
                        output_hidden_states=True,
                    )
                    logp = out.logits[0].double().log_softmax(-1)
                    logps[b, a] = float(sum(logp[j, t] for j, t in enumerate(targets)))
                    eoss[b, a] = float(logp[len(targets), eos_id])
                    state = out.decoder_hidden_states[-1][0, 0]
                    alone = targets
                else:
                    ids = _strip_trailing_special(tok(prompt + cand).input_ids, special)
                    assert ids[: len(prompt_ids)] == prompt_ids, (
                        f"the prompt's tokens are not a prefix of prompt + {cand!r}'s: "
                        f"{tok.convert_ids_to_tokens(prompt_ids[-5:])} vs {tok.convert_ids_to_tokens(ids[-10:])}"
                    )
                    targets = ids[len(prompt_ids) :]
                    assert targets, f"{cand!r} adds no token to the prompt"
                    out = model(input_ids=torch.tensor([[*ids, eos_id]]), output_hidden_states=True)
                    logp = out.logits[0].double().log_softmax(-1)
                    first = len(prompt_ids) - 1
                    logps[b, a] = float(sum(logp[first + j, t] for j, t in enumerate(targets)))
                    eoss[b, a] = float(logp[len(ids) - 1, eos_id])
                    state = out.hidden_states[-1][0, first]
                    alone = tok(cand, add_special_tokens=False).input_ids
                counts[b, a] = len(targets)
                action_tokens[b].append(tok.convert_ids_to_tokens(targets))
                alone_tokens[b].append(tok.convert_ids_to_tokens(alone))
            hidden.append(state.float())
    return Reference(logps, eoss, counts, words, torch.stack(hidden), lengths, action_tokens, alone_tokens, candidates)


def assert_scores_match(actual: torch.Tensor, ref: Reference, normalization: str, score_eos: bool, what: str) -> None:
    """``actual`` scores equal the reference's, with the tokens of the worst action in the message."""
    expected = ref.scores(normalization, score_eos)
    got = actual.detach().double().cpu().numpy()
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    error = np.abs(got - expected)
    if error.max() > ATOL:
        b, a = np.unravel_index(int(error.argmax()), error.shape)
        pytest.fail(
            f"{what}: scores differ from the reference by up to "
            f"{error.max():.3g} ({int((error > ATOL).sum())} of {error.size} actions); worst: "
            f"prompt {b}, action {ref.candidates[b][a]!r}: {got[b, a]:.6f} vs reference {expected[b, a]:.6f}; "
            f"reference tokens (after the prompt in prompt + action) {ref.action_tokens[b][a]}, "
            f"the action tokenized alone {ref.alone_tokens[b][a]}"
        )


ACTIONS = torch.tensor([2, 0, 5])


def gradients(policy: LLMPolicy, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """Gradients of a PPO-like loss (log-probabilities, values and entropy, unevenly weighted)."""
    policy.zero_grad(set_to_none=True)
    values, log_prob, entropy = policy.evaluate_actions(obs, ACTIONS)
    loss = (log_prob * torch.tensor([0.7, -1.3, 0.4])).sum() + (values.flatten() * torch.tensor([0.5, 0.2, -0.9])).sum()
    (loss - 0.1 * entropy.sum()).backward()
    return {name: None if p.grad is None else p.grad.clone() for name, p in trainable(policy).items()}


def assert_same_gradients(got: dict, expected: dict, what: str) -> None:
    assert got.keys() == expected.keys()
    lm_grads = [name for name, g in expected.items() if name.startswith("lm.") and g is not None and g.abs().max() > 0]
    assert lm_grads, f"{what}: the uncached policy has no gradient in the language model"
    for name, want in expected.items():
        have = got[name]
        if want is None or not want.abs().max() > 0:
            continue
        assert have is not None and have.abs().max() > 0, f"{what}: no gradient for {name} (uncached: non-zero)"
        torch.testing.assert_close(
            have, want, atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"{what}: gradient of {name}: {m}"
        )
