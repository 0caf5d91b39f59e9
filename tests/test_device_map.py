"""LLMPolicy with a ``device_map``: the LM placed by transformers/accelerate, not by ``policy.to``.

On a machine without two GPUs the split cannot be real, so the tests dispatch the tiny
models with accelerate's hooks on one CPU (``hooked`` fixture): transformers installs the
hooks only over several devices, and these are the very hooks a multi-GPU map gets —
inputs moved to each block's execution device, outputs brought back to the input's.
``test_two_gpu_split`` runs the real split where two CUDA devices exist.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import pytest
import torch
from accelerate import dispatch_model
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import llm_policy.models as models
from llm_policy import LLMPolicy
from llm_policy.finetuning import transformer_blocks
from llm_policy.models import DeviceMapError, load_language_model
from tests.helpers import text_batch

ENV_ID = "BabyAI-Text-GoTo-v0"

# every block and every other top-level module of the tiny models on its own entry
LLAMA_MAP = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "cpu",
    "model.layers.2": "cpu",
    "model.norm": "cpu",
    "lm_head": "cpu",
}
T5_MAP = {
    "shared": "cpu",
    "encoder": "cpu",
    "decoder.embed_tokens": "cpu",
    "decoder.block.0": "cpu",
    "decoder.block.1": "cpu",
    "decoder.block.2": "cpu",
    "decoder.final_layer_norm": "cpu",
    "lm_head": "cpu",
}


class _ForceHooks:
    """An ``AutoModel...`` whose ``from_pretrained`` dispatches a dict map with hooks even on one device."""

    def __init__(self, auto: Any) -> None:
        self.auto = auto

    def from_pretrained(self, *args: Any, device_map: Any = None, **kwargs: Any) -> Any:
        model = self.auto.from_pretrained(*args, device_map=device_map, **kwargs)
        if isinstance(device_map, dict) and not hasattr(model, "hf_device_map"):
            dispatch_model(model, device_map, force_hooks=True)
        return model


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "AutoModelForCausalLM", _ForceHooks(models.AutoModelForCausalLM))
    monkeypatch.setattr(models, "AutoModelForSeq2SeqLM", _ForceHooks(models.AutoModelForSeq2SeqLM))


@pytest.fixture(params=["llama", "t5"])
def family(request: pytest.FixtureRequest, tiny_llama: str, tiny_t5: str) -> tuple[str, dict[str, str]]:
    """A tiny model's directory and its per-module map."""
    return (tiny_llama, LLAMA_MAP) if request.param == "llama" else (tiny_t5, T5_MAP)


def make_ppo(model: str, device: str = "cpu", **policy_kwargs: Any) -> PPO:
    env = DummyVecEnv([lambda: gym.make(ENV_ID)] * 2)
    return PPO(
        LLMPolicy,
        env,
        n_steps=8,
        batch_size=8,
        n_epochs=2,
        seed=0,
        device=device,
        policy_kwargs={"model": model, **policy_kwargs},
    )


def observations(policy: LLMPolicy, n: int = 3) -> dict[str, torch.Tensor]:
    return policy.obs_to_tensor(text_batch(n=n))[0]


def outputs(policy: LLMPolicy, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Probabilities, values, and the gradients of one backward through ``evaluate_actions``."""
    policy.zero_grad()
    actions = torch.arange(len(obs["mission"]), device=policy.device)
    values, log_prob, entropy = policy.evaluate_actions(obs, actions)
    (values.sum() + log_prob.sum() + entropy.sum()).backward()
    grads = tuple(p.grad.detach().cpu() for _, p in sorted(policy.named_parameters()) if p.grad is not None)
    return (policy.action_probabilities(obs).cpu(), policy.predict_values(obs).detach().cpu(), *grads)


def assert_same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], tol: float = 0.0) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=tol, rtol=tol)


def is_hooked(policy: LLMPolicy) -> bool:
    hf = policy.scorer.model
    return hasattr(hf, "hf_device_map") and all(hasattr(b, "_hf_hook") for b in transformer_blocks(hf))


# --- same results as the plain policy ------------------------------------------------------


def test_single_device_map_matches_plain(family: tuple[str, dict[str, str]]) -> None:
    model, _ = family
    plain = make_ppo(model).policy
    placed = make_ppo(model, device_map={"": "cpu"}).policy
    obs = observations(plain)
    assert_same(outputs(placed, obs), outputs(plain, obs))
    assert placed.device == torch.device("cpu")


@pytest.mark.parametrize("finetune", ["full", "lora", "top_k", "frozen"])
def test_hooked_map_matches_plain(hooked: None, family: tuple[str, dict[str, str]], finetune: str) -> None:
    """Probabilities, values and gradients are those of the plain policy, hooks and all."""
    model, device_map = family
    plain = make_ppo(model, finetune=finetune).policy
    placed = make_ppo(model, finetune=finetune, device_map=device_map).policy
    assert is_hooked(placed) and placed.scorer.model.hf_device_map == device_map
    if finetune == "top_k" and device_map is LLAMA_MAP:
        assert placed.scorer.lower_cache is not None  # the frozen-block cache probed exact through the hooks
    obs = observations(plain)
    with torch.no_grad():
        placed(obs), plain(obs)  # a rollout: fills the frozen-block cache in top_k mode
    assert_same(outputs(placed, obs), outputs(plain, obs))


def test_cache_strategy_with_a_hooked_map(hooked: None, tiny_llama: str) -> None:
    """The prompt's keys/values, cached in each block's layer, are reused through the hooks."""
    plain = make_ppo(tiny_llama, scoring_strategy="cache").policy
    placed = make_ppo(tiny_llama, scoring_strategy="cache", device_map=LLAMA_MAP).policy
    obs = observations(plain)
    assert_same(outputs(placed, obs), outputs(plain, obs))


def test_stock_ppo_learns_with_a_hooked_map(hooked: None, tiny_llama: str) -> None:
    model = make_ppo(tiny_llama, device_map=LLAMA_MAP, micro_batch_size=8, gradient_checkpointing=True)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(16)
    assert model.num_timesteps == 16 and is_hooked(model.policy)
    after = model.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("lm."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("value_net."))


def test_to_moves_only_the_value_head(hooked: None, tiny_llama: str) -> None:
    """SB3's policy.to(device) must leave the LM where the device_map put it (here: its dtype shows it)."""
    placed = make_ppo(tiny_llama, device_map=LLAMA_MAP).policy
    plain = make_ppo(tiny_llama).policy
    for policy in (placed, plain):
        policy.to(torch.float64)
        assert {p.dtype for p in policy.value_net.parameters()} == {torch.float64}
    assert {p.dtype for p in placed.lm.parameters()} == {torch.float32} and is_hooked(placed)
    assert {p.dtype for p in plain.lm.parameters()} == {torch.float64}


# --- saving, loading, pickling -------------------------------------------------------------


def test_save_load_round_trip(hooked: None, family: tuple[str, dict[str, str]], tmp_path) -> None:
    model_name, device_map = family
    model = make_ppo(model_name, finetune="lora", device_map=device_map)
    model.learn(16)
    obs = observations(model.policy)
    probs = model.policy.action_probabilities(obs)
    model.save(tmp_path / "agent")
    loaded = PPO.load(tmp_path / "agent", env=model.get_env(), device="cpu")
    assert is_hooked(loaded.policy) and loaded.policy.device_map == device_map
    torch.testing.assert_close(loaded.policy.action_probabilities(obs), probs, atol=0, rtol=0)

    model.policy.save(tmp_path / "policy.pt")
    alone = LLMPolicy.load(tmp_path / "policy.pt", device="cpu")
    assert is_hooked(alone)
    torch.testing.assert_close(alone.action_probabilities(obs), probs, atol=0, rtol=0)

    for copied in (copy.deepcopy(model.policy), torch.load(_saved(model.policy, tmp_path), weights_only=False)):
        assert is_hooked(copied) and copied.device_map == device_map
        torch.testing.assert_close(copied.action_probabilities(obs), probs, atol=0, rtol=0)


def _saved(policy: LLMPolicy, tmp_path) -> str:
    path = str(tmp_path / "pickled.pt")
    torch.save(policy, path)
    return path


def test_constructor_parameters_keep_the_placement(tiny_llama: str) -> None:
    policy = make_ppo(tiny_llama, device_map="auto", max_memory={"cpu": "1GiB"}).policy
    data = policy._get_constructor_parameters()
    assert data["device_map"] == "auto" and data["max_memory"] == {"cpu": "1GiB"}


def test_plain_checkpoint_loads_with_a_device_map(hooked: None, tiny_llama: str, tmp_path) -> None:
    """An agent trained without a device_map is placed by one at load (SB3's custom_objects)."""
    model = make_ppo(tiny_llama)
    obs = observations(model.policy)
    model.save(tmp_path / "agent")
    kwargs = {**model.policy_kwargs, "device_map": LLAMA_MAP}
    loaded = PPO.load(tmp_path / "agent", env=model.get_env(), custom_objects={"policy_kwargs": kwargs})
    assert is_hooked(loaded.policy)
    torch.testing.assert_close(
        loaded.policy.action_probabilities(obs), model.policy.action_probabilities(obs), atol=0, rtol=0
    )


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device_map": {"": "cpu", "model.layers.2": "disk"}}, r"would offload \['model.layers.2'\]"),
        ({"device_map": {"": 0, "lm_head": "cpu"}}, r"would offload \['lm_head'\].*next to accelerator"),
        ({"device_map": "disk"}, r"would offload \['\(the whole model\)'\]"),
        ({"device_map": "auto", "pretrained": False}, r"pretrained=False.*save_pretrained"),
        ({"max_memory": {0: "10GiB"}}, "max_memory bounds what a planned device_map"),
        ({"device_map": {"": 0}, "max_memory": {0: "10GiB"}}, "it would be ignored"),
        ({"device_map": "auto", "max_memory": "10GiB"}, "max_memory must be a dict"),
        ({"device_map": {"": "meta"}}, "not a device that can hold weights"),
        ({"device_map": "gpu please"}, "not a device that can hold weights"),
        ({"device_map": -1}, "index must be >= 0"),
        ({"device_map": {}}, "a dict device_map maps module names"),
        ({"device_map": ["cpu"]}, "device_map must be one of"),
    ],
)
def test_refused_before_loading(kwargs: dict[str, Any], match: str) -> None:
    # a model that does not exist: each error comes before any loading is tried
    with pytest.raises(DeviceMapError, match=match):
        make_ppo("no-such-model-anywhere", **kwargs)


def test_offloading_planner_is_refused(tiny_llama: str) -> None:
    """A planner that offloads (here: no memory anywhere) is refused once it has placed the weights."""
    with pytest.raises(DeviceMapError, match=r"device_map='auto'.* offload.*give every module a GPU"):
        load_language_model(tiny_llama, device_map="auto", max_memory={"cpu": 1000})


# --- a real split ----------------------------------------------------------------------------

_TWO_GPUS = torch.cuda.is_available() and torch.cuda.device_count() >= 2


def _split(device_map: dict[str, str], first: Callable[[str], bool]) -> dict[str, int]:
    return {name: 0 if first(name) else 1 for name in device_map}


@pytest.mark.skipif(not _TWO_GPUS, reason="needs 2 CUDA devices")
@pytest.mark.parametrize("finetune", ["full", "top_k"])
def test_two_gpu_split(family: tuple[str, dict[str, str]], finetune: str) -> None:
    """Blocks on cuda:0 and cuda:1 (the tied embeddings and output layer on 0): the scores of one device, and PPO."""
    model_name, device_map = family
    on_first = ("model.embed_tokens", "model.rotary_emb", "model.layers.0", "lm_head", "shared", "encoder")
    split = _split(device_map, lambda name: name in on_first or name == "decoder.embed_tokens")
    kwargs = {"finetune": finetune, "autocast": False}
    single = make_ppo(model_name, device="cuda", **kwargs)
    model = make_ppo(model_name, device="cuda", device_map=split, **kwargs)
    assert {p.device.index for p in model.policy.lm.parameters()} == {0, 1}
    obs = observations(model.policy)
    assert_same(outputs(model.policy, obs), outputs(single.policy, obs), tol=1e-5)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(32)  # two rollouts of 16 steps, one update each
    after = model.policy.state_dict()
    changed = {after[k].device.index for k in before if k.startswith("lm.") and not torch.equal(before[k], after[k])}
    assert changed == ({0, 1} if finetune == "full" else {1})  # top_k: the top blocks, all on cuda:1
    assert model.policy.device == torch.device("cuda", 0) and is_hooked(model.policy)
