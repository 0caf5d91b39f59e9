"""The main job: train the default LLM agent (SmolLM2-135M) on the small PickUp level — behaviour
cloning of 1,000 of the BabyAI bot's episodes, then an online RL stage (PPO; ``--algo gigpo`` or
``grpo``: :mod:`glam_algorithms`) — and compare the agent before its RL stage with the agent after
it, its zero-shot self and a random agent on that level (success and the grounding diagnostics)
and on its generalization variants.  ``--bc-episodes 0`` trains with RL alone (from the
pretrained model).

    python -m studies.main_job [--bc-episodes 1000] [--algo ppo] [--total-timesteps N] [--out results]

Writes to ``<out>/``: ``evaluation.{md,csv,json,png}`` (zero-shot, before RL, after RL and random,
success with 99 % CIs per test, bot agreement and state dependence), ``learning_curve.png``
(training success against frames), ``diagnostics.png`` (success, grounding, approx KL,
clip fraction and entropy during training), ``viewer_trained.html``
(+ ``.gif``) and ``viewer_zero_shot.html`` (episode viewers: what each agent saw and the
probability it gave every action, step by step; :mod:`glam_experiments.viewer`), and under
``training/`` the TensorBoard log, ``episodes.csv``, ``grounding.csv``, the cloned agent
``cloned.zip`` (before RL) and the trained agent ``model.zip``.  It ends with two verdicts: whether
RL's own gain shows (the after-RL agent's 99 % interval above the before-RL agent's, on the same
episodes), and whether the run shows learning: the trained agent's 99 % interval above the
random and the zero-shot agent's, bot agreement at least :data:`MIN_AGREEMENT_GAIN` above the
best constant action's, and state dependence at least :data:`MIN_STATE_DEPENDENCE`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from babyai_text.prompt import PromptTemplate
from glam_experiments.cli import UsageError, require_at_least, run_command
from glam_experiments.configs import LLMPPOConfig
from glam_experiments.curves import markdown_table, plot, plot_diagnostics
from glam_experiments.evaluate import Result, evaluate, markdown, variant_suite, write
from glam_experiments.recording import EpisodeRecord, record_episodes
from glam_experiments.statistics import wilson_bounds
from glam_experiments.viewer import write_gif, write_html

#: how the job names each RL algorithm in its output
ALGO_NAMES = {"ppo": "PPO", "grpo": "GRPO", "gigpo": "GiGPO"}
#: What the main job calls learning, beside non-overlapping 99 % intervals.
MIN_AGREEMENT_GAIN = 0.15
MIN_STATE_DEPENDENCE = 0.15

_REPO = Path(__file__).resolve().parent.parent
#: the agent before its RL stage, beside the run's model.zip (train_bc.py --save-model writes it)
CLONED = "cloned.zip"


@dataclass
class Args(LLMPPOConfig):
    """The RL and policy flags are :class:`LLMPPOConfig`'s (whose defaults are this job's); ``--algo gigpo
    --lm-learning-rate 1e-4`` is :data:`~glam_experiments.configs.GIGPO_LLM`, the group-advantage study's.
    ``--bc-episodes 100 --algo gigpo --group-size 4 --lm-learning-rate 1e-4 --ent-coef 0 --total-timesteps
    6000`` gives RL the largest share of the agent's success measured in the job's 30 minutes
    (docs/studies/group_advantages.md#the-main-job-with-a-weak-clone-and-gigpo-rls-gain-over-three-seeds)."""

    env_id: str = "BabyAI-Text-PickUpS5N2-v0"
    """training level, evaluated with its generalization variants"""
    total_timesteps: int = 512
    """env-steps of the RL stage (all ranks together), after cloning"""
    bc_episodes: int = 1000
    """the BabyAI bot's episodes cloned before RL (0: RL from the pretrained model alone): the first N of the
    Minari dataset babyai-text/<level>/bot-v0, recorded on first use with seeds 0..N-1 (below --eval-seed: no
    evaluation episode is cloned); docs/behaviour_cloning.md"""
    bc_epochs: int = 1
    """passes over the demonstrations"""
    bc_learning_rate: float = 3e-4
    """the LM's rate while cloning (the value head's scaled alike)"""
    bc_value_coef: float = 0.0
    """weight of the value head's fit to the bot's returns while cloning (0: none; with --algo ppo, PPO's critic
    then learns the cloned policy's own values)"""
    nproc: int = 2
    """training processes (torchrun, gloo, one thread each)"""
    episodes: int = 200
    """evaluation episodes of the training level per agent (the same seeded episodes for every agent)"""
    variant_episodes: int = 5
    """evaluation episodes of each generalization variant per agent (0: the training level only)"""
    grounding_states: int = 300
    """bot states of the grounding diagnostics on the training level"""
    grounding_every: int = 5
    """updates between grounding measurements during training"""
    eval_envs: int = 10
    eval_seed: int = 1000
    """seeds the evaluation episodes and bot states (apart from the training envs' seeds)"""
    seed: int = 1
    eval_workers: int = 2
    """evaluation processes (agents side by side, one thread each)"""
    viewer_episodes: int = 3
    """episodes of the trained and of the zero-shot agent in the episode viewers"""
    out: Path = Path("results")


def config_flags(config: LLMPPOConfig) -> list[str]:
    """``config`` as the command-line flags of ``examples/train_llm_ppo.py`` (tyro's spelling)."""
    flags = []
    for field in dataclasses.fields(LLMPPOConfig):
        value = getattr(config, field.name)
        name = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name if value else "--no-" + field.name.replace("_", "-"))
        else:
            flags += [name, str(value)]
    return flags


def _curve_states(args: Args) -> int:
    """Bot states measured during training (fewer than the evaluation's: they are measured many times)."""
    return max(1, min(64, args.grounding_states))


def train_agent(args: Args, run_dir: Path, dataset_id: str | None) -> None:
    """Cloning of ``dataset_id`` (``None``: none; the cloned agent kept as ``run_dir/cloned.zip``), then the RL
    stage (``args.algo``) for ``args.total_timesteps`` frames, into ``run_dir`` (one process, or ``args.nproc``
    under torchrun)."""
    if args.nproc == 1:
        from glam_experiments.callbacks import GroundingLogger
        from glam_experiments.training import train

        env = args.make_env(args.env_id, args.seed)
        model = args.make(env, seed=args.seed)
        if dataset_id is not None:
            from glam_experiments.configs import Cloning

            cloning = Cloning(dataset_id, args.bc_episodes, args.bc_epochs, args.bc_learning_rate, args.bc_value_coef)
            cloning.run(model, args.seed, args.reward_scale, run_dir)
            model.save(run_dir / CLONED)
        logger = GroundingLogger(args.env_id, args.grounding_every, run_dir, num_states=_curve_states(args))
        train(model, args.total_timesteps, run_dir, save_model=True, callbacks=[logger, *args.callbacks()])
        env.close()
        return
    # torchrun names the run folder itself: a fresh parent, then its only child is the run
    parent = run_dir.parent / f"{run_dir.name}.torchrun"
    shutil.rmtree(parent, ignore_errors=True)  # a killed job's (this job holds <out>'s lock: no other is running)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
    if dataset_id is None:
        command += [str(_REPO / "examples" / "train_llm_ppo.py"), "--total-timesteps", str(args.total_timesteps)]
    else:
        command += [str(_REPO / "examples" / "train_bc.py"), "--ppo-timesteps", str(args.total_timesteps)]
        command += ["--dataset-id", dataset_id, "--episodes", str(args.bc_episodes), "--epochs", str(args.bc_epochs)]
        command += ["--bc-learning-rate", str(args.bc_learning_rate), "--bc-value-coef", str(args.bc_value_coef)]
    command += [*config_flags(args), "--env-id", args.env_id, "--seed", str(args.seed)]
    command += ["--run-dir", str(parent), "--save-model", "--torch-threads", "1"]  # and cloned.zip
    command += ["--grounding-every", str(args.grounding_every), "--grounding-states", str(_curve_states(args))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env)
    (made,) = parent.iterdir()
    made.rename(run_dir)
    parent.rmdir()


def evaluate_part(job: tuple[Args, list[str], list[str], dict | None, bool]) -> list[Result]:
    """``(args, agents, names, llm_kwargs, level)``: the training level with the grounding diagnostics
    (``level``), or its variants with fewer episodes; a function of its own so that a worker process
    can run it.  Each part seeds its episodes itself: the results do not depend on which process runs it."""
    args, agents, names, llm_kwargs, level = job
    suite = variant_suite(args.env_id)
    common = {"n_envs": args.eval_envs, "seed": args.eval_seed, "llm_kwargs": llm_kwargs, "names": names}
    if level:
        return evaluate(agents, suite[:1], episodes=args.episodes, grounding_states=args.grounding_states, **common)
    return evaluate(agents, suite[1:], episodes=args.variant_episodes, **common)


def rl_part(run_dir: Path, rl: str) -> str:
    """What the RL stage did after cloning, from the training-time grounding (its first row: the cloned policy
    before the first update), so that the verdict on the cloned-then-RL agent does not credit RL with cloning."""
    from glam_experiments.curves import read_grounding

    g = read_grounding(run_dir)
    frames = int(g["frames"][-1])
    return (
        f"{rl}'s part, on the training-time bot states: bot agreement {g['bot_agreement'][0]:.2f} after cloning "
        f"-> {g['bot_agreement'][-1]:.2f} after {rl} ({frames} frames), state dependence "
        f"{g['state_dependence'][0]:.2f} -> {g['state_dependence'][-1]:.2f} (best constant action "
        f"{g['constant_agreement'][0]:.2f})"
    )


def record_part(job: tuple[str, str, int, int, str, dict | None]) -> list[EpisodeRecord]:
    """``(agent, env_id, episodes, seed, name, llm_kwargs)``: an episode viewer's episodes (a worker process's part)."""
    agent, env_id, episodes, seed, name, llm_kwargs = job
    return record_episodes(agent, env_id, episodes, seed=seed, agent_name=name, llm_kwargs=llm_kwargs)


def rl_gain_verdict(results: list[Result], before: str, after: str) -> tuple[bool, str]:
    """Whether the RL stage's own gain shows on the first test: the after-RL agent's 99 % interval above the
    before-RL agent's (the same seeded episodes), and one line saying so with both intervals."""
    first = {r.agent: r for r in results if r.label == results[0].label}
    a, b = first[after], first[before]
    shown = a.success_low > b.success_high
    line = (
        f"{'met' if shown else 'NOT met'}: after-RL 99 % interval above before-RL's: {a.success_rate:.2f} "
        f"[{a.success_low:.2f}, {a.success_high:.2f}] {'>' if shown else 'vs'} {b.success_rate:.2f} "
        f"[{b.success_low:.2f}, {b.success_high:.2f}] ({a.episodes} episodes; "
        f"gain {a.success_rate - b.success_rate:+.2f})"
    )
    if not shown:
        needed = separating_rate(b.success_high, a.episodes)
        line += (
            f"; on {a.episodes} episodes an after-RL success of {needed:.2f} or more would show it"
            if needed is not None
            else f"; no success rate on {a.episodes} episodes would show it"
        )
    return shown, line


def separating_rate(high: float, episodes: int) -> float | None:
    """The smallest success rate on ``episodes`` episodes whose Wilson 99 % interval lies above ``high``
    (``None``: not even all successes)."""
    for successes in range(episodes + 1):
        if wilson_bounds(successes, episodes)[0] > high:
            return successes / episodes
    return None


def learning_verdict(results: list[Result], zero_shot: str, trained: str) -> tuple[bool, list[str]]:
    """Whether the first test shows learning, and one line per criterion."""
    first = {r.agent: r for r in results if r.label == results[0].label}
    a, b, rnd = first[trained], first[zero_shot], first["random"]
    checks = [
        (
            a.success_low > rnd.success_high,
            f"trained 99 % interval above random's: {a.success_low:.2f} > {rnd.success_high:.2f}",
        ),
        (
            a.success_low > b.success_high,
            f"trained 99 % interval above zero-shot's: {a.success_low:.2f} > {b.success_high:.2f}",
        ),
    ]
    if a.bot_agreement is not None:
        gain = a.bot_agreement - a.constant_agreement
        checks.append(
            (
                gain >= MIN_AGREEMENT_GAIN,
                f"bot agreement {a.bot_agreement:.2f} - best constant {a.constant_agreement:.2f} = {gain:.2f}"
                f" >= {MIN_AGREEMENT_GAIN}",
            )
        )
        checks.append(
            (
                a.state_dependence >= MIN_STATE_DEPENDENCE,
                f"state dependence {a.state_dependence:.2f} >= {MIN_STATE_DEPENDENCE}",
            )
        )
    return all(ok for ok, _ in checks), [("met: " if ok else "NOT met: ") + text for ok, text in checks]


def main(args: Args) -> None:
    from llm_policy.file_lock import exclusive

    # two jobs writing one results folder would mix their runs and overwrite each other's tables
    out = args.out.resolve()
    lock = out.parent / f".{out.name}.lock"  # beside <out>, which the job replaces: a lock inside would go with it
    fix = "wait for it to end, or give this job another folder with --out"
    with exclusive(lock, f"running the main job into {args.out}", 0, fix):
        _main(args)


def _main(args: Args) -> None:
    start = time.perf_counter()
    args.check()
    require_at_least({"nproc": args.nproc, "eval_workers": args.eval_workers, "episodes": args.episodes})
    require_at_least({"total_timesteps": args.total_timesteps, "eval_envs": args.eval_envs})
    require_at_least({"grounding_states": args.grounding_states, "grounding_every": args.grounding_every})
    require_at_least({"variant_episodes": args.variant_episodes, "viewer_episodes": args.viewer_episodes}, minimum=0)
    require_at_least({"bc_episodes": args.bc_episodes, "bc_value_coef": args.bc_value_coef}, minimum=0)
    require_at_least({"bc_epochs": args.bc_epochs})
    if args.bc_episodes > args.eval_seed:
        raise UsageError(
            f"--bc-episodes {args.bc_episodes} would clone episodes of seeds up to {args.bc_episodes - 1}, among "
            f"the evaluation's (from --eval-seed {args.eval_seed}): raise --eval-seed above {args.bc_episodes}"
        )
    llm_kwargs = {"prompt_template": PromptTemplate(history=args.prompt_history)}
    rl = ALGO_NAMES[args.algo]
    zero_shot = f"{args.model} zero-shot"
    before = f"{args.model} after cloning {args.bc_episodes} bot episodes" if args.bc_episodes else zero_shot
    cloned = f"cloning {args.bc_episodes} bot episodes + " if args.bc_episodes else ""
    trained = f"{args.model} after {cloned}{args.total_timesteps} {rl} steps"
    kind = f"bc_llm_{args.algo}" if args.bc_episodes else f"llm_{args.algo}"
    model_zip = str(args.out / "training" / f"{args.env_id}__{kind}__{args.seed}" / "model.zip")
    run_dir = Path(model_zip).parent

    dataset_id = None
    if args.bc_episodes:
        from glam_experiments.demonstrations import bot_demonstrations

        dataset_id = bot_demonstrations(args.env_id, args.bc_episodes)
    how = f"{args.finetune}, {args.nproc} process{'es' * (args.nproc > 1)} x {args.n_envs} envs"
    if args.algo != "ppo":
        how += f" in groups of {args.group_size}"
    print(
        f"1/3 {'behaviour cloning of ' + str(args.bc_episodes) + ' bot episodes, then ' if args.bc_episodes else ''}"
        f"{rl} on {args.env_id} for {args.total_timesteps} env-steps ({how})"
    )
    train_agent(args, run_dir, dataset_id)

    agent_list = "the agent before and after its RL stage" if args.bc_episodes else "the trained agent"
    print(
        f"2/3 evaluation of {agent_list}, {args.model} zero-shot and a random agent ({args.episodes} episodes "
        f"of {args.env_id}, {args.variant_episodes} of each variant; grounding on {args.grounding_states} bot states)"
        + (f", {args.eval_workers} agents at a time" if args.eval_workers > 1 else "")
        + f", and the episode viewers ({args.viewer_episodes} episodes per agent)"
    )
    # the longest part first (the zero-shot agent fails every 25-step episode), so that the processes end together
    agents = [([args.model], [zero_shot], llm_kwargs)]
    if args.bc_episodes:
        agents.append(([str(run_dir / CLONED)], [before], None))
    agents.append(([model_zip, "random"], [trained, "random"], None))
    jobs = [(args, *agent, True) for agent in agents]
    jobs += [(args, *agent, False) for agent in agents] if args.variant_episodes else []
    # the viewers' episodes last: they fill the time the process that ends first would wait
    viewed = [(trained, model_zip, None, "trained"), (zero_shot, args.model, llm_kwargs, "zero_shot")]
    recordings = [(spec, args.env_id, args.viewer_episodes, args.eval_seed, name, kw) for name, spec, kw, _ in viewed]
    if args.eval_workers > 1:
        # one thread per process: two single-threaded evaluations do more on two cores than one with two threads
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            args.eval_workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            evaluating = [pool.submit(evaluate_part, job) for job in jobs]
            recording = [pool.submit(record_part, job) for job in recordings]
            parts = [future.result() for future in evaluating]
            records = [future.result() for future in recording]
    else:
        parts = [evaluate_part(job) for job in jobs]
        records = [record_part(job) for job in recordings]
    # zero-shot, before RL, after RL, random; the training level before its variants
    done = [r for part in parts for r in part]
    order = {zero_shot: 0, before: 1, trained: 2, "random": 3}
    results = sorted(done, key=lambda r: order[r.agent])  # stable: level rows stay before variant rows

    print("3/3 writing the results")
    viewers = []
    for (name, _, _, slug), episodes in zip(viewed, records, strict=True):
        viewers.append(write_html(episodes, args.out / f"viewer_{slug}.html", title=f"{name} on {args.env_id}"))
        if slug == "trained":
            viewers.append(write_gif(episodes, args.out / f"viewer_{slug}.gif"))

    # The main job owns <out> (results/ by default) and regenerates it on every run, as documented.
    paths = write(results, args.out, overwrite=True)
    curve = args.out / "learning_curve.png"
    plot([run_dir], curve, window=20, title=f"{args.model} {rl} on {args.env_id}")
    diagnostics = args.out / "diagnostics.png"
    plot_diagnostics(run_dir, diagnostics, title=f"{args.model} {rl} on {args.env_id}")
    print(markdown(results))
    print()
    print(markdown_table([run_dir], bin_size=max(args.total_timesteps // 4, 1)))
    first = {r.agent: r for r in results if r.label == results[0].label}
    z, a, rnd = first[zero_shot], first[trained], first["random"]

    def interval(r: Result) -> str:
        return f"{r.success_rate:.2f} [{r.success_low:.2f}, {r.success_high:.2f}]"

    line = f"success on {z.label} ({a.episodes} episodes): {interval(z)} zero-shot -> "
    if args.bc_episodes:
        line += f"{interval(first[before])} after cloning -> "
    line += f"{interval(a)} trained; random agent {interval(rnd)} (Wilson 99 % intervals)"
    print(line)
    if args.bc_episodes:
        print(rl_part(run_dir, rl))
    gained, gain_line = rl_gain_verdict(results, before, trained)
    shown = "shown" if gained else "NOT shown"
    print(f"RL's own gain {shown} on the training level ({rl}, {args.total_timesteps} frames):")
    print(f"  {gain_line}")
    learned, lines = learning_verdict(results, zero_shot, trained)
    print("learning shown on the training level" if learned else "learning NOT shown on the training level:")
    for line in lines:
        print(f"  {line}")
    print(f"done in {(time.perf_counter() - start) / 60:.1f} min; results in {args.out}/:")
    kept = [run_dir / CLONED] if args.bc_episodes else []
    for path in [*paths.values(), curve, diagnostics, *viewers, run_dir / "episodes.csv", *kept, run_dir / "model.zip"]:
        print(f"  {path}")


if __name__ == "__main__":
    run_command(lambda argv: main(tyro.cli(Args, args=argv)))
