"""Model-family conformance: LLMPolicy scores every action correctly on any model family.

Correct means: a candidate's tokens are those that the tokenization of ``prompt + candidate``
gives after the prompt's own tokens; its score is the sum over those tokens of the
log-softmax over the vocabulary (divided by the token count for ``"token"``, by the word
count for ``"word"``; the EOS token after the action is scored too with ``score_eos``);
the policy is the softmax over the actions' scores.

The families (``tests/model_families.py``) are tiny random models with tokenizers trained
here but built like the real families' (SentencePiece with and without a dummy prefix,
byte-level BPE with each regex, Unigram), so tokenization conventions that a word-level
test tokenizer hides are exercised.  The reference below is slow and independent of the
scorer: one plain forward per (prompt, action).  It is checked for every fine-tuning
mode, with the frozen-block cache of ``top_k`` too, for gradients, save/load, PPO's
rollout-versus-update consistency and the cache's invalidation when weights change.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
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
from tests.conftest import text_batch
from tests.model_families import CAUSAL_FAMILIES, FAMILIES, build_family, corpus, raw_tokenizer

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


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory: pytest.TempPathFactory):
    """``family_dir(name)``: the saved tiny model of that family (built once per session)."""
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            built[name] = str(build_family(name, tmp_path_factory.mktemp(f"family-{name}")))
        return built[name]

    return get


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


def _as_if_trained(policy: LLMPolicy, mode: str) -> None:
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
    _as_if_trained(policy, mode)
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

ACTIONS = torch.tensor([2, 0, 5])


def _gradients(policy: LLMPolicy, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """Gradients of a PPO-like loss (log-probabilities, values and entropy, unevenly weighted)."""
    policy.zero_grad(set_to_none=True)
    values, log_prob, entropy = policy.evaluate_actions(obs, ACTIONS)
    loss = (log_prob * torch.tensor([0.7, -1.3, 0.4])).sum() + (values.flatten() * torch.tensor([0.5, 0.2, -0.9])).sum()
    (loss - 0.1 * entropy.sum()).backward()
    return {name: None if p.grad is None else p.grad.clone() for name, p in trainable(policy).items()}


def _assert_same_gradients(got: dict, expected: dict, what: str) -> None:
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


@pytest.mark.parametrize("family", CAUSAL_FAMILIES)
def test_cached_top_k_gradients_equal_uncached(family_dir, family: str) -> None:
    path = family_dir(family)
    obs = observations()
    plain = make_policy(path, "top_k")
    x = obs_tensor(plain, obs)
    expected = _gradients(plain, x)

    # the first update after construction, nothing cached yet
    first = make_policy(path, "top_k-cache")
    first.load_state_dict(plain.state_dict())
    _assert_same_gradients(_gradients(first, x), expected, f"{family}: first update after construction")
    _assert_same_gradients(_gradients(first, x), expected, f"{family}: second update")

    # a rollout (no grad, one or two envs at a time) fills the cache; then update epochs reuse it
    cached = make_policy(path, "top_k-cache")
    cached.load_state_dict(plain.state_dict())
    with torch.no_grad():
        cached(obs_tensor(cached, {k: v[:2] for k, v in obs.items()}))
        cached(obs_tensor(cached, {k: v[2:] for k, v in obs.items()}))
    for epoch in range(2):
        _assert_same_gradients(_gradients(cached, x), expected, f"{family}: update epoch {epoch} after a rollout")


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
    _as_if_trained(model.policy, mode)
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
    _as_if_trained(model.policy, mode)
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
