"""Sizes of a saved agent per fine-tuning mode: ``model.save`` and a glam_experiments checkpoint.

SmolLM2-135M (the built-in default), one PPO update (so that Adam's state exists, as in
any save during training) on ``BabyAI-Text-GoToS5N2-v0``, CPU.  For each mode (``full``,
``lora``, ``top_k`` with its default k) it prints the zip's size and its ``policy.pth``
(weights) and ``policy.optimizer.pth`` (Adam's state) members, the checkpoint folder's
size (:func:`glam_experiments.checkpoints.save_checkpoint`), the times ``model.save`` and
``PPO.load`` took, and whether the loaded agent gives the same action probabilities.  Where
the policy has ``frozen_tensors`` (compact saves) it also times the content hash
of the frozen base weights (what a LoRA or top-k save names its base model by; best of 3,
over the distinct bytes hashed: tied embeddings count once).

    python benchmarks/save_sizes.py [--modes full lora top_k] [--model SmolLM2-135M-Instruct]

Run it with ``PYTHONPATH`` pointing at another copy of the code (e.g. one extracted with
``git archive``) to measure that code instead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zipfile
from pathlib import Path

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import babyai_text  # noqa: F401  (registers the envs)
import llm_policy
from glam_experiments.checkpoints import TrainingState, save_checkpoint
from llm_policy import LLMPolicy
from llm_policy.models import DEFAULT_MODEL

ENV_ID = "BabyAI-Text-GoToS5N2-v0"
MB = 1e6


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def measure(mode: str, model_name: str, workdir: Path) -> dict[str, float | str]:
    env = DummyVecEnv([lambda: gym.make(ENV_ID)])
    agent = PPO(
        LLMPolicy,
        env,
        n_steps=4,
        batch_size=4,
        n_epochs=1,
        seed=0,
        policy_kwargs={"model": model_name, "finetune": mode},
    )
    agent.learn(4)  # one update: Adam has its state, as in any save during training
    obs = agent.policy.obs_to_tensor(env.reset())[0]
    probs = agent.policy.action_probabilities(obs)

    row: dict[str, float | str] = {"mode": mode}
    if hasattr(agent.policy, "frozen_tensors"):  # compact saves: time the base weights' hash
        from llm_policy.saving import frozen_weights_hash

        frozen = agent.policy.frozen_tensors()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            frozen_weights_hash(frozen)
            times.append(time.perf_counter() - start)
        row["hash_s"] = min(times)
        distinct = {t.data_ptr(): t.numel() * t.element_size() for t in frozen.values()}  # tied: once
        row["hashed_mb"] = sum(distinct.values()) / MB

    path = workdir / f"{mode}.zip"
    start = time.perf_counter()
    agent.save(path)
    row["save_s"] = time.perf_counter() - start
    row["zip_mb"] = path.stat().st_size / MB
    with zipfile.ZipFile(path) as archive:
        for member in ("policy.pth", "policy.optimizer.pth"):
            row[member] = archive.getinfo(member).file_size / MB
    run_dir = workdir / f"run-{mode}"
    folder = save_checkpoint(agent, run_dir, TrainingState(frames=4, algo="stable_baselines3:PPO"))
    row["checkpoint_mb"] = folder_bytes(folder) / MB

    start = time.perf_counter()
    loaded = PPO.load(path, env=env)
    row["load_s"] = time.perf_counter() - start
    row["same_probs"] = str(torch.equal(loaded.policy.action_probabilities(obs), probs))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["full", "lora", "top_k"])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    print(f"code: {Path(llm_policy.__file__).parent}; model {args.model}; torch threads {torch.get_num_threads()}")
    columns = ["mode", "zip_mb", "policy.pth", "policy.optimizer.pth", "checkpoint_mb", "save_s", "load_s"]
    columns += ["same_probs", "hashed_mb", "hash_s"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(mode, args.model, Path(tmp)) for mode in args.modes]
    print(" | ".join(columns))
    for row in rows:
        cells = [row.get(c, "-") for c in columns]
        print(" | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in cells))


if __name__ == "__main__":
    main()
