"""The main job: train the default LLM agent (SmolLM2-135M) with PPO on a small GoTo level,
then compare it with its zero-shot self on that level and on the generalization variants.

    python examples/main_job.py [--total-timesteps 2048] [--episodes 40] [--out results]

Writes to ``<out>/``: ``evaluation.{md,csv,json,png}`` (zero-shot vs trained, success
with 99 % CIs per test), ``learning_curve.png`` and ``episodes.csv`` of training, and
the trained agent ``model.zip``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from stable_baselines3 import PPO

from glam_baselines.curves import plot
from glam_baselines.envs import make_text_vec_env
from glam_baselines.training import train
from llm_policy import LLMPolicy
from llm_policy.evaluate import evaluate, markdown, write


@dataclass
class Args:
    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    model: str = "SmolLM2-135M-Instruct"
    total_timesteps: int = 2048
    """PPO env-steps (about 2 per second on 2 CPU cores in top-k mode)"""
    episodes: int = 40
    """evaluation episodes per test, before and after"""
    finetune: str = "top_k"
    top_k: int = 2
    n_envs: int = 8
    n_steps: int = 16
    batch_size: int = 64
    n_epochs: int = 4
    learning_rate: float = 1e-4
    ent_coef: float = 0.01
    seed: int = 1
    out: Path = Path("results")


def main(args: Args) -> None:
    start = time.perf_counter()
    print(f"1/3 zero-shot evaluation of {args.model} ({args.episodes} episodes per test)")
    before = evaluate([args.model], "small", episodes=args.episodes)

    print(f"2/3 PPO training on {args.env_id} for {args.total_timesteps} env-steps ({args.finetune})")
    env = make_text_vec_env(args.env_id, args.n_envs, args.seed)
    model = PPO(
        LLMPolicy,
        env,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        learning_rate=args.learning_rate,
        ent_coef=args.ent_coef,
        gae_lambda=0.99,
        normalize_advantage=False,
        seed=args.seed,
        policy_kwargs={"model": args.model, "finetune": args.finetune, "top_k": args.top_k},
    )
    run_dir = train(model, args.total_timesteps, args.out / "training", save_model=True)

    print("3/3 evaluation of the trained agent")
    after = evaluate([str(run_dir / "model.zip")], "small", episodes=args.episodes)
    for r in before:
        r.agent = f"{args.model} zero-shot"
    for r in after:
        r.agent = f"{args.model} after {args.total_timesteps} PPO steps"
    results = before + after
    paths = write(results, args.out)
    plot([run_dir], args.out / "learning_curve.png", window=50)
    print(markdown(results))
    print(f"\ndone in {(time.perf_counter() - start) / 60:.1f} min; results in {args.out}/:")
    for path in [*paths.values(), args.out / "learning_curve.png", run_dir / "episodes.csv", run_dir / "model.zip"]:
        print(f"  {path}")


if __name__ == "__main__":
    main(tyro.cli(Args))
