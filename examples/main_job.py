"""The main job: train the default LLM agent (SmolLM2-135M) with PPO on a small GoTo level,
then compare it with its zero-shot self (and a random agent) on that level and on the
generalization variants.

    python examples/main_job.py [--total-timesteps 2048] [--episodes 20] [--out results]

Writes to ``<out>/``: ``evaluation.{md,csv,json,png}`` (zero-shot vs trained vs random,
success with 99 % CIs per test), ``learning_curve.png`` (training success against
frames), and under ``training/`` the TensorBoard log, ``episodes.csv`` and the trained
agent ``model.zip``.  The defaults finish in about 30 minutes on a 2-core CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from stable_baselines3 import PPO

from glam_baselines.curves import markdown_table, plot
from glam_baselines.envs import make_text_vec_env
from glam_baselines.training import train
from llm_policy import LLMPolicy, PromptTemplate
from llm_policy.evaluate import evaluate, markdown, write


@dataclass
class Args:
    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    """training level (the ``small`` evaluation suite is built on GoToS5N2)"""
    model: str = "SmolLM2-135M-Instruct"
    total_timesteps: int = 2048
    """PPO env-steps"""
    episodes: int = 20
    """evaluation episodes per test and agent"""
    eval_envs: int = 10
    eval_seed: int = 1000
    """seeds the evaluation episodes (apart from the training envs' seeds)"""
    prompt_history: int = 1
    """observations in the prompt (GLAM: 3); one makes PPO 2.7x faster (docs/benchmarks.md)"""
    finetune: str = "top_k"
    top_k: int = 2
    n_envs: int = 8
    n_steps: int = 16
    batch_size: int = 64
    n_epochs: int = 4
    learning_rate: float = 1e-4
    """Adam rate of the value head and of the LM's trained blocks"""
    ent_coef: float = 0.01
    seed: int = 1
    out: Path = Path("results")


def main(args: Args) -> None:
    start = time.perf_counter()
    llm_kwargs = {"prompt_template": PromptTemplate(history=args.prompt_history)}
    zero_shot, trained = f"{args.model} zero-shot", f"{args.model} after {args.total_timesteps} PPO steps"

    print(f"1/3 zero-shot evaluation of {args.model} and of a random agent ({args.episodes} episodes per test)")
    before = evaluate(
        [args.model, "random"],
        "small",
        episodes=args.episodes,
        n_envs=args.eval_envs,
        seed=args.eval_seed,
        llm_kwargs=llm_kwargs,
        names=[zero_shot, "random"],
    )

    print(f"2/3 PPO on {args.env_id} for {args.total_timesteps} env-steps ({args.finetune}, {args.n_envs} envs)")
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
        policy_kwargs={
            "model": args.model,
            "finetune": args.finetune,
            "top_k": args.top_k,
            # two trained blocks tolerate (and in 2,048 steps need) more than the full-model default of 1e-6
            "lm_learning_rate": args.learning_rate,
            **llm_kwargs,
        },
    )
    run_dir = args.out / "training" / f"{args.env_id}__llm_ppo__{args.seed}"
    train(model, args.total_timesteps, run_dir, save_model=True)
    env.close()
    del model

    print("3/3 evaluation of the trained agent")
    after = evaluate(
        [str(run_dir / "model.zip")],
        "small",
        episodes=args.episodes,
        n_envs=args.eval_envs,
        seed=args.eval_seed,
        names=[trained],
    )

    results = [r for r in before if r.agent == zero_shot] + after + [r for r in before if r.agent == "random"]
    # The main job owns <out> (results/ by default) and regenerates it on every run, as documented.
    paths = write(results, args.out, overwrite=True)
    curve = args.out / "learning_curve.png"
    plot([run_dir], curve, window=20, title=f"{args.model} PPO on {args.env_id}")
    print(markdown(results))
    print()
    print(markdown_table([run_dir], bin_size=max(args.total_timesteps // 4, 1)))
    first = {r.agent: r for r in results if r.label == results[0].label}
    b, a = first[zero_shot], first[trained]
    print(
        f"success on {b.label}: {b.success_rate:.2f} [{b.success_low:.2f}, {b.success_high:.2f}] zero-shot -> "
        f"{a.success_rate:.2f} [{a.success_low:.2f}, {a.success_high:.2f}] trained "
        f"(random agent {first['random'].success_rate:.2f}; Wilson 99 % intervals)"
    )
    print(f"done in {(time.perf_counter() - start) / 60:.1f} min; results in {args.out}/:")
    for path in [*paths.values(), curve, run_dir / "episodes.csv", run_dir / "model.zip"]:
        print(f"  {path}")


if __name__ == "__main__":
    main(tyro.cli(Args))
