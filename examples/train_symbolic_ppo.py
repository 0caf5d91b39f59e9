"""Train BabyAI's Symbolic-PPO baseline (FiLM CNN over the symbolic view, LSTM memory), CleanRL-style.

    python examples/train_symbolic_ppo.py --env-id BabyAI-Text-GoToS5N2-v0 [--no-recurrent]

The flags are the fields of :class:`glam_experiments.configs.SymbolicPPOConfig` (which
``hyperparams/ppo.yml`` and ``ppo_lstm.yml`` repeat for rl-zoo3, checked by a test) plus
the run's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from stable_baselines3 import PPO

from glam_experiments.cli import require_at_least, run_command
from glam_experiments.configs import SymbolicPPOConfig
from glam_experiments.envs import make_text_vec_env
from glam_experiments.training import new_run_dir, train


@dataclass
class Args(SymbolicPPOConfig):
    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    """a BabyAI-Text id"""
    total_timesteps: int = 100_000
    seed: int = 1
    run_dir: Path = Path("runs")
    save_model: bool = False
    torch_threads: int | None = None


def main(args: Args) -> PPO:
    args.check()
    require_at_least({"total_timesteps": args.total_timesteps})
    algo = "symbolic_recurrent_ppo" if args.recurrent else "symbolic_ppo"
    run_dir = new_run_dir(args.run_dir, args.env_id, algo, args.seed)
    env = make_text_vec_env(args.env_id, args.n_envs, args.seed, args.reward_scale)
    model = args.make(env, seed=args.seed)
    train(model, args.total_timesteps, run_dir, args.save_model, args.torch_threads)
    return model


if __name__ == "__main__":
    run_command(lambda argv: main(tyro.cli(Args, args=argv)))
