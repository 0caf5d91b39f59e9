"""LLMPolicy with stock Stable-Baselines3: PPO, save/load, fine-tuning modes, SB3 pitfalls."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from llm_policy import LLMPolicy, ModelNotFoundError, PromptTooLongError, load_language_model
from tests.helpers import text_batch

ENV_ID = "BabyAI-Text-GoTo-v0"


def make_ppo(model: str, n_envs: int = 2, **policy_kwargs) -> PPO:
    env = DummyVecEnv([lambda: gym.make(ENV_ID)] * n_envs)
    return PPO(
        LLMPolicy, env, n_steps=16, batch_size=16, n_epochs=2, seed=0, policy_kwargs={"model": model, **policy_kwargs}
    )


def obs_tensor(policy: LLMPolicy, env_id: str = "BabyAI-Text-MixedTrain-v0", n: int = 3) -> dict:
    return policy.obs_to_tensor(text_batch(env_id, n=n))[0]


def test_ppo_learns_with_stock_sb3(tiny_model: str) -> None:
    calls = []

    class Count(BaseCallback):
        def _on_step(self) -> bool:
            calls.append(self.num_timesteps)
            return True

    model = make_ppo(tiny_model)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(64, callback=Count())
    assert model.num_timesteps == 64 and calls[-1] == 64
    after = model.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("lm."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("value_net."))


def test_outputs_are_fp32_and_shaped(tiny_model: str) -> None:
    policy = make_ppo(tiny_model).policy
    obs = obs_tensor(policy)
    actions, values, log_probs = policy(obs)
    assert actions.shape == (3,) and values.shape == (3, 1) and log_probs.shape == (3,)
    assert values.dtype == torch.float32 and log_probs.dtype == torch.float32
    values2, log_probs2, entropy = policy.evaluate_actions(obs, actions)
    torch.testing.assert_close(values2, values)
    torch.testing.assert_close(log_probs2, log_probs)
    assert entropy.dtype == torch.float32 and (entropy > 0).all()
    torch.testing.assert_close(policy.predict_values(obs), values)


def test_save_load_identical_probabilities(tiny_model: str, tmp_path) -> None:
    model = make_ppo(tiny_model)
    model.learn(32)
    obs = obs_tensor(model.policy)
    probs = model.policy.action_probabilities(obs)
    model.save(tmp_path / "agent")
    loaded = PPO.load(tmp_path / "agent", env=model.get_env())
    torch.testing.assert_close(loaded.policy.action_probabilities(obs), probs, atol=0, rtol=0)
    # the policy alone, too
    model.policy.save(tmp_path / "policy.pt")
    alone = LLMPolicy.load(tmp_path / "policy.pt")
    torch.testing.assert_close(alone.action_probabilities(obs), probs, atol=0, rtol=0)


def test_construction_keeps_lm_weights(tiny_model: str) -> None:
    """No ortho_init and no re-initialisation: the LM's weights (tied embeddings too) are the checkpoint's."""
    policy = make_ppo(tiny_model).policy
    reference = load_language_model(tiny_model).model.state_dict()
    ours = policy.lm.state_dict()
    assert ours.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(ours[key], value), key
    if hasattr(policy.lm.config, "tie_word_embeddings") and policy.lm.config.tie_word_embeddings:
        assert policy.lm.get_input_embeddings().weight is policy.lm.get_output_embeddings().weight


def test_one_copy_of_the_lm(tiny_model: str) -> None:
    policy = make_ppo(tiny_model).policy
    n_lm = sum(p.numel() for p in policy.lm.parameters())
    n_value = sum(p.numel() for p in policy.value_net.parameters())
    assert sum(p.numel() for p in policy.parameters()) == n_lm + n_value


def test_dropout_is_off_in_training_mode(tiny_model: str) -> None:
    policy = make_ppo(tiny_model).policy
    policy.set_training_mode(True)
    obs = obs_tensor(policy)
    a = policy.evaluate_actions(obs, torch.tensor([0, 1, 2]))
    b = policy.evaluate_actions(obs, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(a[1], b[1], atol=0, rtol=0)
    assert all(m.p == 0 for m in policy.modules() if isinstance(m, torch.nn.Dropout))


def test_lora_trains_only_adapters_and_value_head(tiny_llama: str) -> None:
    model = make_ppo(tiny_llama, finetune="lora", lora_kwargs={"r": 4})
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(32)
    changed = {k for k, v in model.policy.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all("lora_" in k or k.startswith("value_net.") for k in changed)
    assert any("lora_" in k for k in changed)


def test_top_k_trains_only_top_blocks(tiny_llama: str) -> None:
    model = make_ppo(tiny_llama, finetune="top_k", top_k=1)
    trainable = {n for n, p in model.policy.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("lm.model.layers.2.", "lm.model.norm.", "value_net.")) for n in trainable)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(32)
    changed = {k for k, v in model.policy.state_dict().items() if not torch.equal(before[k], v)}
    assert any(k.startswith("lm.model.layers.2.") for k in changed)
    assert changed <= {f"lm.{n[3:]}" if n.startswith("lm.") else n for n in trainable}


def test_frozen_lower_blocks_keep_no_graph(tiny_llama: str) -> None:
    """Below the trained blocks autograd records nothing: the embedding output needs no grad."""
    policy = make_ppo(tiny_llama, finetune="top_k", top_k=1).policy
    seen = []
    layer0 = policy.lm.model.layers[0]
    handle = layer0.register_forward_hook(
        lambda _m, _i, out: seen.append((out[0] if isinstance(out, tuple) else out).requires_grad)
    )
    try:
        policy.evaluate_actions(obs_tensor(policy), torch.tensor([0, 1, 2]))
    finally:
        handle.remove()
    assert seen and not any(seen)


def test_npae_has_random_weights(tiny_llama: str) -> None:
    pretrained = make_ppo(tiny_llama).policy.lm.state_dict()
    random = make_ppo(tiny_llama, pretrained=False).policy.lm.state_dict()
    assert pretrained.keys() == random.keys()
    assert not torch.equal(pretrained["model.embed_tokens.weight"], random["model.embed_tokens.weight"])


def test_separate_learning_rates(tiny_llama: str) -> None:
    model = make_ppo(tiny_llama, lm_learning_rate=1e-6)
    groups = model.policy.optimizer.param_groups
    assert [g["lr_scale"] for g in groups] == pytest.approx([1.0, 1e-6 / 3e-4])
    seen = []
    original = torch.optim.Adam.step

    def spy(self, closure=None):
        seen.append([g["lr"] for g in self.param_groups])
        return original(self, closure)

    torch.optim.Adam.step = spy
    try:
        model.learn(16)
    finally:
        torch.optim.Adam.step = original
    assert seen[0] == pytest.approx([3e-4, 1e-6])
    assert [g["lr"] for g in groups] == pytest.approx([3e-4, 3e-4])  # SB3's view stays the schedule's


def test_micro_batches_give_the_same_loss_and_gradients(tiny_llama: str) -> None:
    policy = make_ppo(tiny_llama).policy
    obs = obs_tensor(policy, n=4)
    actions = torch.tensor([0, 1, 2, 3])

    def grads(micro: int | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        policy.micro_batch_size = micro
        policy.zero_grad()
        values, log_prob, entropy = policy.evaluate_actions(obs, actions)
        loss = values.sum() + log_prob.sum() + entropy.sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in policy.parameters() if p.grad is not None]

    loss_full, grads_full = grads(None)
    loss_micro, grads_micro = grads(1)
    torch.testing.assert_close(loss_micro, loss_full)
    for a, b in zip(grads_micro, grads_full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_zero_shot_predict(tiny_model: str) -> None:
    model = make_ppo(tiny_model)
    env = gym.make("BabyAI-Text-GoTo-French-v0")
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert 0 <= int(action) < 6
    batch = text_batch(n=2)
    actions, _ = model.predict(batch, deterministic=True)
    assert actions.shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"model": "no-such-model-anywhere"},
            ModelNotFoundError,
            r"unknown model 'no-such-model-anywhere'.*SmolLM2-135M-Instruct",
        ),
        ({"ortho_init": True}, ValueError, "ortho_init=True would re-initialise"),
        ({"share_features_extractor": False}, ValueError, "single language model"),
        ({"net_arch": [64]}, TypeError, r"unsupported argument\(s\) \['net_arch'\]"),
        ({"finetune": "half"}, ValueError, "finetune must be one of"),
        ({"normalization": "mean"}, ValueError, "normalization must be one of"),
        ({"finetune": "top_k", "top_k": 99}, ValueError, "top_k must be between 1"),
    ],
)
def test_bad_policy_kwargs(tiny_llama: str, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_ppo(**{"model": tiny_llama, **kwargs})


def test_non_text_env_is_refused(tiny_llama: str) -> None:
    with pytest.raises(ValueError, match="LLMPolicy needs BabyAI-Text observations"):
        PPO(LLMPolicy, gym.make("CartPole-v1"), policy_kwargs={"model": tiny_llama})


def test_over_long_prompt_is_an_error(tiny_llama: str) -> None:
    env = DummyVecEnv([lambda: gym.make(ENV_ID, history_length=40, room_size=12, num_dists=20)])
    model = PPO(LLMPolicy, env, n_steps=8, batch_size=8, policy_kwargs={"model": tiny_llama})
    with pytest.raises(PromptTooLongError, match="exceeds the model's context of 512 tokens"):
        model.learn(80)


def test_unparseable_observation(tiny_llama: str) -> None:
    policy = make_ppo(tiny_llama).policy
    obs = obs_tensor(policy)
    with pytest.raises(ValueError, match="not bytes"):
        policy({**obs, "mission": obs["mission"] / 255.0})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_autocast_gives_fp32_outputs(tiny_llama: str) -> None:
    env = DummyVecEnv([lambda: gym.make(ENV_ID)] * 2)
    model = PPO(LLMPolicy, env, n_steps=16, batch_size=16, device="cuda", policy_kwargs={"model": tiny_llama})
    model.learn(32)
    obs = obs_tensor(model.policy)
    _, values, log_probs = model.policy(obs)
    assert values.dtype == torch.float32 and log_probs.dtype == torch.float32 and values.device.type == "cuda"
    assert np.isfinite(log_probs.cpu().numpy()).all()


def test_top_k_reuses_frozen_block_outputs(tiny_llama: str) -> None:
    """In top-k mode the update runs only the top blocks on rollout observations, with the same result."""
    cached = make_ppo(tiny_llama, finetune="top_k", top_k=1).policy
    plain = make_ppo(tiny_llama, finetune="top_k", top_k=1, frozen_cache_bytes=0).policy
    assert cached.scorer.lower_cache is not None and plain.scorer.lower_cache is None
    obs = obs_tensor(cached, n=4)
    actions = torch.tensor([0, 1, 2, 5])
    with torch.no_grad():
        cached(obs)  # the rollout fills the cache
    assert len(cached.scorer.lower_cache.entries) == 4
    calls = []
    handle = cached.lm.model.layers[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        results = []
        for policy in (cached, plain):
            policy.zero_grad()
            values, log_prob, entropy = policy.evaluate_actions(obs, actions)
            (values.sum() + log_prob.sum() + entropy.sum()).backward()
            grads = [p.grad.clone() for p in policy.parameters() if p.grad is not None]
            results.append((values.detach(), log_prob.detach(), grads))
    finally:
        handle.remove()
    assert cached.scorer.lower_cache.enabled
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-5, rtol=1e-5)
    for a, b in zip(results[0][2], results[1][2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # the cached update did not run the lower blocks
    cached.zero_grad()
    calls.clear()
    handle = cached.lm.model.layers[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        cached.evaluate_actions(obs, actions)
    finally:
        handle.remove()
    assert calls == []
