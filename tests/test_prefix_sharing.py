"""The prompt prefix common to a batch runs once: scores, hidden states and gradients are unchanged.

Every family of the conformance suite (``tests/helpers/model_families.py``) is scored with the
prefix shared, without it, and by the slow independent reference of
``tests/test_model_families.py``; gradients of a PPO-like loss are compared between the
shared and the unshared computation in every fine-tuning mode (the frozen-block cache of
``top_k`` included).  Families and settings that cannot share fall back to the unshared
path, explicitly.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM, LlamaModel, Qwen2Config, Qwen2ForCausalLM

from babyai_text import decode_batch
from llm_policy import ActionScorer, LLMPolicy, PromptTemplate, load_language_model
from llm_policy.scoring import MIN_SHARED_TOKENS
from tests.helpers import text_batch
from tests.helpers.family_reference import (
    ATOL,
    CASES,
    assert_same_gradients,
    assert_scores_match,
    gradients,
    make_policy,
    obs_tensor,
    reference,
)
from tests.helpers.model_families import CAUSAL_FAMILIES
from tests.helpers.scoring_reference import check_against_reference, reference_scores

#: Fewest tokens of GLAM's action line and "Goal of the agent:" in the families' tokenizers (SentencePiece
#: ones merge "▁up," and "▁toggle\nGoal").
ACTION_LINE = 19


def english_observations() -> dict[str, np.ndarray]:
    """Three observations of different missions and lengths, all with GLAM's English action line."""
    return text_batch("BabyAI-Text-MixedTrain-v0", n=3, steps=3)


def prompt_ids(policy: LLMPolicy, obs: dict[str, torch.Tensor]) -> list[list[int]]:
    prompts, candidates = policy.prompts(obs)
    return [ids for ids, _ in policy.scorer.tokens.batch(prompts, candidates)]


def unshared(policy: LLMPolicy) -> LLMPolicy:
    """The same policy (same weights, same cache) scoring as before prefix sharing: no shared prefix,
    and the output layer inside each bucket's forward."""
    policy.scorer.min_shared_tokens = None
    policy.scorer.separate_head = False
    return policy


def shared(policy: LLMPolicy) -> LLMPolicy:
    """The batch's common prefix shared however short, one output-layer call for all buckets (where the model
    allows: every causal family)."""
    policy.scorer.min_shared_tokens = 1
    policy.scorer.separate_head = policy.scorer.kind == "causal"
    return policy


# --- every family, every fine-tuning mode -----------------------------------------------


@pytest.mark.parametrize(("family", "mode"), CASES)
def test_shared_scores_equal_unshared_and_reference(family_dir, family: str, mode: str) -> None:
    path = family_dir(family)
    obs = english_observations()
    policy = shared(make_policy(path, mode))
    x = obs_tensor(policy, obs)
    ref = reference(policy, path, obs)
    length = policy.scorer.shared_prefix_length(prompt_ids(policy, x))
    if family in CAUSAL_FAMILIES:
        # GLAM's action line and "Goal of the agent:" (19-28 tokens in these families)
        assert policy.scorer.sharing_disabled_reason is None and length >= ACTION_LINE
        assert policy.scorer.separate_head
    else:
        assert "encoder" in policy.scorer.sharing_disabled_reason and length == 0
        assert not policy.scorer.separate_head
    # top_k with the cache: the first call records the rows, the second reads them
    rounds = [False, True] if mode == "top_k-cache" else [False]
    outputs = {}
    for name, setting in (("unshared", unshared), ("shared", shared)):
        setting(policy)
        if policy.scorer.lower_cache is not None:
            policy.scorer.lower_cache.clear()
        for grad in rounds:
            with torch.set_grad_enabled(grad):
                out = policy.score(x)
            what = f"{family}/{mode} {name} ({'update' if grad else 'rollout'})"
            assert_scores_match(out.scores, ref, "sum", False, what)
            torch.testing.assert_close(out.hidden.detach(), ref.hidden, atol=ATOL, rtol=1e-4, msg=what + ": hidden")
            outputs[name, grad] = out
        expected = torch.softmax(torch.from_numpy(ref.scores("sum", False)), dim=-1)
        torch.testing.assert_close(policy.action_probabilities(x).double(), expected, atol=ATOL, rtol=0)
    for grad in rounds:
        a, b = outputs["shared", grad], outputs["unshared", grad]
        torch.testing.assert_close(a.scores.detach(), b.scores.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.hidden.detach(), b.hidden.detach(), atol=1e-5, rtol=1e-5)


GRADIENT_CASES = [
    pytest.param(f, m, id=f"{f}-{m}") for f in CAUSAL_FAMILIES for m in ("full", "lora", "top_k", "top_k-cache")
]


@pytest.mark.parametrize(("family", "mode"), GRADIENT_CASES)
def test_shared_gradients_equal_unshared(family_dir, family: str, mode: str) -> None:
    path = family_dir(family)
    policy = shared(make_policy(path, mode))
    x = obs_tensor(policy, english_observations())
    assert policy.scorer.shared_prefix_length(prompt_ids(policy, x)) >= ACTION_LINE
    expected = gradients(unshared(policy), x)
    if policy.scorer.lower_cache is not None:
        policy.scorer.lower_cache.clear()  # the shared update below records the rows again
    assert_same_gradients(gradients(shared(policy), x), expected, f"{family}/{mode}: shared prefix")
    if mode == "top_k-cache":
        # the rows recorded by the shared forward serve the next update (the top block alone)
        hits = policy.scorer.lower_cache.hits
        assert_same_gradients(gradients(policy, x), expected, f"{family}/{mode}: update from the cache")
        assert policy.scorer.lower_cache.hits == hits + 3


# --- what is shared, and when ------------------------------------------------------------


@pytest.fixture(scope="module")
def word_llama(tiny_llama: str):
    return load_language_model(tiny_llama)


def glam_batch(n: int = 4, template: PromptTemplate | None = None) -> tuple[list[str], list[list[str]]]:
    template = template or PromptTemplate()
    texts = decode_batch(text_batch("BabyAI-Text-MixedTrain-v0", n=n, steps=3))
    return [template.render(t) for t in texts], [template.candidates(t) for t in texts]


def token_ids(scorer: ActionScorer, prompts: list[str], candidates: list[list[str]]) -> list[list[int]]:
    return [ids for ids, _ in scorer.tokens.batch(prompts, candidates)]


def block_inputs(model: torch.nn.Module) -> tuple[list[tuple[int, ...]], Any]:
    """Shapes of the first block's inputs, recorded until the returned handle is removed."""
    shapes: list[tuple[int, ...]] = []
    block = model.model.layers[0]
    handle = block.register_forward_pre_hook(
        lambda _m, args, kwargs: shapes.append(tuple((args[0] if args else kwargs["hidden_states"]).shape[:2])),
        with_kwargs=True,
    )
    return shapes, handle


@pytest.mark.parametrize("max_padding", [0.0, 1.0])
@pytest.mark.parametrize("normalization", ["sum", "token"])
def test_the_prefix_runs_once_for_all_buckets(word_llama, max_padding: float, normalization: str) -> None:
    """One bucket: the prefix runs alone, then the rows after it.  One prompt per bucket: the first
    (shortest) prompt runs whole, and its forward gives the others the prefix."""
    prompts, candidates = glam_batch(n=5)
    scorer = ActionScorer(
        word_llama.model, word_llama.tokenizer, "causal", normalization, score_eos=True, max_padding=max_padding
    )
    ids = token_ids(scorer, prompts, candidates)
    length = scorer.shared_prefix_length(ids)
    text = word_llama.tokenizer.decode(ids[0][:length])
    assert text.startswith("<s> possible action of the agent") and text.endswith("goal of the agent :")
    assert len({len(p) for p in ids}) == 5
    cand_inputs = sum(len(c) - 1 for c in scorer.tokens(prompts[0], candidates[0])[1])
    widths = sorted(len(p) + cand_inputs for p in ids)  # a packed row: prompt, then each candidate but its last token
    shapes, handle = block_inputs(word_llama.model)
    try:
        with torch.no_grad():
            scorer.score(prompts, candidates)
    finally:
        handle.remove()
    check_against_reference(word_llama, scorer, prompts, candidates)
    if max_padding == 1.0:
        assert shapes == [(1, length), (5, widths[-1] - length)]
    else:
        assert shapes == [(1, widths[0])] + [(1, w - length) for w in widths[1:]]


def test_a_batch_sharing_nothing_or_too_little(word_llama) -> None:
    """Prompts of different templates share only BOS: below the threshold nothing is shared."""
    first, first_cands = glam_batch(n=2)
    other, other_cands = glam_batch(n=2, template=PromptTemplate(actions="Actions: {actions}"))
    prompts, candidates = first[:1] + other[:1], first_cands[:1] + other_cands[:1]
    scorer = ActionScorer(word_llama.model, word_llama.tokenizer, "causal")
    assert scorer.shared_prefix_length(token_ids(scorer, prompts, candidates)) == 0
    check_against_reference(word_llama, scorer, prompts, candidates)
    # a threshold of one token shares BOS alone, and still scores exactly
    scorer = ActionScorer(word_llama.model, word_llama.tokenizer, "causal", min_shared_tokens=1)
    assert scorer.shared_prefix_length(token_ids(scorer, prompts, candidates)) == 1
    check_against_reference(word_llama, scorer, prompts, candidates)


def test_no_common_token_at_all(family_dir) -> None:
    """A tokenizer without BOS: prompts of different first words share no token."""
    loaded = load_language_model(family_dir("qwen2"))
    first, cands = glam_batch(n=1)
    other, other_cands = glam_batch(n=1, template=PromptTemplate(actions="Actions: {actions}"))
    scorer = ActionScorer(loaded.model, loaded.tokenizer, "causal", min_shared_tokens=1)
    assert scorer.sharing_disabled_reason is None
    prompts, candidates = first + other, cands + other_cands
    assert scorer.shared_prefix_length(token_ids(scorer, prompts, candidates)) == 0
    with torch.no_grad():
        out = scorer.score(prompts, candidates).scores
    torch.testing.assert_close(
        out.double(), reference_scores(loaded, prompts, candidates, "sum", False), atol=1e-4, rtol=0
    )


def test_a_batch_of_one_is_not_shared(word_llama) -> None:
    prompts, candidates = glam_batch(n=1)
    scorer = ActionScorer(word_llama.model, word_llama.tokenizer, "causal", min_shared_tokens=1)
    assert scorer.shared_prefix_length(token_ids(scorer, prompts, candidates)) == 0
    check_against_reference(word_llama, scorer, prompts, candidates)


def test_identical_prompts_share_all_but_their_last_token(word_llama) -> None:
    prompts, candidates = glam_batch(n=2)
    prompts, candidates = [prompts[0]] * 2 + prompts[1:], [candidates[0]] * 2 + candidates[1:]
    scorer = ActionScorer(word_llama.model, word_llama.tokenizer, "causal", min_shared_tokens=1)
    ids = token_ids(scorer, prompts[:2], candidates[:2])
    assert scorer.shared_prefix_length(ids) == len(ids[0]) - 1
    check_against_reference(word_llama, scorer, prompts[:2], candidates[:2])
    check_against_reference(word_llama, scorer, prompts, candidates)


def test_threshold(word_llama) -> None:
    """Shared from ``min_shared_tokens`` token computations saved: (prompts - 1) x prefix length."""
    prompts, candidates = glam_batch(n=4)
    ids = token_ids(ActionScorer(word_llama.model, word_llama.tokenizer, "causal"), prompts, candidates)
    common = ActionScorer(word_llama.model, word_llama.tokenizer, "causal", min_shared_tokens=1).shared_prefix_length(
        ids
    )
    assert common > 0
    for threshold, expected in ((3 * common, common), (3 * common + 1, 0)):
        scorer = ActionScorer(word_llama.model, word_llama.tokenizer, "causal", min_shared_tokens=threshold)
        assert scorer.shared_prefix_length(ids) == expected
    # by default GLAM's header is shared by four prompts, not by three
    assert 2 * common < MIN_SHARED_TOKENS <= 3 * common
    scorer = ActionScorer(word_llama.model, word_llama.tokenizer, "causal")
    assert scorer.shared_prefix_length(ids) == common and scorer.shared_prefix_length(ids[:3]) == 0
    with pytest.raises(ValueError, match="min_shared_tokens must be None or >= 1"):
        ActionScorer(word_llama.model, word_llama.tokenizer, "causal", min_shared_tokens=0)


# --- with the rest of the policy -----------------------------------------------------------


def test_micro_batches_and_autocast(family_dir) -> None:
    """Micro-batches (each sharing its own prefix, recomputed in the backward pass) give the same gradients;
    under bf16 autocast the shared and unshared scores agree to bf16's precision."""
    path = family_dir("llama3")
    policy = make_policy(path, "full")
    x = obs_tensor(policy, english_observations())
    expected = gradients(unshared(policy), x)
    policy.micro_batch_size = 2  # a chunk of two (shared) and a chunk of one (not)
    assert_same_gradients(gradients(shared(policy), x), expected, "micro-batches of 2")
    policy.micro_batch_size = None
    policy.autocast = True
    with torch.no_grad():
        plain = unshared(policy).score(x).scores
        fast = shared(policy).score(x).scores
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, plain, atol=0.1, rtol=0.02)


def test_frozen_cache_rows_serve_any_batch(family_dir) -> None:
    """The cache keeps whole rows: what a shared batch recorded is found when the same prompts come
    alone or with other prompts (another shared prefix, or none)."""
    policy = shared(make_policy(family_dir("gemma"), "top_k-cache"))
    obs = english_observations()
    x = obs_tensor(policy, obs)
    cache = policy.scorer.lower_cache
    assert policy.scorer.shared_prefix_length(prompt_ids(policy, x)) > 0
    with torch.no_grad():
        expected = policy.score(x).scores
    assert len(cache.entries) == 3 and cache.misses == 3
    for i in range(3):
        one = {k: v[i : i + 1] for k, v in x.items()}
        with torch.no_grad():
            torch.testing.assert_close(policy.score(one).scores, expected[i : i + 1], atol=1e-5, rtol=0)
    assert cache.misses == 3 and cache.hits == 3


# --- explicit fallbacks --------------------------------------------------------------------


def test_t5_and_the_cache_strategy_do_not_share(tiny_t5: str, word_llama) -> None:
    t5 = load_language_model(tiny_t5)
    scorer = ActionScorer(t5.model, t5.tokenizer, "seq2seq", min_shared_tokens=1)
    assert "encoder" in scorer.sharing_disabled_reason
    scorer = ActionScorer(word_llama.model, word_llama.tokenizer, "causal", strategy="cache", min_shared_tokens=1)
    assert "'cache' strategy" in scorer.sharing_disabled_reason
    prompts, candidates = glam_batch(n=3)
    assert scorer.shared_prefix_length(token_ids(scorer, prompts, candidates)) == 0
    check_against_reference(word_llama, scorer, prompts, candidates)


def test_sliding_window_layers_do_not_share(word_llama) -> None:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(word_llama.tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, use_sliding_window=True, sliding_window=8, max_window_layers=1,
    )  # fmt: skip
    assert len(set(config.layer_types)) > 1
    scorer = ActionScorer(Qwen2ForCausalLM(config).eval(), word_llama.tokenizer, "causal", min_shared_tokens=1)
    assert "sliding-window" in scorer.sharing_disabled_reason
    prompts, candidates = glam_batch(n=2)
    assert scorer.shared_prefix_length(token_ids(scorer, prompts, candidates)) == 0


class _IgnoresThePast(LlamaModel):
    """Drops the past keys/values it is given (the rows' mask then has more columns than keys)."""

    def forward(self, *args: Any, cache: Any = None, **kwargs: Any) -> Any:
        return super().forward(*args, **kwargs)


class _ShiftsContinuations(LlamaModel):
    """Moves the positions of tokens that continue a cache, so shared rows would score differently."""

    def forward(self, *args: Any, cache: Any = None, position_ids: Any = None, **kwargs: Any) -> Any:
        if cache is not None and cache.get_seq_length() > 0:
            position_ids = position_ids + 1
        return super().forward(*args, cache=cache, position_ids=position_ids, **kwargs)


@pytest.mark.parametrize(
    ("cls", "reason"),
    [(_IgnoresThePast, "cannot attend to a shared prefix"), (_ShiftsContinuations, "does not reproduce its scores")],
)
def test_a_model_the_probe_finds_inexact_does_not_share(word_llama, cls: type, reason: str) -> None:
    torch.manual_seed(0)
    model = LlamaForCausalLM(word_llama.model.config).eval()
    model.model = cls(word_llama.model.config).eval()
    scorer = ActionScorer(model, word_llama.tokenizer, "causal", min_shared_tokens=1)
    assert scorer.sharing_disabled_reason.startswith("LlamaForCausalLM") and reason in scorer.sharing_disabled_reason
    prompts, candidates = glam_batch(n=2)
    assert scorer.shared_prefix_length(token_ids(scorer, prompts, candidates)) == 0


class _ScaledLogits(LlamaForCausalLM):
    """Post-processes its logits after the output layer (as Gemma-2's soft-capping does)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 2
        return out


def test_logits_post_processed_by_the_model_come_from_its_forward(word_llama) -> None:
    """The output layer runs once for all buckets only where the model's logits are that layer's output."""
    assert ActionScorer(word_llama.model, word_llama.tokenizer, "causal").separate_head
    model = _ScaledLogits(word_llama.model.config).eval()
    model.load_state_dict(word_llama.model.state_dict())
    loaded = SimpleNamespace(model=model, tokenizer=word_llama.tokenizer, kind="causal")
    scorer = ActionScorer(model, word_llama.tokenizer, "causal", max_padding=0.0, min_shared_tokens=1)
    assert not scorer.separate_head and scorer.sharing_disabled_reason is None
    prompts, candidates = glam_batch(n=3)
    assert scorer.shared_prefix_length(token_ids(scorer, prompts, candidates)) > 0
    check_against_reference(loaded, scorer, prompts, candidates)


def test_gradient_checkpointing_while_training_does_not_share(word_llama) -> None:
    """HF's checkpointed blocks drop past keys/values in training mode: such calls run unshared."""
    prompts, candidates = glam_batch(n=3)
    model = word_llama.model
    scorer = ActionScorer(model, word_llama.tokenizer, "causal", min_shared_tokens=1)
    ids = token_ids(scorer, prompts, candidates)
    assert scorer.shared_prefix_length(ids) > 0
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    try:
        model.train()
        assert scorer.shared_prefix_length(ids) == 0
        model.eval()
        assert scorer.shared_prefix_length(ids) > 0
    finally:
        model.activation_checkpointing_disable()
        model.eval()
