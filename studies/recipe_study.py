"""The recipe study: which PPO recipe turns SmolLM2-135M into a grounded agent on a CPU.

    python -m studies.recipe_study run --arm advnorm --seed 1 [--frames 1536]
    python -m studies.recipe_study run --arm default --seed 1 --bc-dataset ID [--bc-episodes 100] --name bc100
    python -m studies.recipe_study report [runs/recipes]

Each arm is a set of changes to :class:`glam_experiments.configs.LLMPPOConfig` (:data:`ARMS`).
``run`` trains one arm with one seed for ``--frames`` env-steps on ``--env-id`` (stock SB3
PPO, the grounding diagnostics logged every ``--grounding-every`` updates by
:class:`~glam_experiments.callbacks.GroundingLogger`), then measures the trained policy:
success on ``--episodes`` seeded evaluation episodes (actions sampled, Wilson 99 %
interval, beside a random agent on the same episodes) and the grounding diagnostics on
bot states from seeds no training env used.  It writes ``<out>/<arm>/seed<k>/result.json``
(and the run's TensorBoard log, ``episodes.csv`` and ``grounding.csv``).  ``report`` prints
a Markdown table over all results, one row per arm: mean ± sd over seeds.

With ``--bc-dataset`` the arm first clones a Minari dataset of demonstrations
(:func:`glam_algorithms.bc.behaviour_clone`), then trains with PPO
for ``--frames`` (0: cloning alone); ``--name`` names its folder and row.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv

from glam_experiments.cli import ArgumentParser, require_at_least, run_command, summary
from glam_experiments.configs import Cloning, LLMPPOConfig

#: The arms: changes to LLMPPOConfig's defaults, the recipe this study chose (the references' critic —
#: value head on detached, standardised features at 10x the LM's rate — rewards x20, the LM at 3e-5);
#: each arm changes one thing.  A result records its whole config; the report's "changes" column is
#: computed from it, so a result stays readable when the defaults move.
ARMS: dict[str, dict[str, Any]] = {
    "default": {},
    # the recipe shipped before the study: GLAM's critic (shared blocks, raw features, PPO's rate), rewards x1
    "shipped": {
        "value_features": "shared",
        "value_input_norm": False,
        "learning_rate": 1e-4,
        "lm_learning_rate": 1e-4,
        "reward_scale": 1.0,
    },
    # the LM's rate (lm1e-4 and lm3e-4 also for PPO after cloning, from a cloned.zip)
    "lm1e-5": {"lm_learning_rate": 1e-5},
    "lm1e-4": {"lm_learning_rate": 1e-4},
    "lm3e-4": {"lm_learning_rate": 3e-4},
    # reward x20 against advantage normalisation (lamorel and TWOSOME normalise)
    "advnorm": {"normalize_advantage": True},
    "advnorm_reward1": {"normalize_advantage": True, "reward_scale": 1.0},
    # the critic: trained through the LM's top blocks (GLAM) instead of on detached features; a third of the
    # study's 12 updates of warm-up (TWOSOME); returns normalised (POAD's normalised targets) instead of x20
    "shared_critic": {"value_features": "shared"},
    "warmup4": {"critic_warmup": 4},
    "return_norm": {"normalize_reward": True, "reward_scale": 1.0},
    # what adapts
    "top4": {"top_k": 4},
    "lora": {"finetune": "lora"},
    # rollout size: 32 steps per env (at equal frames, half the updates of twice the size)
    "rollout32": {"n_steps": 32},
    # prompt format: GLAM's three observations instead of one; the model's chat template (the action list in the
    # system turn, the action as the assistant's answer) instead of GLAM's plain prompt
    "history3": {"prompt_history": 3},
    "chat": {"chat_template": True},
    # action score: token-normalised (TWOSOME) instead of the sum
    "token": {"normalization": "token"},
    # critic-free group advantages (glam_algorithms): 16 envs in 2 groups of 8 episodes from one start each
    "grpo": {"algo": "grpo", "n_envs": 16},
    "gigpo": {"algo": "gigpo", "n_envs": 16},
    "grpo_lm1e-4": {"algo": "grpo", "n_envs": 16, "lm_learning_rate": 1e-4},
    "gigpo_lm1e-4": {"algo": "gigpo", "n_envs": 16, "lm_learning_rate": 1e-4},
    "gigpo_g4": {"algo": "gigpo", "n_envs": 16, "group_size": 4},
    "gigpo_kl": {"algo": "gigpo", "n_envs": 16, "kl_coef": 0.05},
}


def arm_config(arm: str, base: LLMPPOConfig | None = None) -> LLMPPOConfig:
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose one of {sorted(ARMS)}")
    return replace(base or LLMPPOConfig(), **ARMS[arm])


def run_arm(
    arm: str,
    seed: int,
    env_id: str,
    frames: int,
    out: Path,
    episodes: int = 30,
    eval_seed: int = 5000,
    grounding_states: int = 200,
    grounding_every: int = 4,
    eval_envs: int = 10,
    curve_states: int = 100,
    cloning: Cloning | None = None,
    name: str | None = None,
    base: LLMPPOConfig | None = None,
    init_from: Path | None = None,
) -> dict[str, Any]:
    """Train and measure one arm with one seed; returns (and writes) its result.

    :param frames: PPO's env-steps (0: no PPO; with ``cloning``, cloning alone).
    :param cloning: clone demonstrations first; ``None``: PPO from the pretrained model.
    :param name: the folder and report row (default: ``arm``).
    :param base: the config the arm changes (default: ``LLMPPOConfig()``).
    :param init_from: start from this saved agent's weights and optimizer state (e.g. another run's
        ``cloned.zip``: PPO settings compared from one cloned policy without cloning again); the arm's
        config must build the same policy.
    """
    from glam_baselines import RandomAgent
    from glam_experiments.callbacks import GroundingLogger
    from glam_experiments.diagnostics import BotStates, measure
    from glam_experiments.training import train

    config = arm_config(arm, base)
    name = name or arm
    run_dir = out / name / f"seed{seed}"
    if (run_dir / "result.json").exists():
        raise FileExistsError(f"{run_dir / 'result.json'} exists: remove the folder to run this arm and seed again")
    if frames < 0 or (frames == 0 and cloning is None):
        raise ValueError(f"frames must be at least 1 (0 only after cloning), got {frames}")
    env = config.make_env(env_id, seed)
    model = config.make(env, seed=seed)
    if init_from is not None:
        model.set_parameters(str(init_from), exact_match=True, device=model.device)
    cloned = _clone(model, cloning, seed, config.reward_scale, run_dir) if cloning is not None else None
    if cloned is not None and frames:  # the cloned policy before PPO: the "cloning alone" arm at no extra training
        model.save(run_dir / "cloned.zip")  # other PPO settings can start from it (PPO.load)
        cloned["success"] = _success(lambda _e: model, env_id, episodes, eval_envs, eval_seed)
        cloned["grounding"] = measure(
            model.policy, BotStates.collect(env_id, grounding_states, seed=eval_seed)
        ).as_dict()
    # bot states of the training-time diagnostics: seeds apart from the training envs' and the evaluation's
    logger = GroundingLogger(env_id, grounding_every, run_dir, num_states=curve_states, seed=eval_seed + 10_000)
    wall, cpu = time.perf_counter(), time.process_time()
    if frames:
        train(model, frames, run_dir, save_model=False, callbacks=[logger, *config.callbacks()])
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    env.close()

    states = BotStates.collect(env_id, grounding_states, seed=eval_seed)
    grounding = measure(model.policy, states)
    successes = {}
    for agent, agent_of in (
        ("trained", lambda _e: model),
        ("random", lambda e: RandomAgent(e.action_space, eval_seed)),
    ):
        successes[agent] = _success(agent_of, env_id, episodes, eval_envs, eval_seed)
    result = {
        "arm": name,
        "changes": ARMS[arm] if name == arm else {"arm": arm, **ARMS[arm]},
        "config": asdict(config),
        "seed": seed,
        "env_id": env_id,
        "frames": frames,
        "train_wall_min": train_wall / 60,
        "train_cpu_min": train_cpu / 60,
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "success": successes["trained"],
        "random": successes["random"],
        "grounding": grounding.as_dict(),
        "grounding_curve": logger.history,
        "cloning": cloned,
        "init_from": str(init_from) if init_from is not None else None,
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=1, default=float))
    print(
        f"{name} seed {seed}: success {successes['trained']['rate']:.2f} (random {successes['random']['rate']:.2f}); "
        f"{grounding.summary()}; {train_wall / 60:.1f} min"
    )
    return result


def _success(agent_of: Any, env_id: str, episodes: int, eval_envs: int, eval_seed: int) -> dict[str, Any]:
    """Success of ``agent_of(env)`` on ``episodes`` seeded episodes (actions sampled), with its Wilson 99 % interval."""
    from glam_experiments.evaluate import run_episodes
    from glam_experiments.statistics import wilson_interval

    eval_env = DummyVecEnv([lambda: gym.make(env_id)] * eval_envs)
    eval_env.seed(eval_seed)
    set_random_seed(eval_seed)
    success, _ = run_episodes(agent_of(eval_env), eval_env, episodes)
    eval_env.close()
    low, high = wilson_interval(success)
    return {"rate": float(success.mean()), "low": low, "high": high, "episodes": len(success)}


def _clone(model: Any, cloning: Cloning, seed: int, reward_scale: float, run_dir: Path) -> dict[str, Any]:
    """Behaviour cloning of ``model`` in place; what it did, for the result."""
    from glam_experiments.demonstrations import load_demonstrations

    wall, cpu = time.perf_counter(), time.process_time()
    history = cloning.run(model, seed, reward_scale, run_dir)
    return {
        **asdict(cloning),
        "episodes": cloning.episodes or load_demonstrations(cloning.dataset_id).total_episodes,
        "steps_trained": history[-1].steps,
        "val_accuracy_before": history[0].val_accuracy,
        "val_accuracy_after": history[-1].val_accuracy,
        "wall_min": (time.perf_counter() - wall) / 60,
        "cpu_min": (time.process_time() - cpu) / 60,
    }


def _stability(run_dir: Path) -> dict[str, float]:
    """Mean approx KL and clip fraction over the updates, last entropy and explained variance, and the
    successful training episodes (PPO's only signal on a sparse-reward level)."""
    from glam_experiments.curves import read_scalars

    scalars = read_scalars(run_dir)
    out: dict[str, float] = {}
    episodes = run_dir / "episodes.csv"
    if episodes.exists():
        with episodes.open() as f:
            out["train_successes"] = float(sum(int(row["success"]) for row in csv.DictReader(f)))
    for tag, key, how in (
        ("losses/approx_kl", "kl", np.mean),
        ("losses/clipfrac", "clipfrac", np.mean),
        ("losses/entropy", "entropy", lambda v: -v[-1]),  # SB3 logs the entropy loss, minus the entropy
        ("losses/explained_variance", "explained_variance", lambda v: np.mean(v[len(v) // 2 :])),
    ):
        if tag in scalars:
            out[key] = float(how(scalars[tag][1]))
    return out


def _cloning(cloning: dict[str, Any] | None, init_from: str | None = None) -> str:
    if init_from:
        return "from " + "/".join(Path(init_from).parts[-3:])
    if not cloning:
        return "—"
    text = f"{cloning['episodes']} ep x {cloning['epochs']}"
    if cloning.get("learning_rate") is not None:
        text += f", lr {cloning['learning_rate']:g}"
    # (results of before value_coef was recorded fitted the value head at PPO's vf_coef, 0.5)
    text += f", value coef {cloning.get('value_coef', 0.5):g}"
    if cloning.get("val_accuracy_after") is not None:
        text += f" ({cloning['val_accuracy_before']:.2f} -> {cloning['val_accuracy_after']:.2f})"
    return text


def _changes(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a recorded config that differ from today's LLMPPOConfig defaults."""
    defaults = asdict(LLMPPOConfig())
    return {key: value for key, value in config.items() if key not in defaults or defaults[key] != value}


def _mean_sd(values: list[float], digits: int = 2) -> str:
    arr = np.array(values, dtype=float)
    return f"{arr.mean():.{digits}f} ± {arr.std(ddof=1) if len(arr) > 1 else 0:.{digits}f}"


def report(out: Path) -> str:
    """A Markdown table of every result under ``out``: one row per arm, mean ± sd over seeds."""
    results: dict[str, list[tuple[dict[str, Any], dict[str, float]]]] = {}
    for path in sorted(out.glob("*/seed*/result.json")):
        result = json.loads(path.read_text())
        results.setdefault(result["arm"], []).append((result, _stability(path.parent)))
        cloned = result.get("cloning") or {}
        if "success" in cloned:  # measured after cloning, before PPO
            before = {**result, "frames": 0, "train_cpu_min": 0.0, "success": cloned["success"]}
            before["grounding"] = cloned["grounding"]
            results.setdefault(result["arm"] + " (cloned, before PPO)", []).append((before, {}))
    if not results:
        raise FileNotFoundError(f"no result.json under {out}/<arm>/seed<k>/: run some arms first")
    lines = [
        "| arm | changes | cloning | seeds | frames | training successes | success | random | "
        "bot agreement (constant) | state dependence | "
        "value sd | approx KL | clip frac | entropy | expl. var. | CPU min | gain / CPU min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = [a for a in ARMS if a in results] + sorted(set(results) - set(ARMS))
    for arm in order:
        rows = results[arm]
        res = [r for r, _ in rows]
        stab = [s for _, s in rows]
        changes = ", ".join(f"{k}={v}" for k, v in _changes(res[0]["config"]).items()) or "—"
        cpu = [r["train_cpu_min"] + ((r.get("cloning") or {}).get("cpu_min") or 0.0) for r in res]
        gain = [(r["success"]["rate"] - r["random"]["rate"]) / c for r, c in zip(res, cpu, strict=True)]

        def col(key: str, rows: list[dict[str, float]] = stab, digits: int = 2) -> str:
            vals = [s[key] for s in rows if key in s]
            return _mean_sd(vals, digits) if vals else "–"

        values = [g["grounding"]["value_std"] for g in res if g["grounding"]["value_std"] is not None]
        start = _cloning(res[0].get("cloning"), res[0].get("init_from"))
        lines.append(
            f"| {arm} | {changes} | {start} | {','.join(str(r['seed']) for r in res)} | "
            f"{res[0]['frames']} | {col('train_successes', digits=0)} | "
            f"{_mean_sd([r['success']['rate'] for r in res])} | {_mean_sd([r['random']['rate'] for r in res])} | "
            f"{_mean_sd([r['grounding']['bot_agreement'] for r in res])} "
            f"({np.mean([r['grounding']['constant_agreement'] for r in res]):.2f}) | "
            f"{_mean_sd([r['grounding']['state_dependence'] for r in res])} | "
            f"{_mean_sd(values, 3) if values else '–'} | {col('kl', digits=3)} | {col('clipfrac')} | "
            f"{col('entropy')} | {col('explained_variance')} | {_mean_sd(cpu, 1)} | "
            f"{_mean_sd(gain, 3)} |"
        )
    episodes = {r["success"]["episodes"] for rows in results.values() for r, _ in rows}
    lines.append("")
    lines.append(
        f"Success on {'/'.join(map(str, sorted(episodes)))} seeded evaluation episodes per run (actions sampled); "
        "training successes: successful episodes during PPO (its only reward on this level); "
        "grounding on bot states of seeds no training env used; approx KL and clip fraction averaged over updates, "
        "entropy of the last update, explained variance averaged over the second half (– without PPO); "
        "cloning: demonstration episodes x epochs, and the held-out steps' agreement with the demonstrations "
        "before -> after; CPU minutes of cloning and PPO (not the evaluation); gain = success above random."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    run_command(_main, argv)


def _main(argv: list[str]) -> None:
    parser = ArgumentParser(prog="python -m studies.recipe_study", description=summary(__doc__))
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and measure one arm with one seed")
    run.add_argument("--arm", required=True, choices=sorted(ARMS))
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--env-id", default="BabyAI-Text-PickUpS5N2-v0")
    run.add_argument("--frames", type=int, default=1536)
    run.add_argument("--episodes", type=int, default=30)
    run.add_argument("--grounding-states", type=int, default=200, help="bot states of the final measurement")
    run.add_argument("--curve-states", type=int, default=100, help="bot states measured during training")
    run.add_argument("--grounding-every", type=int, default=4)
    run.add_argument("--out", type=Path, default=Path("runs/recipes"))
    run.add_argument("--eval-seed", type=int, default=5000, help="seeds the evaluation episodes and bot states")
    run.add_argument("--name", help="the arm's folder and report row (default: --arm)")
    run.add_argument("--bc-dataset", help="clone this Minari dataset of demonstrations before PPO")
    run.add_argument("--bc-episodes", type=int, help="clone the dataset's first N episodes (default: all)")
    run.add_argument("--bc-epochs", type=int, default=3)
    run.add_argument("--bc-learning-rate", type=float, help="the LM's rate while cloning (default: PPO's)")
    run.add_argument(
        "--bc-value-coef", type=float, default=0.0, help="weight of the value head's fit to the bot's returns"
    )
    run.add_argument("--init-from", type=Path, help="start from this saved agent (e.g. another run's cloned.zip)")
    rep = sub.add_parser("report", help="a Markdown table of the results")
    rep.add_argument("out", type=Path, nargs="?", default=Path("runs/recipes"))
    args = parser.parse_args(argv)
    if args.command == "report":
        print(report(args.out))
        return
    require_at_least({"frames": args.frames}, minimum=0 if args.bc_dataset else 1)
    require_at_least({name: getattr(args, name) for name in ("episodes", "grounding_states", "bc_epochs")})
    require_at_least({name: getattr(args, name) for name in ("grounding_every", "curve_states", "bc_episodes")})
    cloning = None
    if args.bc_dataset:
        cloning = Cloning(args.bc_dataset, args.bc_episodes, args.bc_epochs, args.bc_learning_rate, args.bc_value_coef)
    run_arm(
        args.arm,
        args.seed,
        args.env_id,
        args.frames,
        args.out,
        args.episodes,
        grounding_states=args.grounding_states,
        eval_seed=args.eval_seed,
        grounding_every=args.grounding_every,
        curve_states=args.curve_states,
        cloning=cloning,
        name=args.name,
        init_from=args.init_from,
    )


if __name__ == "__main__":
    main()
