"""The main job: train the default LLM agent (SmolLM2-135M) with PPO on a small GoTo level,
then compare it with its zero-shot self (and a random agent) on that level and on the
generalization variants.

    python -m glam_experiments.main_job [--total-timesteps 2048] [--episodes 20] [--out results]

Writes to ``<out>/``: ``evaluation.{md,csv,json,png}`` (zero-shot vs trained vs random,
success with 99 % CIs per test), ``learning_curve.png`` (training success against
frames), ``viewer_trained.html`` (+ ``.gif``) and ``viewer_zero_shot.html`` (episode
viewers: what each agent saw and the probability it gave every action, step by step;
:mod:`glam_experiments.viewer`), and under ``training/`` the TensorBoard log, ``episodes.csv`` and the trained
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
from glam_experiments.recording import record_episodes
from glam_experiments.training import train
from glam_experiments.viewer import write_gif, write_html


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
    viewer_episodes: int = 3
    """episodes of the trained and of the zero-shot agent in the episode viewers"""
    out: Path = Path("results")


def main(args: Args) -> None:
    start = time.perf_counter()
    llm_kwargs = {"prompt_template": PromptTemplate(history=args.prompt_history)}
    zero_shot, trained = f"{args.model} zero-shot", f"{args.model} after {args.total_timesteps} PPO steps"

    print(f"1/4 zero-shot evaluation of {args.model} and of a random agent ({args.episodes} episodes per test)")
    before = evaluate(
        [args.model, "random"],
        "small",
        episodes=args.episodes,
        n_envs=args.eval_envs,
        seed=args.eval_seed,
        llm_kwargs=llm_kwargs,
        names=[zero_shot, "random"],
    )

    print(f"2/4 PPO on {args.env_id} for {args.total_timesteps} env-steps ({args.finetune}, {args.n_envs} envs)")
    env = make_text_vec_env(args.env_id, args.n_envs, args.seed, args.reward_scale)
    model = args.make(env, seed=args.seed)
    run_dir = args.out / "training" / f"{args.env_id}__llm_ppo__{args.seed}"
    train(model, args.total_timesteps, run_dir, save_model=True)
    env.close()
    del model

    print("3/4 evaluation of the trained agent")
    after = evaluate(
        [str(run_dir / "model.zip")],
        "small",
        episodes=args.episodes,
        n_envs=args.eval_envs,
        seed=args.eval_seed,
        names=[trained],
    )

    print(f"4/4 episode viewers: {args.viewer_episodes} episodes of {args.env_id} per agent")
    viewers = []
    for name, spec, kwargs, slug in [
        (trained, str(run_dir / "model.zip"), None, "trained"),
        (zero_shot, args.model, llm_kwargs, "zero_shot"),
    ]:
        records = record_episodes(
            spec, args.env_id, args.viewer_episodes, seed=args.eval_seed, agent_name=name, llm_kwargs=kwargs
        )
        viewers.append(write_html(records, args.out / f"viewer_{slug}.html", title=f"{name} on {args.env_id}"))
        if slug == "trained":
            viewers.append(write_gif(records, args.out / f"viewer_{slug}.gif"))

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
    for path in [*paths.values(), curve, *viewers, run_dir / "episodes.csv", run_dir / "model.zip"]:
        print(f"  {path}")


if __name__ == "__main__":
    main(tyro.cli(Args))
