"""Train DRRN (GRU encodings of GLAM's prompt and of each action name) with stock SB3 DQN.

python examples/train_drrn.py --env-id BabyAI-Text-GoToS5N2-v0 --total-timesteps 50000
python examples/train_drrn.py --env-id BabyAI-Text-PickUpS5N2-v0 --demonstrations babyai-text/PickUpS5N2/bot-v0

``--demonstrations`` fills the replay buffer with a Minari dataset's transitions (the bot's,
from ``python -m glam_experiments.demonstrations``) before training: docs/behaviour_cloning.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from stable_baselines3 import DQN

from glam_baselines import DRRNPolicy
from glam_experiments.cli import require_at_least, run_command
from glam_experiments.envs import make_text_vec_env
from glam_experiments.training import new_run_dir, train


@dataclass
class Args:
    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    """a BabyAI-Text id"""
    total_timesteps: int = 50_000
    n_envs: int = 4
    learning_rate: float = 1e-4
    gamma: float = 0.9
    batch_size: int = 64
    buffer_size: int = 50_000
    """replay buffer transitions, ~10.5 kB each (50,000: ~0.5 GB; SB3's default 1e6 would be ~10.5 GB)"""
    learning_starts: int = 1_000
    train_freq: int = 4
    gradient_steps: int = 1
    target_update_interval: int = 1_000
    exploration: str = "softmax"
    """softmax: sample softmax(Q / temperature) as GLAM; epsilon: epsilon-greedy"""
    temperature: float = 1.0
    exploration_fraction: float = 0.3
    """epsilon-greedy only"""
    exploration_final_eps: float = 0.05
    """epsilon-greedy only"""
    embedding_dim: int = 128
    hidden_dim: int = 128
    reward_scale: float = 1.0
    demonstrations: str | None = None
    """a Minari dataset whose transitions fill the replay buffer before training (glam_algorithms.bc)"""
    demo_episodes: int | None = None
    """only the dataset's first N episodes (default: all)"""
    seed: int = 1
    run_dir: Path = Path("runs")
    save_model: bool = False
    torch_threads: int | None = None


def main(args: Args) -> DQN:
    require_at_least({"total_timesteps": args.total_timesteps, "n_envs": args.n_envs, "batch_size": args.batch_size})
    require_at_least({"buffer_size": args.buffer_size, "train_freq": args.train_freq})
    require_at_least({"target_update_interval": args.target_update_interval, "gradient_steps": args.gradient_steps})
    require_at_least({"learning_starts": args.learning_starts}, minimum=0)
    require_at_least({"demo_episodes": args.demo_episodes})
    run_dir = new_run_dir(args.run_dir, args.env_id, "drrn_demos" if args.demonstrations else "drrn", args.seed)
    env = make_text_vec_env(args.env_id, args.n_envs, args.seed, args.reward_scale)
    softmax = args.exploration == "softmax"
    model = DQN(
        DRRNPolicy,
        env,
        learning_rate=args.learning_rate,
        gamma=args.gamma,
        batch_size=args.batch_size,
        buffer_size=args.buffer_size,
        learning_starts=args.learning_starts,
        train_freq=args.train_freq,
        gradient_steps=args.gradient_steps,
        target_update_interval=args.target_update_interval,
        # softmax exploration replaces epsilon: DQN's random actions are switched off
        exploration_initial_eps=0.0 if softmax else 1.0,
        exploration_final_eps=0.0 if softmax else args.exploration_final_eps,
        exploration_fraction=args.exploration_fraction,
        seed=args.seed,
        policy_kwargs={
            "exploration": args.exploration,
            "temperature": args.temperature,
            "embedding_dim": args.embedding_dim,
            "hidden_dim": args.hidden_dim,
        },
    )
    if args.demonstrations:
        from glam_algorithms.bc import prefill_replay_buffer
        from glam_experiments.demonstrations import load_demonstrations

        dataset = load_demonstrations(args.demonstrations)
        added = prefill_replay_buffer(model, dataset, args.demo_episodes, args.reward_scale)
        print(f"replay buffer filled with {added} transitions of {args.demonstrations}")
    train(model, args.total_timesteps, run_dir, args.save_model, args.torch_threads)
    return model


if __name__ == "__main__":
    run_command(lambda argv: main(tyro.cli(Args, args=argv)))
