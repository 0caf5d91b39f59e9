"""Model-family conformance: LLMPolicy scores every action correctly on any model family.

Correct means: a candidate's tokens are those that the tokenization of ``prompt + candidate``
gives after the prompt's own tokens; its score is the sum over those tokens of the
log-softmax over the vocabulary (divided by the token count for ``"token"``, by the word
count for ``"word"``; the EOS token after the action is scored too with ``score_eos``);
the policy is the softmax over the actions' scores.

The families (``tests/helpers/model_families.py``) are tiny random models with tokenizers trained
here but built like the real families' (SentencePiece with and without a dummy prefix,
byte-level BPE with each regex, Unigram), so tokenization conventions that a word-level
test tokenizer hides are exercised.  The reference below is slow and independent of the
scorer: one plain forward per (prompt, action).  It is checked for every fine-tuning
mode, with the frozen-block cache of ``top_k`` too, for gradients, save/load, PPO's
rollout-versus-update consistency and the cache's invalidation when weights change.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv
from transformers import AutoTokenizer

from babyai_text import decode_batch
from llm_policy import STRATEGIES, LLMPolicy, PromptTemplate
from tests.helpers.family_reference import (
    ATOL,
    CASES,
    MODES,
    PPO_ENV_ID,
    as_if_trained,
    assert_same_gradients,
    assert_scores_match,
    gradients,
    make_policy,
    obs_tensor,
    observations,
    reference,
    trainable,
)
from tests.helpers.model_families import CAUSAL_FAMILIES, FAMILIES, corpus, raw_tokenizer

# --- builders ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "word"])
def test_saved_tokenizer_keeps_the_family_pipeline(family_dir, family: str) -> None:
    """What AutoTokenizer loads (as LLMPolicy does) tokenizes prompts as the family's tokenizer.json."""
    tok = AutoTokenizer.from_pretrained(family_dir(family))
    raw = raw_tokenizer(family)
    texts = list(corpus()[::40])
    for text in texts:
        assert tok(text).input_ids == raw.encode(text).ids, text[:80]
    sample = tok(texts[0]).input_ids
    starts = {
        "llama2": "<s>",
        "llama2-hf": "<s>",
        "llama3": "<|begin_of_text|>",
        "gemma": "<bos>",
    }
    if family in starts:
        assert tok.convert_ids_to_tokens(sample[0]) == starts[family] == tok.bos_token
        assert sample.count(sample[0]) == 1
    else:
        assert sample[0] not in tok.all_special_ids
    if family == "t5":
        assert sample[-1] == tok.eos_token_id and tok.eos_token == "</s>" and tok.pad_token_id == 0
    else:
        assert sample[-1] not in tok.all_special_ids
    assert tok.eos_token_id is not None
    if family in ("llama2", "llama2-hf", "llama3"):
        assert tok.pad_token is None  # as the real ones: the scorer must not need one


def test_llama2_tokenizer_prepends_a_lone_dummy_prefix(family_dir) -> None:
    """The bug the suite must catch: an action tokenized alone starts with a spurious "▁"."""
    tok = AutoTokenizer.from_pretrained(family_dir("llama2"))
    alone = tok.convert_ids_to_tokens(tok(" turn left", add_special_tokens=False).input_ids)
    assert alone[0] == "▁" and len(alone) > 1
    prompt = PromptTemplate().render(decode_batch(observations())[0])
    prompt_ids = tok(prompt).input_ids
    joint = tok(prompt + " turn left").input_ids
    assert joint[: len(prompt_ids)] == prompt_ids
    assert tok.convert_ids_to_tokens(joint[len(prompt_ids) :]) == alone[1:]


def test_llama_tokenizer_class_rebuilds_the_pipeline(family_dir) -> None:
    """transformers 5: a checkpoint declaring ``LlamaTokenizer`` gets a Metaspace pre-tokenizer, not its
    tokenizer.json's Prepend normalizer, so the same files tokenize a lone action without the "▁"."""
    tok = AutoTokenizer.from_pretrained(family_dir("llama2-hf"))
    alone = tok.convert_ids_to_tokens(tok(" turn left", add_special_tokens=False).input_ids)
    raw = raw_tokenizer("llama2-hf").encode(" turn left", add_special_tokens=False).tokens
    assert raw[0] == "▁" and alone == raw[1:]


@pytest.mark.parametrize("family", FAMILIES)
def test_models_are_tiny_and_fit_the_prompts(family_dir, family: str) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(family_dir(family))
    hidden = getattr(config, "hidden_size", None) or config.d_model
    layers = getattr(config, "num_hidden_layers", None) or config.num_layers
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    assert hidden <= 64 and 2 <= layers <= 4 and 100 <= config.vocab_size <= 1000
    assert family in ("word", "t5") or positions >= 1024  # T5: relative positions; word: short prompts
    policy = make_policy(family_dir(family), "full")
    lengths = reference(policy, family_dir(family), observations()).prompt_lengths
    assert len(set(lengths)) == len(lengths)  # different prompt lengths: padding and buckets are exercised


# --- a. scores --------------------------------------------------------------------------


def _scoring_options(family: str, mode: str) -> list[dict[str, Any]]:
    """Normalizations, EOS, one padded bucket (max_padding=1) and the KV-cache strategy."""
    options: list[dict[str, Any]] = [
        {"normalization": "sum", "score_eos": False},
        {"normalization": "token", "score_eos": True, "max_padding": 1.0},
    ]
    if mode == "full":
        options += [
            {"normalization": "sum", "score_eos": True},
            {"normalization": "token", "score_eos": False},
            {"normalization": "word", "score_eos": False},
            {"normalization": "word", "score_eos": True},
        ]
        if family in CAUSAL_FAMILIES and "cache" in STRATEGIES:
            options.append({"normalization": "sum", "score_eos": True, "scoring_strategy": "cache"})
    return options


@pytest.mark.parametrize(("family", "mode"), CASES)
def test_action_scores_equal_reference(family_dir, family: str, mode: str) -> None:
    path = family_dir(family)
    obs = observations()
    ref = None
    for options in _scoring_options(family, mode):
        normalization, score_eos = options["normalization"], options["score_eos"]
        policy = make_policy(path, mode, **options)
        if ref is None:
            ref = reference(policy, path, obs)
        x = obs_tensor(policy, obs)
        # top_k with the cache: the rollout (no grad) fills it, the update (grad) reuses it
        grads = [False, True] if mode == "top_k-cache" else [False]
        for grad in grads:
            with torch.set_grad_enabled(grad):
                out = policy.score(x)
            what = f"{family}/{mode} {options} ({'update' if grad else 'rollout'})"
            assert out.scores.dtype == torch.float32
            assert_scores_match(out.scores, ref, normalization, score_eos, what)
            torch.testing.assert_close(out.hidden.detach(), ref.hidden, atol=ATOL, rtol=1e-4, msg=what + ": hidden")
        expected = torch.softmax(torch.from_numpy(ref.scores(normalization, score_eos)), dim=-1)
        probs = policy.action_probabilities(x).double()
        torch.testing.assert_close(probs, expected, atol=ATOL, rtol=0)


# --- b. gradients with the frozen-block cache -------------------------------------------

@pytest.mark.parametrize("family", CAUSAL_FAMILIES)
def test_cached_top_k_gradients_equal_uncached(family_dir, family: str) -> None:
    path = family_dir(family)
    obs = observations()
    plain = make_policy(path, "top_k")
    x = obs_tensor(plain, obs)
    expected = gradients(plain, x)

    # the first update after construction, nothing cached yet
    first = make_policy(path, "top_k-cache")
    first.load_state_dict(plain.state_dict())
    assert_same_gradients(gradients(first, x), expected, f"{family}: first update after construction")
    assert_same_gradients(gradients(first, x), expected, f"{family}: second update")

    # a rollout (no grad, one or two envs at a time) fills the cache; then update epochs reuse it
    cached = make_policy(path, "top_k-cache")
    cached.load_state_dict(plain.state_dict())
    with torch.no_grad():
        cached(obs_tensor(cached, {k: v[:2] for k, v in obs.items()}))
        cached(obs_tensor(cached, {k: v[2:] for k, v in obs.items()}))
    for epoch in range(2):
        assert_same_gradients(gradients(cached, x), expected, f"{family}: update epoch {epoch} after a rollout")


# --- c. save / load ---------------------------------------------------------------------


def _perturb_trainable(policy: LLMPolicy, seed: int = 1) -> None:
    """Change every trainable LM weight a little, as an update would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in trainable(policy).items():
            if name.startswith("lm."):
                param.add_(0.02 * torch.randn(param.shape, generator=generator))


@pytest.mark.parametrize(("family", "mode"), CASES)
def test_save_load_round_trip(family_dir, family: str, mode: str, tmp_path) -> None:
    env = DummyVecEnv([lambda: gym.make(PPO_ENV_ID)])
    kwargs = {"model": family_dir(family), "value_head": (16,), **MODES[mode]}
    model = PPO(LLMPolicy, env, n_steps=8, batch_size=8, seed=0, policy_kwargs=kwargs)
    as_if_trained(model.policy, mode)
    _perturb_trainable(model.policy)
    x = obs_tensor(model.policy, observations())
    probs = model.policy.action_probabilities(x)
    if mode == "top_k-cache":
        probs = model.policy.action_probabilities(x)  # from the cache
    model.save(tmp_path / "agent")
    loaded = PPO.load(tmp_path / "agent", env=env)
    exact = 1e-6 if mode == "top_k-cache" else 0.0  # cached and full forwards may round differently
    torch.testing.assert_close(loaded.policy.action_probabilities(x), probs, atol=exact, rtol=0)


# --- d. rollout / update consistency in stock PPO ---------------------------------------


class _Records(KVWriter):
    """An in-memory SB3 logger output: every dump's values."""

    def __init__(self) -> None:
        self.dumps: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        self.dumps.append(dict(key_values))

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("family", "mode"), CASES)
def test_ppo_update_sees_the_rollout_policy(family_dir, family: str, mode: str) -> None:
    """With a zero learning rate the update's log-probabilities are the rollout's: KL 0, nothing clipped."""
    env = DummyVecEnv([lambda: gym.make(PPO_ENV_ID)] * 2)
    # lm_learning_rate=None: the LM follows PPO's rate (0) rather than a rate of its own
    kwargs = {"model": family_dir(family), "value_head": (16,), "lm_learning_rate": None, **MODES[mode]}
    model = PPO(LLMPolicy, env, learning_rate=0.0, n_steps=8, batch_size=8, n_epochs=2, seed=0, policy_kwargs=kwargs)
    as_if_trained(model.policy, mode)
    records = _Records()
    model.set_logger(Logger(folder=None, output_formats=[records]))
    model.learn(16)  # one rollout of 2 envs x 8 steps, one update of 2 epochs x 2 minibatches
    model.logger.dump(model.num_timesteps)  # SB3 dumps an update's values only at the next rollout's end
    updates = [d for d in records.dumps if "train/approx_kl" in d]
    assert len(updates) == 1
    for values in updates:
        assert abs(values["train/approx_kl"]) < 1e-6, values
        assert values["train/clip_fraction"] == 0, values
    # sharper: the whole last rollout, scored again in one batch, gives the stored log-probs and values
    data = next(model.rollout_buffer.get(batch_size=None))
    values, log_prob, _ = model.policy.evaluate_actions(data.observations, data.actions.long().flatten())
    torch.testing.assert_close(log_prob.detach(), data.old_log_prob, atol=1e-5, rtol=0)
    torch.testing.assert_close(values.detach().flatten(), data.old_values, atol=1e-5, rtol=0)


# --- e. the frozen-block cache follows the weights --------------------------------------


def _other_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict whose frozen (lower) weights differ from the checkpoint's."""
    donor = make_policy(path, "top_k")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in donor.parameters():
            if not param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return {k: v.clone() for k, v in donor.state_dict().items()}


def _fresh_probabilities(path: str, state: dict[str, torch.Tensor], obs: dict[str, np.ndarray]) -> torch.Tensor:
    fresh = make_policy(path, "top_k")
    fresh.load_state_dict(state)
    return fresh.action_probabilities(obs_tensor(fresh, obs))


@pytest.mark.parametrize("family", CAUSAL_FAMILIES)
def test_cache_follows_loaded_weights(family_dir, family: str) -> None:
    path = family_dir(family)
    obs = observations()
    other = _other_weights(path)
    expected = _fresh_probabilities(path, other, obs)

    cached = make_policy(path, "top_k-cache")
    x = obs_tensor(cached, obs)
    with torch.no_grad():
        cached(x)  # the rollout fills the cache
        cached(x)  # the update reuses it
    before = cached.action_probabilities(x)
    assert not torch.allclose(before, expected, atol=1e-4)  # the new weights do change the policy
    cached.load_state_dict(other)
    torch.testing.assert_close(
        cached.action_probabilities(x), expected, atol=1e-6, rtol=0, msg=f"{family}: after load_state_dict"
    )

    env = DummyVecEnv([lambda: gym.make(PPO_ENV_ID)])
    kwargs = {"model": path, "value_head": (16,), **MODES["top_k-cache"]}
    model = PPO(LLMPolicy, env, n_steps=8, batch_size=8, seed=0, policy_kwargs=kwargs)
    with torch.no_grad():
        model.policy(x)
        model.policy(x)
    model.set_parameters({"policy": other}, exact_match=False)
    torch.testing.assert_close(
        model.policy.action_probabilities(x), expected, atol=1e-6, rtol=0, msg=f"{family}: after PPO.set_parameters"
    )
