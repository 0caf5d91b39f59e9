"""Steps per second of BabyAI-Text vs raw minigrid on the same level, in one run.

Both envs are built with ``gym.make`` (same wrappers), driven by the same random
actions (0-5) with resets at episode ends; rounds alternate between the two so that
machine noise hits both alike, and the median round is reported.

    python benchmarks/env_throughput.py [--steps 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import gymnasium as gym
import numpy as np
from minigrid.minigrid_env import MiniGridEnv

import babyai_text  # noqa: F401  (registers the ids)

PAIRS = [
    ("BabyAI-GoToLocal-v0", "BabyAI-Text-GoTo-v0"),
    ("BabyAI-GoToLocalS5N2-v0", "BabyAI-Text-GoToS5N2-v0"),
]


def steps_per_second(env: gym.Env, actions: np.ndarray, seed: int) -> float:
    # minigrid prints every rejected level draw; send that to /dev/null, not the terminal.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        env.reset(seed=seed)
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(int(action))
            if terminated or truncated:
                env.reset()
        return len(actions) / (time.perf_counter() - start)


def with_minigrid_view(env: gym.Env) -> gym.Env:
    """The same BabyAI-Text env, but computing the view with minigrid's own gen_obs."""
    env.unwrapped.gen_obs = lambda: MiniGridEnv.gen_obs(env.unwrapped)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="steps per round and env")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    print(
        "| raw minigrid id | BabyAI-Text id | raw steps/s | ours steps/s | ratio ours/raw "
        "| ours with minigrid's view code, steps/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for raw_id, ours_id in PAIRS:
        envs = {
            "raw": gym.make(raw_id),
            "ours": gym.make(ours_id),
            "ours_minigrid_view": with_minigrid_view(gym.make(ours_id)),
        }
        actions = np.random.default_rng(0).integers(0, 6, size=args.steps)
        rates: dict[str, list[float]] = {name: [] for name in envs}
        for r in range(args.rounds):
            for name, env in envs.items():
                rates[name].append(steps_per_second(env, actions, seed=r))
        raw, ours, slow = (statistics.median(rates[k]) for k in envs)
        print(
            f"| {raw_id} | {ours_id} | {raw:,.0f} | {ours:,.0f} | {ours / raw:.2f} | {slow:,.0f} | {slow / raw:.2f} |"
        )


if __name__ == "__main__":
    main()
