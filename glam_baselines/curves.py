"""Success-rate-vs-frames tables and plots from training runs' ``episodes.csv``.

python -m glam_baselines.curves RUN_DIR [RUN_DIR ...] --bin 5000 --png results/curves.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_episodes(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frames at which episodes ended, and their success (0/1)."""
    path = Path(run_dir) / "episodes.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass run folders written by the examples/ training scripts")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no finished episode")
    frames = np.array([int(r["frames"]) for r in rows])
    success = np.array([float(r["success"]) for r in rows])
    return frames, success


def binned_success(frames: np.ndarray, success: np.ndarray, bin_size: int) -> list[tuple[int, int, float, int]]:
    """Per bin of ``bin_size`` frames: (start, end, success rate, episodes)."""
    out = []
    for start in range(0, int(frames.max()) + 1, bin_size):
        inside = (frames > start) & (frames <= start + bin_size)
        if inside.any():
            out.append((start, start + bin_size, float(success[inside].mean()), int(inside.sum())))
    return out


def label(run_dir: Path) -> str:
    """``<env>__<algo>__<seed>__<time>`` → ``algo (seed)``."""
    parts = Path(run_dir).name.split("__")
    return f"{parts[1]} (seed {parts[2]})" if len(parts) >= 3 else Path(run_dir).name


def markdown_table(runs: list[Path], bin_size: int) -> str:
    lines = []
    for run in runs:
        frames, success = read_episodes(run)
        lines += [f"**{label(run)}** — {len(frames)} episodes, {int(frames.max())} frames", ""]
        lines += ["| frames | success rate | episodes |", "|---|---|---|"]
        lines += [f"| {a:,}–{b:,} | {rate:.2f} | {n} |" for a, b, rate, n in binned_success(frames, success, bin_size)]
        lines.append("")
    return "\n".join(lines)


def plot(runs: list[Path], png: Path, window: int = 100) -> None:
    """Success rate (moving mean over ``window`` episodes) against frames, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        frames, success = read_episodes(run)
        kernel = min(window, len(success))
        smooth = np.convolve(success, np.ones(kernel) / kernel, mode="valid")
        ax.plot(frames[kernel - 1 :], smooth, label=label(run))
    ax.set_xlabel("frames")
    ax.set_ylabel(f"success rate (last {window} episodes)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--bin", type=int, default=5000, help="frames per table row")
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    print(markdown_table(args.runs, args.bin))
    if args.png:
        plot(args.runs, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
