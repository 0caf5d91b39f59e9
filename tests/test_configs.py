"""Each agent's configuration is defined once: scripts, main job and rl-zoo3 files repeat it exactly."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

from babyai_text import PromptTemplate
from glam_experiments.configs import GLAM_LLM_PPO, LLMPPOConfig, SymbolicPPOConfig
from tests.helpers import REPO, load_example


def _zoo_entry(file: str, env_id: str) -> dict:
    entries = yaml.safe_load((REPO / "hyperparams" / file).read_text())
    return dict(entries[env_id])


def _evaluated_policy_kwargs(entry: dict) -> dict:
    return eval(entry["policy_kwargs"], {"importlib": importlib})  # as rl-zoo3 evaluates them


def _assert_ppo_settings(entry: dict, config) -> None:
    for key, value in config.ppo_kwargs().items():
        assert entry[key] == value, key
    assert entry["n_envs"] == config.n_envs


@pytest.mark.parametrize("env_id", ["BabyAI-Text-GoToS5N2-v0", "BabyAI-Text-GoToS6N3-v0", "BabyAI-Text-MixedTrain-v0"])
@pytest.mark.parametrize("recurrent", [False, True])
def test_zoo_symbolic_ppo_is_the_scripts(env_id: str, recurrent: bool) -> None:
    config = SymbolicPPOConfig(recurrent=recurrent)
    entry = _zoo_entry("ppo_lstm.yml" if recurrent else "ppo.yml", env_id)
    _assert_ppo_settings(entry, config)
    assert entry["policy"] == config.policy()
    assert _evaluated_policy_kwargs(entry) == config.policy_kwargs()
    assert entry["env_wrapper"] == [{"glam_experiments.envs.ScaleReward": {"scale": config.reward_scale}}]


@pytest.mark.parametrize(
    ("env_id", "config"),
    [("BabyAI-Text-GoToS5N2-v0", LLMPPOConfig()), ("BabyAI-Text-MixedTrain-v0", GLAM_LLM_PPO)],
)
def test_zoo_llm_ppo_is_the_configs(env_id: str, config: LLMPPOConfig) -> None:
    entry = _zoo_entry("llm_ppo.yml", env_id)
    _assert_ppo_settings(entry, config)
    assert entry["policy"] == "llm_policy.LLMPolicy"
    assert _evaluated_policy_kwargs(entry) == config.policy_kwargs()
    wrappers = [{"glam_experiments.envs.ScaleReward": {"scale": config.reward_scale}}]
    assert entry.get("env_wrapper") == (wrappers if config.reward_scale != 1.0 else None)


def _script_args(path: str):
    return load_example(path).Args()


@pytest.mark.parametrize(
    ("script", "config"),
    [
        ("examples/train_llm_ppo.py", LLMPPOConfig()),
        ("studies/main_job.py", LLMPPOConfig()),
        ("examples/train_symbolic_ppo.py", SymbolicPPOConfig()),
    ],
)
def test_scripts_take_their_defaults_from_the_configs(script: str, config) -> None:
    args = _script_args(script)
    for field in dataclasses.fields(config):
        assert getattr(args, field.name) == getattr(config, field.name), field.name


def test_glam_settings() -> None:
    assert GLAM_LLM_PPO.policy_kwargs()["prompt_template"] == PromptTemplate()
    assert (GLAM_LLM_PPO.finetune, GLAM_LLM_PPO.lm_learning_rate, GLAM_LLM_PPO.n_epochs) == ("full", 1e-6, 4)
    assert GLAM_LLM_PPO.n_envs * GLAM_LLM_PPO.n_steps == 32 * 40 and GLAM_LLM_PPO.batch_size == 64


@pytest.mark.slow
def test_rl_zoo3_trains_and_enjoys_the_llm_agent(tmp_path, tiny_llama: str) -> None:
    pytest.importorskip("rl_zoo3")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kwargs = f"policy_kwargs:\"dict(model='{tiny_llama}', finetune='top_k', top_k=1)\""
    common = ["--env", "BabyAI-Text-GoToS5N2-v0", "--gym-packages", "babyai_text"]
    train = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", *common]
    train += ["--conf-file", str(REPO / "hyperparams" / "llm_ppo.yml"), "-n", "64", "--log-folder", str(tmp_path)]
    train += ["--eval-freq", "-1", "--seed", "0", "--hyperparams", "n_envs:2", "n_steps:16", "batch_size:16", kwargs]
    out = subprocess.run(train, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list(tmp_path.rglob("BabyAI-Text-GoToS5N2-v0.zip"))) == 1
    enjoy = [sys.executable, "-m", "rl_zoo3.enjoy", "--algo", "ppo", *common, "-f", str(tmp_path)]
    enjoy += ["--no-render", "-n", "40", "--exp-id", "1", "--deterministic"]
    out = subprocess.run(enjoy, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Loading" in out.stdout + out.stderr
