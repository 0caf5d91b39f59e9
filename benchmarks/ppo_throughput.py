"""End-to-end PPO throughput (rollout + update) of LLMPolicy on CPU, per fine-tuning mode.

Each mode runs in its own subprocess (so each peak RSS is its own): stock SB3 PPO with
the built-in SmolLM2-135M on ``BabyAI-Text-GoToS5N2-v0``, ``n_envs`` DummyVecEnv envs ×
``n_steps`` = 64 env-steps per rollout, one update on minibatches of 64.  The first
rollout+update (warm-up: model load, first allocations) is not timed; the second is.

    python benchmarks/ppo_throughput.py [--modes full lora top_k] [--epochs 1] [--prompt-history 3 1]

``--prompt-history`` lists prompt lengths to compare (observations in the prompt,
``PromptTemplate(history=...)``; 3 is GLAM's), one row per mode and length.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace


def run_mode(
    mode: str, n_envs: int, n_steps: int, batch_size: int, epochs: int, micro_batch: int | None, history: int
) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3.common.vec_env import DummyVecEnv

    import babyai_text  # noqa: F401
    from glam_experiments.configs import LLMPPOConfig

    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * n_envs)
    # the main job's settings (glam_experiments.configs), at this run's sizes and mode
    config = replace(
        LLMPPOConfig(),
        finetune=mode,
        micro_batch_size=micro_batch,
        prompt_history=history,
        n_envs=n_envs,
        n_steps=n_steps,
        batch_size=batch_size,
        n_epochs=epochs,
    )
    model = config.make(env, seed=0)
    per_rollout = n_steps * n_envs
    model.learn(per_rollout)  # warm-up
    start = time.perf_counter()
    model.learn(per_rollout, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "history": history,
        "env_steps": per_rollout,
        "seconds": seconds,
        "steps_per_s": per_rollout / seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", nargs="+", default=["full", "lora", "top_k"])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16, help="n_steps per env and rollout")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--prompt-history", type=int, nargs="+", default=[3], help="observations in the prompt")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        (history,) = args.prompt_history
        result = run_mode(args.worker, args.envs, args.steps, args.batch_size, args.epochs, args.micro_batch, history)
        print("RESULT " + json.dumps(result))
        return

    print(
        f"SmolLM2-135M, BabyAI-Text-GoToS5N2-v0, {args.envs} envs x {args.steps} steps per rollout, "
        f"batch_size {args.batch_size}, n_epochs {args.epochs}, micro_batch_size {args.micro_batch}"
    )
    print(
        "| mode | observations in prompt | env-steps timed | seconds | env-steps/s (rollout + update) | peak RSS (GB) |"
    )
    print("|---|---|---|---|---|---|")
    for mode, history in [(m, h) for m in args.modes for h in args.prompt_history]:
        cmd = [sys.executable, __file__, "--worker", mode, "--envs", str(args.envs), "--steps", str(args.steps)]
        cmd += ["--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--prompt-history", str(history)]
        if args.micro_batch:
            cmd += ["--micro-batch", str(args.micro_batch)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            reason = out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode
            print(f"| {mode} | {history} | failed: {reason} | | | |")
            continue
        r = json.loads(lines[-1][len("RESULT ") :])
        cells = [
            mode,
            history,
            r["env_steps"],
            f"{r['seconds']:.1f}",
            f"{r['steps_per_s']:.2f}",
            f"{r['peak_rss_gb']:.2f}",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
