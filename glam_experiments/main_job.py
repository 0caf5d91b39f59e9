"""The main job: train the default LLM agent (SmolLM2-135M) with PPO on a small GoTo level,
then compare it with its zero-shot self (and a random agent) on that level and on the
generalization variants.

    python -m glam_experiments.main_job [--total-timesteps 2048] [--episodes 20] [--out results]

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

from babyai_text.prompt import PromptTemplate
from glam_experiments.configs import LLMPPOConfig
from glam_experiments.curves import markdown_table, plot
from glam_experiments.envs import make_text_vec_env
from glam_experiments.evaluate import evaluate, markdown, write
from glam_experiments.training import train


@dataclass
class Args(LLMPPOConfig):
    """The PPO and policy flags are :class:`LLMPPOConfig`'s (whose defaults are this job's)."""

    env_id: str = "BabyAI-Text-GoToS5N2-v0"
    """training level (the ``small`` evaluation suite is built on GoToS5N2)"""
    total_timesteps: int = 2048
    """PPO env-steps"""
    episodes: int = 20
    """evaluation episodes per test and agent"""
    eval_envs: int = 10
    eval_seed: int = 1000
    """seeds the evaluation episodes (apart from the training envs' seeds)"""
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
    model = args.make(env, seed=args.seed)
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
