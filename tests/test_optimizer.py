"""Per-group learning-rate scales (llm_policy.optimizer): behaviour and pickling."""

from __future__ import annotations

import copy
import io
import pickle
import subprocess
import sys

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from llm_policy import LLMPolicy
from llm_policy.optimizer import LR_SCALE, with_group_lr_scales
from tests.helpers import REPO


def two_groups(scale: float, optimizer_class: type[torch.optim.Optimizer] = torch.optim.SGD) -> torch.optim.Optimizer:
    scaled, plain = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    groups = [{"params": [scaled], LR_SCALE: scale}, {"params": [plain], LR_SCALE: 1.0}]
    return with_group_lr_scales(optimizer_class)(groups, lr=0.5)


def step_sizes(optimizer: torch.optim.Optimizer) -> list[float]:
    """How far one step with the same gradient moves each group's parameter."""
    params = [group["params"][0] for group in optimizer.param_groups]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    return [float((p.detach() - b).abs().max()) for p, b in zip(params, before, strict=True)]


def test_scale_multiplies_the_scheduled_rate_during_step_only() -> None:
    optimizer = two_groups(0.1)
    small, full = step_sizes(optimizer)
    assert full == 0.5 and abs(small - 0.05) < 1e-7  # 10x less
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.5]  # SB3's schedule sees its own value
    for group in optimizer.param_groups:  # what SB3 does before each update
        group["lr"] = 0.2
    small, full = step_sizes(optimizer)
    assert abs(full - 0.2) < 1e-7 and abs(small - 0.02) < 1e-7


def test_optimizer_pickles_and_keeps_scaling() -> None:
    optimizer = two_groups(0.1)
    step_sizes(optimizer)
    for clone in (pickle.loads(pickle.dumps(optimizer)), copy.deepcopy(optimizer)):
        assert type(clone) is type(optimizer)
        assert [g[LR_SCALE] for g in clone.param_groups] == [0.1, 1.0]
        small, full = step_sizes(clone)
        assert full == 0.5 and abs(small - 0.05) < 1e-7
    assert pickle.loads(pickle.dumps(type(optimizer))) is type(optimizer)
    assert with_group_lr_scales(torch.optim.SGD) is type(optimizer)


def test_unpickles_in_a_fresh_process() -> None:
    optimizer = two_groups(0.1, torch.optim.Adam)
    step_sizes(optimizer)
    data = pickle.dumps((optimizer, type(optimizer)))
    code = (
        "import pickle, sys; opt, cls = pickle.loads(sys.stdin.buffer.read()); "
        "assert type(opt) is cls and cls.__name__ == 'ScaledLRAdam', cls; "
        "assert [g['lr_scale'] for g in opt.param_groups] == [0.1, 1.0]; "
        "assert all(s['step'] == 1 for s in opt.state.values()); print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, cwd=REPO, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == b"ok", done.stderr.decode()[-2000:]


def test_llm_policy_and_its_optimizer_pickle(tiny_llama: str) -> None:
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")])
    model = PPO(LLMPolicy, env, n_steps=8, batch_size=8, n_epochs=1, policy_kwargs={"model": tiny_llama})
    model.learn(8)
    optimizer = model.policy.optimizer
    clone = pickle.loads(pickle.dumps(optimizer))
    assert type(clone) is type(optimizer)
    assert [g.get(LR_SCALE) for g in clone.param_groups] == [g.get(LR_SCALE) for g in optimizer.param_groups]
    buffer = io.BytesIO()
    torch.save(model.policy, buffer)  # the whole policy: weights, optimizer and its lr scales
    buffer.seek(0)
    policy = torch.load(buffer, weights_only=False)
    loaded = policy.optimizer
    assert type(loaded) is type(optimizer) and type(optimizer).__name__ == "ScaledLRAdam"
    assert len(loaded.state) == len(optimizer.state) > 0
    assert [g.get(LR_SCALE) for g in loaded.param_groups] == [g.get(LR_SCALE) for g in optimizer.param_groups]
    obs = {k: torch.as_tensor(v[None]) for k, v in env.envs[0].reset(seed=0)[0].items()}
    torch.testing.assert_close(policy.action_probabilities(obs), model.policy.action_probabilities(obs))


def test_loaded_state_keeps_the_optimizers_own_scales() -> None:
    """A policy built with another LM rate that loads saved moments (``PPO.set_parameters``) keeps its rate."""
    saved = two_groups(0.1, torch.optim.Adam)
    for group in saved.param_groups:
        group["params"][0].grad = torch.ones(3)
    saved.step()
    mine = two_groups(0.3, torch.optim.Adam)
    mine.load_state_dict(saved.state_dict())
    assert [g[LR_SCALE] for g in mine.param_groups] == [0.3, 1.0]
    assert len(mine.state) == 2  # Adam's moments came with the state
    small, full = step_sizes(mine)  # (Adam: a constant gradient moves each weight by its rate)
    assert small == pytest.approx(0.3 * full, rel=1e-4) and full == pytest.approx(0.5, rel=1e-4)
