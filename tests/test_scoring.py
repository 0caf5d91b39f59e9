"""Shared-prefix action scoring equals a slow reference (one full forward per prompt + action)."""

from __future__ import annotations

import pytest
import torch

from llm_policy import ActionScorer, PromptTooLongError, load_language_model
from tests.helpers.scoring_reference import check_against_reference, prompts_and_candidates, reference_scores


@pytest.mark.parametrize("normalization", ["sum", "token", "word"])
@pytest.mark.parametrize("score_eos", [False, True])
def test_shared_prefix_equals_reference(tiny_model: str, normalization: str, score_eos: bool) -> None:
    loaded = load_language_model(tiny_model)
    prompts, candidates = prompts_and_candidates()
    assert len({len(loaded.tokenizer(p).input_ids) for p in prompts}) > 1  # padding is exercised
    assert len({len(loaded.tokenizer(c, add_special_tokens=False).input_ids) for c in candidates[0]}) > 1
    scorer = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind, normalization, score_eos)
    with torch.no_grad():
        fast = scorer.score(prompts, candidates).scores
        slow = reference_scores(loaded, prompts, candidates, normalization, score_eos)
    assert fast.dtype == torch.float32 and fast.shape == (4, 6)
    torch.testing.assert_close(fast.double(), slow, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("strategy", "max_padding"), [("packed", 0.0), ("packed", 1.0), ("cache", 0.1)])
def test_causal_strategies_equal_reference(tiny_llama: str, strategy: str, max_padding: float) -> None:
    loaded = load_language_model(tiny_llama)
    prompts, candidates = prompts_and_candidates(n=5)
    scorer = ActionScorer(
        loaded.model, loaded.tokenizer, loaded.kind, "token", strategy=strategy, max_padding=max_padding
    )
    check_against_reference(loaded, scorer, prompts, candidates)
    if strategy == "packed":
        lengths = [len(loaded.tokenizer(p).input_ids) for p in prompts]
        groups = scorer._buckets(lengths)
        assert sorted(i for g in groups for i in g) == list(range(5))
        assert len(groups) == (1 if max_padding == 1.0 else len(set(lengths)))


def test_french_and_synonym_candidates_are_scored(tiny_llama: str) -> None:
    loaded = load_language_model(tiny_llama)
    prompts, candidates = prompts_and_candidates("BabyAI-Text-GoTo-French-v0", n=2)
    assert candidates[0][0] == " tourner à gauche"
    scorer = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind)
    with torch.no_grad():
        torch.testing.assert_close(
            scorer.score(prompts, candidates).scores.double(),
            reference_scores(loaded, prompts, candidates, "sum", False),
            atol=1e-4,
            rtol=0,
        )


def _hooked(module: torch.nn.Module, record: list, fn) -> None:
    handle = module.register_forward_hook(lambda _m, inputs, _o: record.append(tuple(inputs[0].shape)))
    try:
        with torch.no_grad():
            fn()
    finally:
        handle.remove()


@pytest.mark.parametrize("strategy", ["packed", "cache"])
def test_logits_only_at_scored_positions(tiny_llama: str, strategy: str) -> None:
    loaded = load_language_model(tiny_llama)
    prompts, candidates = prompts_and_candidates(n=4)
    scorer = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind, strategy=strategy)
    shapes: list[tuple[int, ...]] = []
    _hooked(loaded.model.get_output_embeddings(), shapes, lambda: scorer.score(prompts, candidates))
    positions = sum(torch.Size(s[:-1]).numel() for s in shapes)
    cand_inputs = sum(len(c) - 1 for c in scorer.tokens(prompts[0], candidates[0])[1])
    # per prompt: its last position, and each candidate's positions but the last (padding aside)
    longest = max(len(c) for c in scorer.tokens(prompts[0], candidates[0])[1])
    assert 4 * (1 + cand_inputs) <= positions <= 4 * (1 + 6 * (longest - 1))
    prompt_tokens = sum(len(loaded.tokenizer(p).input_ids) for p in prompts)
    assert positions < prompt_tokens / 4


@pytest.mark.parametrize("strategy", ["packed", "cache"])
def test_each_prompt_runs_once(tiny_llama: str, strategy: str) -> None:
    loaded = load_language_model(tiny_llama)
    prompts, candidates = prompts_and_candidates(n=3)
    scorer = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind, strategy=strategy, max_padding=1.0)
    embedded: list[tuple[int, ...]] = []
    _hooked(loaded.model.get_input_embeddings(), embedded, lambda: scorer.score(prompts, candidates))
    longest_prompt = max(len(loaded.tokenizer(p).input_ids) for p in prompts)
    cand_inputs = sum(len(c) - 1 for c in scorer.tokens(prompts[0], candidates[0])[1])
    if strategy == "packed":  # one forward: each prompt once, followed by its candidates' tokens
        assert len(embedded) == 1 and embedded[0][0] == 3
        assert embedded[0][1] <= longest_prompt + cand_inputs
    else:  # all prompts once, then only the candidates' tokens from the cache
        assert embedded[0] == (3, longest_prompt)
        assert embedded[1][0] == 3 * 6 and embedded[1][1] < 5


def test_prompt_longer_than_context_is_an_error(tiny_llama: str) -> None:
    loaded = load_language_model(tiny_llama)
    scorer = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind)
    long_prompt = "go " * 600
    with pytest.raises(PromptTooLongError, match=r"prompt of 601 tokens plus an action of 2 tokens exceeds .* 512"):
        scorer.score([long_prompt], [[" turn left", " drop"]])


def test_bad_arguments(tiny_llama: str) -> None:
    loaded = load_language_model(tiny_llama)
    with pytest.raises(ValueError, match="normalization must be one of"):
        ActionScorer(loaded.model, loaded.tokenizer, loaded.kind, normalization="mean")
    scorer = ActionScorer(loaded.model, loaded.tokenizer, loaded.kind)
    with pytest.raises(ValueError, match="same number of actions"):
        scorer.score(["a", "b"], [[" drop"], [" drop", " toggle"]])
