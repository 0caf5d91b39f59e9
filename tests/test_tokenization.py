"""Action tokens are what the model reads after the prompt; boundary merges are refused."""

from __future__ import annotations

import pytest

from llm_policy import load_language_model
from llm_policy.tokenization import ActionTokenizer, TokenizationBoundaryError


def test_candidates_are_the_joint_tokens_after_the_prompt(tiny_llama: str) -> None:
    tok = load_language_model(tiny_llama).tokenizer
    tokens = ActionTokenizer(tok, "causal")
    prompt = "Goal of the agent: go to the red ball\nAction 0:"
    prompt_ids, cands = tokens(prompt, [" turn left", " go forward"])
    assert prompt_ids == tok(prompt).input_ids  # BOS from the tokenizer's post-processor
    for cand, ids in zip([" turn left", " go forward"], cands, strict=True):
        assert prompt_ids + ids == tok(prompt + cand).input_ids


def test_batch_equals_one_by_one_and_is_cached(tiny_llama: str) -> None:
    tok = load_language_model(tiny_llama).tokenizer
    prompts = ["Goal of the agent: go to the red ball\nAction 0:", "Goal of the agent: pick up a key\nAction 0:"]
    cands = [[" turn left", " drop"], [" toggle", " pick up"]]
    batched = ActionTokenizer(tok, "causal").batch(prompts, cands)
    single = ActionTokenizer(tok, "causal")
    assert batched == [single(p, c) for p, c in zip(prompts, cands, strict=True)]
    assert single(prompts[0], cands[0]) is single(prompts[0], cands[0])


def test_eos_is_appended_when_scored(tiny_llama: str) -> None:
    tok = load_language_model(tiny_llama).tokenizer
    _, cands = ActionTokenizer(tok, "causal", eos_id=tok.eos_token_id)("Action 0:", [" drop"])
    assert cands[0][-1] == tok.eos_token_id


def test_seq2seq_prompt_keeps_its_eos_and_actions_are_decoder_tokens(tiny_t5: str) -> None:
    tok = load_language_model(tiny_t5).tokenizer
    prompt_ids, cands = ActionTokenizer(tok, "seq2seq")("Action 0:", [" turn left"])
    assert prompt_ids == tok("Action 0:").input_ids and prompt_ids[-1] == tok.eos_token_id
    assert cands == [tok("turn left", add_special_tokens=False).input_ids]


def test_a_merge_across_the_boundary_is_an_error(tiny_llama: str) -> None:
    """Word-level: "go" + "al" reads as the single word "goal", not "go" followed by "al"."""
    tok = load_language_model(tiny_llama).tokenizer
    with pytest.raises(TokenizationBoundaryError, match=r"merges the end of the prompt with the action 'al'.*boundary"):
        ActionTokenizer(tok, "causal", model_name="tiny")("Goal of the agent: go", ["al"])


def test_an_action_of_no_tokens_is_an_error(tiny_llama: str) -> None:
    tok = load_language_model(tiny_llama).tokenizer
    with pytest.raises(ValueError, match="tokenizes to nothing"):
        ActionTokenizer(tok, "causal")("Action 0:", [" "])
