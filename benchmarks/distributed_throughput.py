"""PPO env-steps/s of one process vs N ``torchrun`` ranks on the same machine, in one run.

Runs ``examples/train_llm_ppo.py`` (the main job's recipe unless flags say otherwise)
for the same total frames as one process with all the cores' threads, then under
``torchrun --nproc_per_node=N`` with the threads split over the ranks (gloo on CPU, one
GPU per rank with ``--device cuda``).  env-steps/s is read from the runs' own
``charts/SPS`` (frames over all ranks ÷ training time, model loading excluded); peak
memory is the largest process's resident set.

    python benchmarks/distributed_throughput.py [--ranks 2] [--frames 512] [-- <train_llm_ppo flags>]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "examples" / "train_llm_ppo.py")


def run(launcher: list[str], threads: int, frames: int, extra: list[str]) -> tuple[float, float]:
    """(env-steps/s, peak RSS in GiB of the largest process) of one training run."""
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        args = [*launcher, SCRIPT, "--total-timesteps", str(frames), "--run-dir", runs, "--torch-threads", str(threads)]
        proc = subprocess.Popen([*args, *extra], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        # wait4: this run's own peak (the largest of the process and the ranks it waited for)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(args)} failed")
        (run_dir,) = Path(runs).iterdir()
        events = EventAccumulator(str(run_dir))
        events.Reload()
        sps = events.Scalars("charts/SPS")[-1].value
    return sps, usage.ru_maxrss / 2**20  # kB -> GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--frames", type=int, default=512, help="frames of each run (all ranks together)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of the single process")
    parser.add_argument("extra", nargs="*", help="flags passed on to train_llm_ppo.py (after --)")
    args = parser.parse_args()
    single, single_peak = run([sys.executable], args.threads, args.frames, args.extra)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.ranks}"]
    per_rank = max(1, args.threads // args.ranks)
    multi, multi_peak = run(torchrun, per_rank, args.frames, args.extra)
    print(f"frames per run: {args.frames}; flags: {' '.join(args.extra) or '(main job recipe)'}")
    print("| run | env-steps/s | peak RSS (largest process, GiB) |")
    print("|---|---|---|")
    print(f"| 1 process × {args.threads} threads | {single:.2f} | {single_peak:.2f} |")
    print(f"| {args.ranks} ranks × {per_rank} threads | {multi:.2f} | {multi_peak:.2f} |")
    print(f"ratio ({args.ranks} ranks ÷ 1 process): {multi / single:.2f}x")


if __name__ == "__main__":
    main()
