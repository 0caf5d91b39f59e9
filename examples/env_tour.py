"""A tour of BabyAI-Text: one text observation, then random vs BabyAIBot success on every id.

    python examples/env_tour.py [--episodes 50] [--out results]

Writes ``<out>/env_tour.md`` (the success table) and prints where it is.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import gymnasium as gym
import numpy as np
from minigrid.utils.baby_ai_bot import BabyAIBot
from tqdm import tqdm

import babyai_text
from glam_experiments.cli import ArgumentParser, require_at_least, run_command, summary


def success_rate(env_id: str, episodes: int, agent: str) -> float:
    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    successes = 0
    for seed in range(episodes):
        env.reset(seed=seed)
        bot = BabyAIBot(env.unwrapped) if agent == "bot" else None
        while True:
            if bot is not None:
                with contextlib.redirect_stdout(io.StringIO()):
                    action = bot.replan()
            else:
                action = int(rng.integers(0, 6))
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        successes += info["success"]
    return successes / episodes


def main(argv: list[str]) -> None:
    parser = ArgumentParser(description=summary(__doc__))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    require_at_least({"episodes": args.episodes})

    env = gym.make("BabyAI-Text-GoTo-v0", render_mode="ansi")
    obs, _ = env.reset(seed=0)
    print("A BabyAI-Text observation (decoded from the arrays SB3 stores):")
    print(babyai_text.decode_observation(obs))
    print(env.render())

    rows = ["| env id | random success | BabyAIBot success |", "|---|---|---|"]
    for env_id in tqdm(babyai_text.registered_ids(), desc="levels"):
        random_rate = success_rate(env_id, args.episodes, "random")
        bot_rate = success_rate(env_id, args.episodes, "bot")
        rows.append(f"| {env_id} | {random_rate:.2f} | {bot_rate:.2f} |")
    table = "\n".join(rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "env_tour.md"
    path.write_text(f"# BabyAI-Text tour ({args.episodes} episodes per id, seeds 0..{args.episodes - 1})\n\n{table}\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    run_command(main)
