"""Learning curves from training runs' TensorBoard logs: success rate against frames,
mean and spread over seeds.

    python -m glam_experiments.curves runs/* --bin 5000 --png results/curves.png

A run is a folder written by the ``examples/`` training scripts (CleanRL's name
``<env>__<algo>__<seed>__<time>``); runs that differ only in seed and time form one
curve.  Episodes are read from the TensorBoard tag ``charts/episodic_success``, or from
the run's ``episodes.csv`` when it has no event file.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glam_experiments.cli import ArgumentParser, require_at_least, run_command, summary

SUCCESS_TAG = "charts/episodic_success"


class _ResumePurges(logging.Filter):
    """Drops TensorBoard's "out of order event.step ... TensorFlow restart" warning: a resumed
    run (``--resume``) starts its event file with a ``purge_step`` on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Detected out of order event.step")


def load_events(run_dir: Path) -> Any:
    """The run's TensorBoard scalars, read as TensorBoard shows them (a resumed run's purged steps hidden)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    logger, quiet = logging.getLogger("tensorboard"), _ResumePurges()
    logger.addFilter(quiet)
    try:
        events.Reload()
    finally:
        logger.removeFilter(quiet)
    return events


def read_episodes(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frames at which the run's episodes ended, and their success (0/1), in order."""
    run_dir = Path(run_dir)
    if any(run_dir.glob("events.out.tfevents.*")):
        events = load_events(run_dir)
        if SUCCESS_TAG in events.Tags()["scalars"]:
            scalars = events.Scalars(SUCCESS_TAG)
            return np.array([s.step for s in scalars]), np.array([s.value for s in scalars], dtype=float)
    path = run_dir / "episodes.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} has neither a TensorBoard log with {SUCCESS_TAG!r} nor an episodes.csv: pass run "
            "folders written by the examples/ training scripts"
        )
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no finished episode")
    return np.array([int(r["frames"]) for r in rows]), np.array([float(r["success"]) for r in rows])


def binned_success(frames: np.ndarray, success: np.ndarray, bin_size: int) -> list[tuple[int, int, float, int]]:
    """Per bin of ``bin_size`` frames: (start, end, success rate, episodes)."""
    if len(frames) == 0:
        raise ValueError("no finished episode to bin")
    out = []
    for start in range(0, int(frames.max()) + 1, bin_size):
        inside = (frames > start) & (frames <= start + bin_size)
        if inside.any():
            out.append((start, start + bin_size, float(success[inside].mean()), int(inside.sum())))
    return out


def group_name(run_dir: Path) -> str:
    """``<env>__<algo>__<seed>__<time>`` → ``<algo> on <env>``; other names stay as they are."""
    parts = Path(run_dir).name.split("__")
    return f"{parts[1]} on {parts[0]}" if len(parts) >= 3 else Path(run_dir).name


def group_runs(runs: list[Path]) -> dict[str, list[Path]]:
    """Runs keyed by :func:`group_name`, in first-seen order."""
    groups: dict[str, list[Path]] = {}
    for run in runs:
        groups.setdefault(group_name(run), []).append(Path(run))
    return groups


@dataclass
class BinStats:
    """Success in one frame bin over a group's seeds."""

    start: int
    end: int
    mean: float
    std: float
    low: float
    high: float
    seeds: int
    episodes: int


def group_bins(runs: list[Path], bin_size: int) -> list[BinStats]:
    """Per frame bin, the mean, standard deviation (ddof 1; NaN for one seed), min and max
    over the runs of each run's success rate in that bin."""
    per_run = [{a: (rate, n) for a, _, rate, n in binned_success(*read_episodes(r), bin_size)} for r in runs]
    stats = []
    for start in sorted(set().union(*per_run)):
        rates = np.array([run[start][0] for run in per_run if start in run])
        std = float(np.std(rates, ddof=1)) if len(rates) > 1 else float("nan")
        episodes = sum(run[start][1] for run in per_run if start in run)
        stats.append(
            BinStats(start, start + bin_size, float(rates.mean()), std, rates.min(), rates.max(), len(rates), episodes)
        )
    return stats


def has_finished_episodes(run_dir: Path) -> bool:
    """Whether the run logged at least one finished episode (a short run may have none)."""
    try:
        return len(read_episodes(run_dir)[0]) > 0
    except ValueError:
        return False


def markdown_table(runs: list[Path], bin_size: int) -> str:
    """One table per group: success rate per frame bin, mean ± std over seeds (a group whose
    runs finished no episode says so)."""
    lines = []
    for name, members in group_runs(runs).items():
        members = [r for r in members if has_finished_episodes(r)]
        if not members:
            lines += [f"**{name}** — no finished episode yet", ""]
            continue
        frames = [int(read_episodes(r)[0].max()) for r in members]
        lines += [f"**{name}** — {len(members)} seed(s), up to {max(frames):,} frames", ""]
        lines += [
            "| frames | success rate (mean ± std over seeds) | min–max | seeds | episodes |",
            "|---|---|---|---|---|",
        ]
        for b in group_bins(members, bin_size):
            spread = f" ± {b.std:.2f}" if b.seeds > 1 else ""
            cells = [
                f"{b.start:,}–{b.end:,}",
                f"{b.mean:.2f}{spread}",
                f"{b.low:.2f}–{b.high:.2f}",
                b.seeds,
                b.episodes,
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _agent_group(agent: str) -> str:
    """A saved agent of a training run → its run group (:func:`group_name`); other agents as named."""
    path = Path(agent)
    return group_name(path.parent) if path.suffix == ".zip" and path.parent.name.count("__") >= 2 else agent


def _mean_sd(values: list[float], digits: int = 2) -> str:
    if not values:
        return "—"
    text = f"{np.mean(values):.{digits}f}"
    return text + (f" ± {np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else "")


def evaluation_table(evaluations: list[Path]) -> str:
    """The final agents' evaluations (``evaluation.csv`` files of :mod:`glam_experiments.evaluate`) per
    group of runs and test: success mean ± std over the seeds, all their episodes pooled with the
    Wilson 99 % interval, and the grounding diagnostics' mean ± std (the best constant action's
    agreement in brackets).  Agents that are not a training run's model (random, zero-shot) get a
    row of their own."""
    from glam_experiments.statistics import wilson_bounds

    rows: list[dict[str, str]] = []
    for path in evaluations:
        with open(path) as f:
            found = list(csv.DictReader(f))
        if not found:
            raise ValueError(f"{path} holds no result")
        rows += found
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((_agent_group(row["agent"]), f"{row['env_id']} {row['label']}"), []).append(row)
    several_tests = len({test for _, test in groups}) > 1
    lines = [
        "| agent | seeds | episodes | success (mean ± std over seeds) | pooled [99 % Wilson] "
        "| bot agreement (best constant) | state dependence |",
        "|---|---|---|---|---|---|---|",
    ]
    for (agent, test), members in groups.items():
        rates = [float(r["success_rate"]) for r in members]
        counts = [int(r["episodes"]) for r in members]
        successes = sum(round(p * n) for p, n in zip(rates, counts, strict=True))
        low, high = wilson_bounds(successes, sum(counts))

        def column(key: str, members: list[dict[str, str]] = members) -> list[float]:
            return [float(r[key]) for r in members if r.get(key) not in (None, "")]

        agreement = _mean_sd(column("bot_agreement"))
        if column("bot_agreement"):
            agreement += f" ({np.mean(column('constant_agreement')):.2f})"
        cells = [
            agent + (f", {test}" if several_tests else ""),
            len(members),
            sum(counts),
            _mean_sd(rates),
            f"{successes / sum(counts):.2f} [{low:.2f}, {high:.2f}]",
            agreement,
            _mean_sd(column("state_dependence")),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def smoothed_curve(run: Path, window: int, grid: np.ndarray) -> np.ndarray:
    """The run's success rate over its last ``window`` episodes, at the frames of ``grid``."""
    frames, success = read_episodes(run)
    kernel = min(window, len(success))
    smooth = np.convolve(success, np.ones(kernel) / kernel, mode="valid")
    return np.interp(grid, frames[kernel - 1 :], smooth)


def plot(runs: list[Path], png: Path, window: int = 100, title: str | None = None) -> None:
    """Success rate (moving mean over ``window`` episodes) against frames: per group the
    mean over seeds, shaded ± one standard deviation when there are several seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = False
    for name, members in group_runs(runs).items():
        members = [r for r in members if has_finished_episodes(r)]
        if not members:
            continue
        plotted = True
        episodes = [read_episodes(r)[0] for r in members]
        start = max(f[min(window, len(f)) - 1] for f in episodes)
        end = min(int(f.max()) for f in episodes)  # frames every seed reached
        grid = np.linspace(start, max(end, start), 200)
        curves = np.stack([smoothed_curve(r, window, grid) for r in members])
        mean = curves.mean(axis=0)
        (line,) = ax.plot(grid, mean, label=f"{name} ({len(members)} seed{'s' * (len(members) > 1)})")
        if len(members) > 1:
            std = curves.std(axis=0, ddof=1)
            ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("frames")
    ax.set_ylabel(f"success rate (last {window} episodes)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if plotted:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished episode yet", ha="center", transform=ax.transAxes)
    if title:
        ax.set_title(title)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


#: TensorBoard tags of PPO's per-update statistics (CleanRL's names) in the diagnostics figure.
STABILITY_TAGS = ("losses/approx_kl", "losses/clipfrac", "losses/entropy", "losses/explained_variance")


def read_scalars(run_dir: Path, tags: tuple[str, ...] = STABILITY_TAGS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``tag -> (steps, values)`` of the run's TensorBoard scalars among ``tags`` (absent tags are left out)."""
    events = load_events(run_dir)
    present = set(events.Tags().get("scalars", []))
    out = {}
    for tag in tags:
        if tag in present:
            scalars = events.Scalars(tag)
            out[tag] = (np.array([e.step for e in scalars]), np.array([e.value for e in scalars], dtype=float))
    return out


def read_grounding(run_dir: Path) -> dict[str, np.ndarray]:
    """The columns of the run's ``grounding.csv`` (:class:`~glam_experiments.callbacks.GroundingLogger`)."""
    path = Path(run_dir) / "grounding.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: train with --grounding-every N to measure the grounding")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) if r[k] != "" else np.nan for r in rows]) for k in (rows[0] if rows else {})}


def plot_diagnostics(run_dir: Path, png: Path, window: int = 20, title: str | None = None) -> None:
    """One run's training diagnostics against frames, so that a run that stalls or peaks and falls
    back shows why: success (moving mean over ``window`` episodes); bot agreement beside the best
    constant action's, and state dependence; approx KL and clip fraction per update; entropy and
    the value's explained variance per update."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(6.5, 9), sharex=True)
    if has_finished_episodes(run_dir):
        frames, success = read_episodes(run_dir)
        kernel = min(window, len(success))
        axes[0].plot(frames[kernel - 1 :], np.convolve(success, np.ones(kernel) / kernel, mode="valid"))
    else:
        axes[0].text(0.5, 0.5, "no finished episode yet", ha="center", transform=axes[0].transAxes)
    axes[0].set_ylabel(f"success\n(last {window} episodes)")
    axes[0].set_ylim(0, 1)
    if (Path(run_dir) / "grounding.csv").exists():
        g = read_grounding(run_dir)
        axes[1].plot(g["frames"], g["bot_agreement"], marker="o", label="bot agreement")
        axes[1].plot(g["frames"], g["constant_agreement"], ls="--", color="grey", label="best constant action")
        axes[1].plot(g["frames"], g["state_dependence"], marker="s", label="state dependence (TV)")
        axes[1].legend(fontsize=7)
    axes[1].set_ylabel("grounding")
    axes[1].set_ylim(0, 1)
    scalars = read_scalars(run_dir)
    for ax, tags in ((axes[2], STABILITY_TAGS[:2]), (axes[3], STABILITY_TAGS[2:])):
        for tag in tags:
            if tag in scalars:
                steps, values = scalars[tag]
                # SB3 logs the entropy *loss* (minus the entropy)
                ax.plot(steps, -values if tag == "losses/entropy" else values, marker=".", label=tag.split("/")[1])
        ax.legend(fontsize=7)
    axes[2].set_ylabel("per update")
    axes[3].set_ylabel("per update")
    axes[3].set_xlabel("frames")
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        axes[0].set_title(title)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    run_command(_main, argv)


def _main(argv: list[str]) -> None:
    parser = ArgumentParser(description=summary(__doc__))
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--bin", type=int, default=5000, help="frames per table row")
    parser.add_argument("--window", type=int, default=100, help="episodes in the plot's moving mean")
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument(
        "--diagnostics",
        type=Path,
        default=None,
        help="also plot the first run's success, grounding, approx KL, clip fraction, entropy and explained "
        "variance against frames into this PNG",
    )
    parser.add_argument(
        "--evaluation",
        type=Path,
        nargs="+",
        default=[],
        help="evaluation.csv files of the runs' final agents (glam_experiments.evaluate): also print them per "
        "group of runs, mean ± std over seeds",
    )
    args = parser.parse_args(argv)
    require_at_least({"bin": args.bin, "window": args.window})
    print(markdown_table(args.runs, args.bin))
    if args.evaluation:
        print(evaluation_table(args.evaluation))
    if args.png:
        plot(args.runs, args.png, args.window)
        print(f"wrote {args.png}")
    if args.diagnostics:
        plot_diagnostics(args.runs[0], args.diagnostics)
        print(f"wrote {args.diagnostics}")


if __name__ == "__main__":
    main()
