"""End-to-end PPO throughput (rollout + update) of LLMPolicy, per fine-tuning mode.

Each mode runs in its own subprocess (so each peak memory is its own): stock SB3 PPO with
the built-in SmolLM2-135M on ``BabyAI-Text-GoToS5N2-v0``, ``n_envs`` DummyVecEnv envs ×
``n_steps`` = 64 env-steps per rollout, one update on minibatches of 64.  The first
rollout+update (warm-up: model load, first allocations) is not timed; the second is, split
into the rollout and the update (SB3's rollout callbacks, synchronised with the GPU).

    python benchmarks/ppo_throughput.py [--modes full lora top_k] [--epochs 1] [--prompt-history 3 1]
        [--device cpu|cuda] [--model SmolLM2-135M-Instruct]

``--prompt-history`` lists prompt lengths to compare (observations in the prompt,
``PromptTemplate(history=...)``; 3 is GLAM's), one row per mode and length.  ``--device
cuda`` runs PPO on the GPU under bf16 autocast (``LLMPolicy(autocast="auto")``) and adds
the peak GPU memory and the FLOP utilisation of the rollout and of the update: the FLOPs
of one more rollout + update, counted with ``torch.utils.flop_counter`` after the timed
one, over the timed seconds, against a bf16 matmul peak measured in the same process
(``benchmarks/_timing.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace

from _timing import add_device_argument, describe, matmul_peak, peak_gpu_gb, peak_rss_gb, select_device, sync

COLUMNS = ["mode", "observations in prompt", "env-steps timed", "seconds", "env-steps/s (rollout + update)"]
COLUMNS += ["rollout s", "update s", "peak RSS (GB)"]
CUDA_COLUMNS = ["peak GPU memory (GB)", "rollout TFLOP/s (% of peak)", "update TFLOP/s (% of peak)"]


def run_mode(args: argparse.Namespace, mode: str, history: int) -> dict:
    import gymnasium as gym
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv
    from torch.utils.flop_counter import FlopCounterMode

    import babyai_text  # noqa: F401
    from glam_experiments.configs import LLMPPOConfig

    device = select_device(args.device)

    class Phases(BaseCallback):
        """Times (and, while ``counter`` is set, FLOPs) at each rollout's start and end."""

        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[float, int]] = []
            self.counter: FlopCounterMode | None = None

        def mark(self) -> None:
            sync(device)
            self.marks.append((time.perf_counter(), self.counter.get_total_flops() if self.counter else 0))

        def _on_rollout_start(self) -> None:
            self.mark()

        def _on_rollout_end(self) -> None:
            self.mark()

        def _on_step(self) -> bool:
            return True

    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * args.envs)
    # the main job's settings (glam_experiments.configs), at this run's sizes, model and mode
    config = replace(
        LLMPPOConfig(),
        model=args.model,
        finetune=mode,
        micro_batch_size=args.micro_batch,
        prompt_history=history,
        n_envs=args.envs,
        n_steps=args.steps,
        batch_size=args.batch_size,
        n_epochs=args.epochs,
    )
    model = config.make(env, seed=0, device=device)
    per_rollout = args.steps * args.envs
    model.learn(per_rollout)  # warm-up
    phases = Phases()
    start = time.perf_counter()
    model.learn(per_rollout, reset_num_timesteps=False, callback=phases)
    sync(device)
    end = time.perf_counter()
    (rollout_start, _), (rollout_end, _) = phases.marks
    result = {
        "env_steps": per_rollout,
        "seconds": end - start,
        "rollout_s": rollout_end - rollout_start,
        "update_s": end - rollout_end,
        "peak_rss_gb": peak_rss_gb(),
        "peak_gpu_gb": peak_gpu_gb(device),
    }
    if device.type == "cuda":  # one more rollout + update, its FLOPs counted (the counter slows it)
        phases.marks.clear()
        phases.counter = FlopCounterMode(display=False)
        with phases.counter:
            model.learn(per_rollout, reset_num_timesteps=False, callback=phases)
            total = phases.counter.get_total_flops()
        (_, flops_start), (_, flops_end) = phases.marks
        rollout_flops = flops_end - flops_start
        peak = matmul_peak(device)
        result["rollout_util"] = (rollout_flops / result["rollout_s"], peak)
        result["update_util"] = ((total - rollout_flops) / result["update_s"], peak)
    result["device"] = describe(device)
    return result


def utilisation(rate_and_peak: list[float]) -> str:
    rate, peak = rate_and_peak
    return f"{rate / 1e12:.1f} ({100 * rate / peak:.0f} %)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", nargs="+", default=["full", "lora", "top_k"])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16, help="n_steps per env and rollout")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--prompt-history", type=int, nargs="+", default=[3], help="observations in the prompt")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="built-in model, local directory or hub id")
    add_device_argument(parser)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        (history,) = args.prompt_history
        print("RESULT " + json.dumps(run_mode(args, args.worker, history)))
        return

    device = select_device(args.device)  # refuse before starting any worker
    cuda = device.type == "cuda"
    print(
        f"{args.model}, BabyAI-Text-GoToS5N2-v0, {args.envs} envs x {args.steps} steps per rollout, "
        f"batch_size {args.batch_size}, n_epochs {args.epochs}, micro_batch_size {args.micro_batch}"
    )
    devices = set()  # as the workers saw it (this process leaves the GPU alone)
    columns = COLUMNS + (CUDA_COLUMNS if cuda else [])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for mode, history in [(m, h) for m in args.modes for h in args.prompt_history]:
        cmd = [sys.executable, __file__, "--worker", mode, "--envs", str(args.envs), "--steps", str(args.steps)]
        cmd += ["--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--prompt-history", str(history)]
        cmd += ["--model", args.model, "--device", args.device]
        if args.micro_batch:
            cmd += ["--micro-batch", str(args.micro_batch)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            reason = out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode
            print(f"| {mode} | {history} | failed: {reason} |" + " |" * (len(columns) - 3))
            continue
        r = json.loads(lines[-1][len("RESULT ") :])
        devices.add(r["device"])
        cells = [mode, history, r["env_steps"], f"{r['seconds']:.1f}", f"{r['env_steps'] / r['seconds']:.2f}"]
        cells += [f"{r['rollout_s']:.2f}", f"{r['update_s']:.2f}", f"{r['peak_rss_gb']:.2f}"]
        if cuda:
            cells += [f"{r['peak_gpu_gb']:.2f}", utilisation(r["rollout_util"]), utilisation(r["update_util"])]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"device: {'; '.join(sorted(devices)) or args.device}")


if __name__ == "__main__":
    main()
