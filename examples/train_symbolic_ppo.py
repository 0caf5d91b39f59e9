"""Train Symbolic-PPO (BabyAI's FiLM CNN over the symbolic view, LSTM memory) on BabyAI-Text.

python examples/train_symbolic_ppo.py --env-id BabyAI-Text-GoToS5N2-v0 --total-timesteps 100000
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from glam_baselines import BabyAIFeaturesExtractor
from glam_baselines.envs import make_text_vec_env
from glam_baselines.training import run_name, train


@dataclass
class Args:
    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    """a BabyAI-Text id"""
    recurrent: bool = True
    """sb3-contrib RecurrentPPO with an LSTM (as the original); False: stock PPO"""
    total_timesteps: int = 100_000
    n_envs: int = 8
    n_steps: int = 128
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 1e-4
    gamma: float = 0.99
    gae_lambda: float = 0.99
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    reward_scale: float = 20.0
    """BabyAI's ×20 reward scaling (a wrapper; success is read from info)"""
    lstm_hidden_size: int = 128
    seed: int = 1
    run_dir: Path = Path("runs")
    save_model: bool = False
    torch_threads: int | None = None


def main(args: Args) -> PPO | RecurrentPPO:
    algo = "symbolic_recurrent_ppo" if args.recurrent else "symbolic_ppo"
    name = run_name(args.env_id, algo, args.seed)
    env = make_text_vec_env(args.env_id, args.n_envs, args.seed, args.reward_scale)
    policy_kwargs: dict = {"features_extractor_class": BabyAIFeaturesExtractor, "net_arch": [64]}
    if args.recurrent:
        policy_kwargs["lstm_hidden_size"] = args.lstm_hidden_size
    algo_cls, policy = (RecurrentPPO, "MultiInputLstmPolicy") if args.recurrent else (PPO, "MultiInputPolicy")
    model = algo_cls(
        policy,
        env,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        learning_rate=args.learning_rate,
        gamma=args.gamma,
        gae_lambda=args.gae_lambda,
        clip_range=args.clip_range,
        ent_coef=args.ent_coef,
        vf_coef=args.vf_coef,
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        policy_kwargs=policy_kwargs,
    )
    train(model, args.total_timesteps, args.run_dir / name, args.save_model, args.torch_threads)
    return model


if __name__ == "__main__":
    main(tyro.cli(Args))
