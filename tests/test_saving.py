"""Saved agents hold what was trained: adapters or top blocks + value head, the frozen base by name and hash."""

from __future__ import annotations

import copy
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn
from transformers import AutoModelForCausalLM

from glam_experiments.checkpoints import TrainingState, load_checkpoint, save_checkpoint
from llm_policy import LLMPolicy
from llm_policy import policy as policy_module
from llm_policy.saving import BASE_RECORD_KEY, BaseWeightsMismatchError, base_record, frozen_weights_hash
from tests.helpers import text_batch

ENV_ID = "BabyAI-Text-GoToS5N2-v0"
MODES: dict[str, dict[str, Any]] = {
    "full": {"finetune": "full"},
    "lora": {"finetune": "lora", "lora_kwargs": {"r": 4}},
    "top_k": {"finetune": "top_k", "top_k": 1},
    "frozen": {"finetune": "frozen"},
}
# what each mode's save holds besides the value head (the tiny Llama has 3 blocks, tied embeddings)
SAVED_LM = {
    "lora": lambda key: "lora_" in key,
    "top_k": lambda key: key.startswith(("lm.model.layers.2.", "lm.model.norm.")),
    "frozen": lambda key: False,
}


def make_ppo(model: str, mode: str, **policy_kwargs: Any) -> PPO:
    env = DummyVecEnv([lambda: gym.make(ENV_ID)])
    # the LM at PPO's rate (not 1e-6): a few steps make the adapters and blocks differ visibly
    kwargs = {"model": model, "value_head": (16,), "lm_learning_rate": None, **MODES[mode], **policy_kwargs}
    return PPO(LLMPolicy, env, n_steps=8, batch_size=8, n_epochs=1, learning_rate=1e-2, seed=0, policy_kwargs=kwargs)


def trained(model: str, mode: str, **policy_kwargs: Any) -> PPO:
    agent = make_ppo(model, mode, **policy_kwargs)
    agent.learn(8)  # one update
    return agent


def obs_of(policy: LLMPolicy) -> dict[str, torch.Tensor]:
    return policy.obs_to_tensor(text_batch(ENV_ID, n=3))[0]


def zip_member(path: Path, member: str) -> Any:
    with zipfile.ZipFile(path) as archive, archive.open(member) as f:
        return torch.load(f, weights_only=True)


def whole_state(policy: LLMPolicy) -> dict[str, torch.Tensor]:
    return nn.Module.state_dict(policy)


@pytest.mark.parametrize("mode", list(MODES))
def test_save_holds_what_was_trained_and_loads_identically(tiny_llama: str, mode: str, tmp_path: Path) -> None:
    agent = trained(tiny_llama, mode)
    policy: LLMPolicy = agent.policy
    obs = obs_of(policy)
    probs = policy.action_probabilities(obs)
    if mode != "frozen":  # the LM did train: the save must carry it
        untrained = make_ppo(tiny_llama, mode).policy.action_probabilities(obs)
        assert not torch.allclose(probs, untrained, atol=1e-4)
    agent.save(tmp_path / "agent.zip")

    saved = zip_member(tmp_path / "agent.zip", "policy.pth")
    everything = whole_state(policy)
    record = base_record(saved)
    if mode == "full":
        assert saved.keys() == everything.keys() and record is None
    else:
        expected = {k for k in everything if k.startswith("value_net.") or SAVED_LM[mode](k)}
        assert set(saved) == expected
        assert not any("base_layer" in k or "embed_tokens" in k for k in saved)
        assert record == {
            "format": 1,
            "model": tiny_llama,
            "sha256": policy.base_weights_hash(),
            "tensors": len(everything) - len(expected),
        }
    # Adam's state covers the trained parameters only
    optimizer = zip_member(tmp_path / "agent.zip", "policy.optimizer.pth")
    n_trainable = sum(p.requires_grad for p in policy.parameters())
    assert sum(len(group["params"]) for group in optimizer["param_groups"]) == n_trainable
    assert len(optimizer["state"]) == n_trainable
    assert all(p.requires_grad for group in policy.optimizer.param_groups for p in group["params"])

    loaded = PPO.load(tmp_path / "agent.zip")  # no extra arguments
    torch.testing.assert_close(loaded.policy.action_probabilities(obs), probs, atol=0, rtol=0)
    # the loaded agent saves the same keys again (its frozen weights are still the files')
    assert loaded.policy.state_dict().keys() == saved.keys()


def frozen_bytes(policy: LLMPolicy) -> int:
    return sum(t.numel() * t.element_size() for t in policy.frozen_tensors().values())


def test_lora_save_leaves_the_base_out(tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = trained(tiny_llama, "lora")
    agent.save(tmp_path / "agent.zip")
    with monkeypatch.context() as patch:  # the save format before compact saves: every weight
        patch.setattr(LLMPolicy, "state_dict", nn.Module.state_dict)
        agent.save(tmp_path / "whole.zip")

    def size(path: Path) -> int:
        return zipfile.ZipFile(path).getinfo("policy.pth").file_size

    assert size(tmp_path / "agent.zip") < size(tmp_path / "whole.zip") - frozen_bytes(agent.policy) * 0.9


@pytest.mark.parametrize(
    ("mode", "changed", "raises"),
    [
        ("lora", "model.layers.0.mlp.up_proj.weight", True),
        ("top_k", "model.layers.0.mlp.up_proj.weight", True),  # a frozen lower block
        ("top_k", "model.embed_tokens.weight", True),
        ("top_k", "model.layers.2.mlp.up_proj.weight", False),  # the trained block: saved, not the files'
        ("full", "model.layers.0.mlp.up_proj.weight", False),
    ],
)
def test_changed_base_weights_are_refused(
    tiny_llama: str, tmp_path: Path, mode: str, changed: str, raises: bool
) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    agent = trained(str(base), mode)
    obs = obs_of(agent.policy)
    probs = agent.policy.action_probabilities(obs)
    agent.save(tmp_path / "agent.zip")
    saved_hash = agent.policy.base_weights_hash()

    # the model's files change after the save
    lm = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        lm.get_parameter(changed).add_(0.01)
    lm.save_pretrained(base)

    if not raises:
        loaded = PPO.load(tmp_path / "agent.zip")
        torch.testing.assert_close(loaded.policy.action_probabilities(obs), probs, atol=0, rtol=0)
        return
    with pytest.raises(BaseWeightsMismatchError) as err:
        PPO.load(tmp_path / "agent.zip")
    message = str(err.value)
    current = make_ppo(str(base), mode).policy.base_weights_hash()
    assert current != saved_hash
    for part in (repr(str(base)), saved_hash, current, "files changed", "custom_objects"):
        assert part in message


def test_old_whole_state_saves_still_load(tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = trained(tiny_llama, "lora")
    obs = obs_of(agent.policy)
    probs = agent.policy.action_probabilities(obs)
    with monkeypatch.context() as patch:  # the save format before compact saves: every weight
        patch.setattr(LLMPolicy, "state_dict", nn.Module.state_dict)
        agent.save(tmp_path / "old.zip")
    assert any("base_layer" in k for k in zip_member(tmp_path / "old.zip", "policy.pth"))
    loaded = PPO.load(tmp_path / "old.zip")
    torch.testing.assert_close(loaded.policy.action_probabilities(obs), probs, atol=0, rtol=0)
    # its frozen weights equal the files': saved again, it is compact
    assert not any("base_layer" in k for k in loaded.policy.state_dict())


def test_get_and_set_parameters(tiny_llama: str, tmp_path: Path) -> None:
    agent = trained(tiny_llama, "top_k")
    obs = obs_of(agent.policy)
    probs = agent.policy.action_probabilities(obs)
    params = agent.get_parameters()
    assert base_record(params["policy"]) is not None and "lm.model.embed_tokens.weight" not in params["policy"]
    other = make_ppo(tiny_llama, "top_k")
    other.set_parameters(params)
    torch.testing.assert_close(other.policy.action_probabilities(obs), probs, atol=0, rtol=0)
    agent.save(tmp_path / "agent.zip")
    third = make_ppo(tiny_llama, "top_k")
    third.set_parameters(str(tmp_path / "agent.zip"))
    torch.testing.assert_close(third.policy.action_probabilities(obs), probs, atol=0, rtol=0)


def test_set_parameters_keeps_the_agents_own_lm_rate(tiny_llama: str, tmp_path: Path) -> None:
    """Weights and Adam's moments from a run at one LM rate, continued at another (recipe_study --init-from)."""
    trained(tiny_llama, "top_k", lm_learning_rate=1e-4).save(tmp_path / "slow.zip")
    faster = make_ppo(tiny_llama, "top_k", lm_learning_rate=1e-3)
    faster.set_parameters(str(tmp_path / "slow.zip"))
    assert [g["lr_scale"] for g in faster.policy.optimizer.param_groups] == pytest.approx([1.0, 1e-3 / 1e-2])
    assert faster.policy.optimizer.state  # the moments came with the weights
    loaded = PPO.load(tmp_path / "slow.zip")  # its own rate, as saved
    assert [g["lr_scale"] for g in loaded.policy.optimizer.param_groups] == pytest.approx([1.0, 1e-4 / 1e-2])


def test_policy_save_pickle_and_deepcopy(tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy: LLMPolicy = trained(tiny_llama, "lora").policy
    obs = obs_of(policy)
    probs = policy.action_probabilities(obs)
    policy.save(tmp_path / "policy.pt")
    alone = LLMPolicy.load(tmp_path / "policy.pt")
    torch.testing.assert_close(alone.action_probabilities(obs), probs, atol=0, rtol=0)
    pickled = pickle.dumps(policy)
    with monkeypatch.context() as patch:  # pickled with every weight, as before compact saves
        patch.setattr(LLMPolicy, "state_dict", nn.Module.state_dict)
        whole = pickle.dumps(policy)
    assert len(pickled) < len(whole) - frozen_bytes(policy) * 0.9  # the base weights are not in the pickle
    for copied in (pickle.loads(pickled), copy.deepcopy(policy)):
        torch.testing.assert_close(copied.action_probabilities(obs), probs, atol=0, rtol=0)


def test_edited_frozen_weights_are_saved(tiny_llama: str, tmp_path: Path) -> None:
    """A policy whose frozen weights no longer are the files' saves them: loading gives the same policy."""
    agent = trained(tiny_llama, "lora")
    with torch.no_grad():
        next(iter(agent.policy.frozen_tensors().values())).add_(0.5)
    obs = obs_of(agent.policy)
    probs = agent.policy.action_probabilities(obs)
    assert agent.policy.state_dict().keys() == whole_state(agent.policy).keys()
    agent.save(tmp_path / "agent.zip")
    loaded = PPO.load(tmp_path / "agent.zip")
    torch.testing.assert_close(loaded.policy.action_probabilities(obs), probs, atol=0, rtol=0)
    # loading weights that differ from the files makes the loaded policy save them too
    assert loaded.policy.state_dict().keys() == whole_state(agent.policy).keys()


def test_random_weights_are_saved_whole(tiny_llama: str, tmp_path: Path) -> None:
    """pretrained=False (NPAE): the base cannot be rebuilt from its name, so everything is saved."""
    agent = make_ppo(tiny_llama, "lora", pretrained=False)
    obs = obs_of(agent.policy)
    probs = agent.policy.action_probabilities(obs)
    assert agent.policy.state_dict().keys() == whole_state(agent.policy).keys()
    agent.save(tmp_path / "agent.zip")
    torch.testing.assert_close(PPO.load(tmp_path / "agent.zip").policy.action_probabilities(obs), probs, atol=0, rtol=0)


def test_hash_is_computed_once(tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = policy_module.frozen_weights_hash
    monkeypatch.setattr(policy_module, "frozen_weights_hash", lambda t: calls.append(1) or real(t))
    agent = trained(tiny_llama, "lora")
    assert not calls  # constructing and training do not hash
    agent.save(tmp_path / "a.zip")
    agent.save(tmp_path / "b.zip")
    agent.policy.state_dict()
    assert len(calls) == 1
    PPO.load(tmp_path / "a.zip").save(tmp_path / "c.zip")  # checked on load, reused by the next save
    assert len(calls) == 2


def test_a_copied_state_dict_needs_its_record(tiny_llama: str) -> None:
    policy: LLMPolicy = make_ppo(tiny_llama, "lora").policy
    state = policy.state_dict()
    assert BASE_RECORD_KEY in state._metadata[""]  # type: ignore[attr-defined]
    other: LLMPolicy = make_ppo(tiny_llama, "lora").policy
    other.load_state_dict(state)
    with pytest.raises(RuntimeError, match=r"(?s)Missing key.*losing state_dict\(\)'s _metadata"):
        other.load_state_dict({k: v.clone() for k, v in state.items()})
    result = other.load_state_dict({k: v.clone() for k, v in state.items()}, strict=False)
    assert set(result.missing_keys) == set(policy.frozen_tensors())
    with pytest.raises(RuntimeError, match="Unexpected key"):
        other.load_state_dict({**state, "nonsense": torch.zeros(1)})


def test_hash_covers_names_dtypes_and_every_byte() -> None:
    a = {"x": torch.arange(6.0).reshape(2, 3), "y": torch.ones(4)}
    digest = frozen_weights_hash(a)
    assert frozen_weights_hash(dict(reversed(list(a.items())))) == digest  # order does not matter
    assert frozen_weights_hash({"x": a["x"].clone(), "y": a["y"]}, max_workers=1) == digest
    b = {"x": a["x"].clone(), "y": a["y"].clone()}
    b["x"][1, 2] += 1e-6
    assert frozen_weights_hash(b) != digest
    assert frozen_weights_hash({"x": a["x"].double(), "y": a["y"]}) != digest
    assert frozen_weights_hash({"x": a["x"].reshape(3, 2), "y": a["y"]}) != digest
    assert frozen_weights_hash({"z": a["x"], "y": a["y"]}) != digest
    tied = torch.randn(5, 3)
    assert frozen_weights_hash({"in": tied, "out": tied}) == frozen_weights_hash({"in": tied, "out": tied.clone()})


def test_checkpoint_holds_what_was_trained(tiny_llama: str, tmp_path: Path) -> None:
    agent = trained(tiny_llama, "top_k")
    obs = obs_of(agent.policy)
    probs = agent.policy.action_probabilities(obs)
    folder = save_checkpoint(agent, tmp_path, TrainingState(frames=8, algo="stable_baselines3:PPO"))
    saved = zip_member(folder / "model.zip", "policy.pth")
    assert base_record(saved) is not None and not any(k.startswith("lm.model.layers.0.") for k in saved)
    loaded, state = load_checkpoint(tmp_path, agent.get_env())
    assert state.frames == 8
    torch.testing.assert_close(loaded.policy.action_probabilities(obs), probs, atol=0, rtol=0)
