"""PPO with every LLMPolicy default: does the pretrained LM stay intact enough to learn?

Stock SB3 ``PPO(LLMPolicy, env)`` with all defaults (full fine-tuning, the LM at GLAM's
1e-6 while the value head keeps PPO's 3e-4, SB3's 10 epochs and minibatch 64) except
the rollout size, against the former default (the LM at PPO's 3e-4 too), on the same
seeds.  Prints, per update, PPO's approx KL, clip fraction and entropy, and the training
episodes' success; writes a markdown table.

    python studies/default_settings_run.py [--device cuda] [--n-envs 8] [--n-steps 64] [--updates 4]

On a 2-core CPU (docs/studies/default_settings.md): ``--n-envs 4 --n-steps 8 --batch-size 32 --updates 2
--prompt-history 1 --micro-batch-size 16`` (each full fine-tuning update of 10 epochs
takes minutes there).
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import babyai_text  # noqa: F401
from glam_experiments.cli import require_at_least, run_command
from llm_policy import LLMPolicy, PromptTemplate


@dataclass
class Args:
    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    """the small GoTo level"""
    model: str = "SmolLM2-135M-Instruct"
    n_envs: int = 8
    n_steps: int = 64
    """env-steps per env and rollout (SB3's default of 2048 is one update per 16k steps here)"""
    updates: int = 4
    seed: int = 0
    device: str = "auto"
    batch_size: int = 64
    """SB3's default; a smaller rollout than that needs a smaller minibatch"""
    prompt_history: int | None = None
    """observations in the prompt (default: all the env keeps, 3 as GLAM)"""
    micro_batch_size: int | None = None
    """chunks of a minibatch recomputed in the backward pass: the same loss and gradients in less memory"""
    out: Path = Path("default_settings_run.md")


def run(args: Args, lm_learning_rate: float | str | None) -> list[dict[str, float]]:
    env = VecMonitor(DummyVecEnv([lambda: gym.make(args.env_id)] * args.n_envs))
    policy_kwargs = {
        "model": args.model,
        "micro_batch_size": args.micro_batch_size,
        "prompt_template": PromptTemplate(history=args.prompt_history),
    }
    if lm_learning_rate != "default":
        policy_kwargs["lm_learning_rate"] = lm_learning_rate
    model = PPO(
        LLMPolicy,
        env,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        policy_kwargs=policy_kwargs,
    )
    folder = tempfile.mkdtemp(prefix="defaults-")
    model.set_logger(configure(folder, ["csv"]))
    successes: list[list[float]] = []

    class Successes(BaseCallback):
        def _on_rollout_start(self) -> None:
            successes.append([])

        def _on_step(self) -> bool:
            for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
                if done:
                    successes[-1].append(float(info.get("success", 0.0)))
            return True

    model.learn(args.n_envs * args.n_steps * args.updates, callback=Successes())
    model.logger.dump(model.num_timesteps)  # SB3 writes an update's train/* values at the next rollout's dump
    with open(Path(folder) / "progress.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/approx_kl")]
    out = []
    for i, row in enumerate(rows):
        out.append(
            {
                "update": i + 1,
                "approx_kl": float(row["train/approx_kl"]),
                "clip_fraction": float(row["train/clip_fraction"]),
                "entropy": -float(row["train/entropy_loss"]),
                "success": float(np.mean(successes[i])) if i < len(successes) and successes[i] else float("nan"),
            }
        )
    return out


def main(args: Args) -> None:
    require_at_least({"n_envs": args.n_envs, "n_steps": args.n_steps, "updates": args.updates})
    require_at_least(
        {"batch_size": args.batch_size, "prompt_history": args.prompt_history}
        | {"micro_batch_size": args.micro_batch_size}
    )
    lines = [
        f"PPO(LLMPolicy, env) on {args.env_id}, {args.model}, {args.n_envs} envs × {args.n_steps} steps per "
        f"update, seed {args.seed}, batch_size {args.batch_size}, prompt history {args.prompt_history}, "
        f"micro_batch_size {args.micro_batch_size}; every other setting SB3's and LLMPolicy's default "
        "(full fine-tuning, n_epochs 10, learning_rate 3e-4).",
        "",
        "| LM learning rate | update | approx KL | clip fraction | entropy (nats) | success in the rollout before it |",
        "|---|---|---|---|---|---|",
    ]
    for label, lr in (("1e-6 (default)", "default"), ("3e-4 (former default: PPO's rate)", None)):
        for r in run(args, lr):
            success = "–" if np.isnan(r["success"]) else f"{r['success']:.2f}"  # no episode ended
            lines.append(
                f"| {label} | {r['update']} | {r['approx_kl']:.4f} | {r['clip_fraction']:.3f} | "
                f"{r['entropy']:.3f} | {success} |"
            )
            print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    run_command(lambda argv: main(tyro.cli(Args, args=argv)))
