"""Behaviour cloning of the GLAM agent from a Minari dataset of demonstrations, then PPO, CleanRL-style.

    python examples/train_bc.py --dataset-id babyai-text/GoToS5N2/bot-v0 --save-model
    python examples/train_bc.py --dataset-id babyai-text/GoToS5N2/bot-v0 --ppo-timesteps 2048  # BC, then PPO

The flags are the fields of :class:`glam_experiments.configs.LLMPPOConfig` (so the policy is
built exactly as PPO's: model, fine-tuning mode, rates, prompt) plus cloning's own.  The policy
is trained on the dataset's actions with :func:`glam_algorithms.bc.behaviour_clone`
(``losses/bc_*`` and ``charts/bc_*`` in TensorBoard under ``runs/<run name>/``), then, with
``--ppo-timesteps N``, by stock SB3 PPO for N frames in the same run folder (``charts/*``,
``losses/*``, ``episodes.csv``).  See ``docs/behaviour_cloning.md``.

Under ``torchrun`` the cloning is data parallel (each rank clones an equal share of the
steps; the gradients are averaged) and PPO runs as in ``train_llm_ppo.py`` (each rank with
its own ``--n-envs`` envs; ``--ppo-timesteps`` counts the frames of all ranks):

    torchrun --standalone --nproc_per_node=2 examples/train_bc.py --dataset-id ... --ppo-timesteps 1024
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from torch.distributed.elastic.multiprocessing.errors import record

from glam_algorithms.bc import behaviour_clone
from glam_experiments.callbacks import GroundingLogger
from glam_experiments.cli import UsageError, require_at_least, run_command
from glam_experiments.configs import LLMPPOConfig
from glam_experiments.demonstrations import load_demonstrations
from glam_experiments.distributed import close_ranks, init_ranks, rank_seed
from glam_experiments.training import new_run_dir, record_flags, train


@dataclass
class Args(LLMPPOConfig):
    dataset_id: str | None = None
    """the Minari dataset of demonstrations (required), e.g. from python -m glam_experiments.demonstrations"""
    env_id: str | None = None
    """the BabyAI-Text id PPO's env runs (default: the dataset's); its spaces must be the dataset's"""
    episodes: int | None = None
    """clone from the dataset's first N episodes only (default: all)"""
    epochs: int = 3
    """passes over the demonstrations"""
    bc_batch_size: int = 32
    """demonstration steps per gradient step"""
    bc_learning_rate: float | None = None
    """the LM's learning rate while cloning, the value head's scaled alike (default: --lm-learning-rate, PPO's)"""
    bc_value_coef: float = 0.0
    """weight of the value head's fit to the demonstrations' discounted returns (0: not fitted, PPO's critic
    learns the cloned policy's values; fitted to the bot's, it misled PPO: docs/behaviour_cloning.md)"""
    val_fraction: float = 0.1
    """episodes held out to measure agreement with the demonstrations after each epoch"""
    ppo_timesteps: int = 0
    """then train with PPO for this many frames (0: cloning only)"""
    seed: int = 1
    run_dir: Path = Path("runs")
    save_model: bool = False
    """save the agent to <run_dir>/<run_name>/model.zip (and, with --ppo-timesteps, the cloned agent before its RL
    stage to cloned.zip)"""
    torch_threads: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: the GPU when CUDA is available (one per rank under torchrun)"""
    grounding_every: int | None = None
    """every N PPO updates, bot agreement, state dependence, value spread and probe prompts into TensorBoard
    (grounding/*, probes/*) and grounding.csv (the first measurement: the cloned policy)"""
    grounding_states: int = 200
    """bot states of the grounding diagnostics"""


def check(args: Args) -> None:
    """Refuse flags that cannot run, with one line naming the flag."""
    args.check()
    if args.dataset_id is None:
        raise UsageError("--dataset-id is required: the Minari dataset to clone (docs/behaviour_cloning.md)")
    require_at_least({"epochs": args.epochs, "bc_batch_size": args.bc_batch_size, "episodes": args.episodes})
    require_at_least({"ppo_timesteps": args.ppo_timesteps, "bc_value_coef": args.bc_value_coef}, minimum=0)
    if not 0 <= args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    require_at_least({"grounding_every": args.grounding_every, "grounding_states": args.grounding_states})


def main(args: Args) -> PPO:
    """Flags are checked before torchrun's error recording, so a user's mistake stays one line on every rank."""
    check(args)
    return _train(args)


@record  # under torchrun, a rank's exception is reported with its traceback
def _train(args: Args) -> PPO:
    ranks = init_ranks(args.device)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    dataset = load_demonstrations(args.dataset_id)
    env_id = args.env_id or (dataset.env_spec.id if dataset.env_spec is not None else None)
    if env_id is None:
        raise UsageError(f"dataset {args.dataset_id!r} names no env: pass --env-id")
    run_dir = new_run_dir(args.run_dir, env_id, f"bc_llm_{args.algo}" if args.ppo_timesteps else "bc_llm", args.seed)
    if ranks.is_main:
        record_flags(run_dir, args)
    env = args.make_env(env_id, rank_seed(args.seed, args.n_envs, ranks))
    model = args.make(env, seed=rank_seed(args.seed, args.n_envs, ranks), device=ranks.device)
    history = behaviour_clone(
        model,
        dataset,
        epochs=args.epochs,
        batch_size=args.bc_batch_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        episodes=args.episodes,
        lm_learning_rate=args.bc_learning_rate,
        value_coef=args.bc_value_coef,
        reward_scale=args.reward_scale,
        run_dir=run_dir,
    )
    if history[-1].val_accuracy is not None and ranks.is_main:
        print(
            f"agreement with the held-out demonstrations: {history[0].val_accuracy:.3f} before cloning, "
            f"{history[-1].val_accuracy:.3f} after {args.epochs} epochs"
        )
    if args.save_model and args.ppo_timesteps and ranks.is_main:
        model.save(run_dir / "cloned.zip")  # the agent before its RL stage, to compare with the one after
    recorders: list[BaseCallback] = args.callbacks()
    if args.grounding_every and args.ppo_timesteps:
        recorders.append(GroundingLogger(env_id, args.grounding_every, run_dir, args.grounding_states))
    # PPO from the cloned policy (none with --ppo-timesteps 0); saves and says where the logs are
    train(model, args.ppo_timesteps, run_dir, args.save_model, args.torch_threads, callbacks=recorders)
    close_ranks()
    return model


if __name__ == "__main__":
    run_command(lambda argv: main(tyro.cli(Args, args=argv)))
