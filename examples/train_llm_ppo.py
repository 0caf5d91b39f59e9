"""Train the GLAM agent (a language model as the policy) with stock SB3 PPO, CleanRL-style.

    python examples/train_llm_ppo.py --env-id BabyAI-Text-GoToS5N2-v0 [--finetune full] [--npae]

The flags are the fields of :class:`glam_experiments.configs.LLMPPOConfig` (the main job's
CPU recipe by default) plus the run's own.  Logs ``charts/*`` and ``losses/*`` to
TensorBoard under ``runs/<run name>/`` and every episode to ``episodes.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import tyro
from stable_baselines3 import PPO

from glam_experiments.configs import LLMPPOConfig
from glam_experiments.envs import make_text_vec_env
from glam_experiments.training import run_name, train


@dataclass
class Args(LLMPPOConfig):
    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    """a BabyAI-Text id"""
    npae: bool = False
    """same architecture with random weights (GLAM's NPAE baseline)"""
    total_timesteps: int = 2048
    reward_scale: float = 1.0
    seed: int = 1
    run_dir: Path = Path("runs")
    save_model: bool = False
    """save the agent to <run_dir>/<run_name>/model.zip"""
    torch_threads: int | None = None


def main(args: Args) -> PPO:
    if args.npae:
        args = replace(args, pretrained=False)
    name = run_name(args.env_id, "npae_ppo" if args.npae else "llm_ppo", args.seed)
    env = make_text_vec_env(args.env_id, args.n_envs, args.seed, args.reward_scale)
    model = args.make(env, seed=args.seed)
    train(model, args.total_timesteps, args.run_dir / name, args.save_model, args.torch_threads)
    return model


if __name__ == "__main__":
    main(tyro.cli(Args))
