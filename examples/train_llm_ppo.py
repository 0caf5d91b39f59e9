"""Train a language model (GLAM) with stock SB3 PPO on BabyAI-Text; ``--npae`` for random weights.

python examples/train_llm_ppo.py --env-id BabyAI-Text-GoToS5N2-v0 --total-timesteps 2048
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from stable_baselines3 import PPO

from glam_baselines.envs import make_text_vec_env
from glam_baselines.training import run_name, train
from llm_policy import LLMPolicy, PromptTemplate


@dataclass
class Args:
    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    """a BabyAI-Text id"""
    model: str = "SmolLM2-135M-Instruct"
    """built-in model, local directory or hub id"""
    npae: bool = False
    """same architecture with random weights (GLAM's NPAE baseline)"""
    finetune: str = "lora"
    """full | lora | top_k | frozen"""
    top_k: int = 2
    """blocks trained with --finetune top_k"""
    total_timesteps: int = 2048
    n_envs: int = 4
    n_steps: int = 16
    """steps per env and rollout"""
    batch_size: int = 64
    n_epochs: int = 2
    learning_rate: float = 1e-4
    """value head's rate (and the LM's unless --lm-learning-rate)"""
    lm_learning_rate: float | None = None
    gamma: float = 0.99
    gae_lambda: float = 0.99
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    reward_scale: float = 1.0
    prompt_history: int | None = None
    """observations in the prompt (default: all the env keeps, 3 as GLAM)"""
    micro_batch_size: int | None = 16
    """chunks of the PPO minibatch recomputed in backward (memory)"""
    seed: int = 1
    run_dir: Path = Path("runs")
    save_model: bool = False
    """save the agent to <run_dir>/<run_name>/model.zip"""
    torch_threads: int | None = None


def main(args: Args) -> PPO:
    kind = "npae" if args.npae else "llm"
    name = run_name(args.env_id, f"{kind}_ppo", args.seed)
    env = make_text_vec_env(args.env_id, args.n_envs, args.seed, args.reward_scale)
    model = PPO(
        LLMPolicy,
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
        normalize_advantage=False,  # as GLAM
        seed=args.seed,
        policy_kwargs={
            "model": args.model,
            "pretrained": not args.npae,
            "finetune": args.finetune,
            "top_k": args.top_k,
            "lm_learning_rate": args.lm_learning_rate,
            "micro_batch_size": args.micro_batch_size,
            "prompt_template": PromptTemplate(history=args.prompt_history),
        },
    )
    train(model, args.total_timesteps, args.run_dir / name, args.save_model, args.torch_threads)
    return model


if __name__ == "__main__":
    main(tyro.cli(Args))
