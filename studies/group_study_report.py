"""The group-advantage study's table (``studies/group_study.sh`` writes what it reads).

    python studies/group_study_report.py [runs/groups]

One row per arm and seed: the agent before its RL stage (its seed's cloned agent,
``cloned/seedN``) and after it, on the same 200 seeded episodes (Wilson 99 % intervals), the gain and whether the
intervals separate, the grounding diagnostics after, the training successes and the RL
stage's minutes on one thread (frames / the run's last ``charts/SPS``); then per arm the mean
and sd over its seeds of the success after RL and of the gain, the seeds whose intervals
separate, and the random agent on the same episodes.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np


def _result(folder: Path) -> dict | None:
    path = folder / "evaluation.json"
    if not path.exists():
        return None
    rows = json.loads(path.read_text())
    return (rows["results"] if isinstance(rows, dict) else rows)[0]


def _interval(r: dict) -> str:
    return f"{r['success_rate']:.2f} [{r['success_low']:.2f}, {r['success_high']:.2f}]"


def _training(run: Path) -> tuple[int, int, float | None]:
    """Training episodes' successes and frames, and the RL stage's minutes."""
    with (run / "episodes.csv").open() as f:
        rows = list(csv.DictReader(f))
    frames = int(rows[-1]["frames"]) if rows else 0
    minutes = None
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run))
        events.Reload()
        sps = events.Scalars("charts/SPS")
        minutes = sps[-1].step / sps[-1].value / 60 if sps else None
    except (ImportError, KeyError):
        pass
    return sum(int(r["success"]) for r in rows), frames, minutes


def report(out: Path) -> str:
    lines = [
        "| arm | seed | frames | training successes (per RL minute) | before RL | after RL | gain | intervals apart "
        "| bot agreement (constant) | state dependence | RL minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    gains: dict[str, list[float]] = {}
    afters: dict[str, list[float]] = {}
    above: dict[str, int] = {}
    arms = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name not in {"random", "cloned"})
    for arm in arms:
        for seed_dir in sorted((out / arm).glob("seed*")):
            after = _result(seed_dir / "eval")
            before = _result(out / "cloned" / seed_dir.name / "eval")
            if after is None or before is None:
                continue
            (run,) = [p for p in seed_dir.iterdir() if (p / "model.zip").exists()]
            successes, frames, minutes = _training(run)
            gain = after["success_rate"] - before["success_rate"]
            gains.setdefault(arm, []).append(gain)
            afters.setdefault(arm, []).append(after["success_rate"])
            apart = "overlap"
            if after["success_low"] > before["success_high"]:
                apart = "above"
                above[arm] = above.get(arm, 0) + 1
            elif after["success_high"] < before["success_low"]:
                apart = "below"
            rate = f" ({successes / minutes:.1f})" if minutes else ""
            lines.append(
                f"| {arm} | {seed_dir.name[4:]} | {frames} | {successes}{rate} | {_interval(before)} | "
                f"{_interval(after)} | {gain:+.2f} | {apart} | {after['bot_agreement']:.2f} "
                f"({after['constant_agreement']:.2f}) | {after['state_dependence']:.2f} | "
                f"{f'{minutes:.1f}' if minutes else '–'} |"
            )
    lines.append("")
    for arm, values in gains.items():
        spread = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
        after_spread = f" ± {np.std(afters[arm], ddof=1):.2f}" if len(values) > 1 else ""
        lines.append(
            f"- {arm}: after RL {np.mean(afters[arm]):.2f}{after_spread}, gain {np.mean(values):+.3f}{spread} "
            f"over {len(values)} seed(s), {above.get(arm, 0)} above the cloned agent's interval"
        )
    random = _result(out / "random")
    if random is not None:
        lines.append(f"- random agent on the same episodes: {_interval(random)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/groups")))
