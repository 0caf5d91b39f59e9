"""Evaluate agents on suites of BabyAI-Text envs: success rate, return, 99 % confidence intervals.

    python -m glam_experiments.evaluate --agent runs/.../model.zip --agent random --suite glam --episodes 100

An agent is a saved SB3 zip (PPO, RecurrentPPO or DQN, e.g. LLMPolicy, Symbolic-PPO,
DRRN), ``random``, ``bot`` (minigrid's BabyAIBot), or a language-model name or directory
(zero-shot: an untrained :class:`LLMPolicy`).  Every agent plays the same seeded
episodes.  Writes ``<out>/evaluation.{md,csv,json}`` and a grouped bar chart
``<out>/evaluation.png``; ``--out`` defaults to a new ``evaluations/<date-time>`` folder,
and an earlier evaluation's files are only replaced with ``--overwrite``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tqdm import tqdm

import babyai_text  # noqa: F401  (registers the ids)
from babyai_text.envs.glam import MIXED_KINDS
from glam_experiments.agents import load_agent
from glam_experiments.cli import ArgumentParser, require_at_least, run_command, summary
from glam_experiments.statistics import confidence_halfwidth, wilson_interval

#: BALROG's episode length for its BabyAI tasks (``gym.make(task, max_steps=100)``).
BALROG_MAX_STEPS = 100

def variant_suite(env_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``env_id`` and its generalization variants (GLAM's tests (b), (c), (e), (f) and colour synonyms)."""
    return [
        ("(a) no change", env_id, {}),
        ("(b) renamed objects", env_id, {"variant": "RenamedObjects"}),
        ("(c) invented words", env_id, {"variant": "InventedWords"}),
        ("(c') colour synonyms", env_id, {"variant": "ColourSynonyms"}),
        ("(e) synonym actions", env_id, {"variant": "SynonymActions"}),
        ("(f) French", env_id, {"variant": "French"}),
    ]


#: Suites: (label, env id, env kwargs). "glam" is the paper's generalization figure;
#: "balrog" is BALROG's BabyAI task set: GLAM's MixedTrainLocal level of each of its five
#: task kinds, with BALROG's episode length, as array observations so that any of our
#: agents plays it (the levels are those BALROG's code builds; see docs/environments.md).
SUITES: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "glam": [
        ("(a) no change", "BabyAI-Text-MixedTrain-v0", {}),
        ("(b) renamed objects", "BabyAI-Text-MixedTrain-RenamedObjects-v0", {}),
        ("(c) invented words", "BabyAI-Text-MixedTrain-InventedWords-v0", {}),
        ("(d) new composition", "BabyAI-Text-PickUpSeqPickUp-v0", {}),
        ("(e) synonym actions", "BabyAI-Text-MixedTrain-SynonymActions-v0", {}),
        ("(f) French (GoTo)", "BabyAI-Text-GoTo-French-v0", {}),
    ],
    "small": variant_suite("BabyAI-Text-GoToS5N2-v0"),
    "small-pickup": variant_suite("BabyAI-Text-PickUpS5N2-v0"),
    "balrog": [
        (
            f"BabyAI-MixedTrainLocal-v0/{kind.replace(' ', '_')}",
            "BabyAI-MixedTrainLocal-v0",
            {"kind": kind, "max_steps": BALROG_MAX_STEPS, "observation": "text"},
        )
        for kind in MIXED_KINDS
    ],
}


@dataclass
class Result:
    """One agent on one suite entry."""

    agent: str
    label: str
    env_id: str
    episodes: int
    success_rate: float
    success_ci99: float
    """half-width of the normal 99 % interval (GLAM's convention)"""
    success_low: float
    success_high: float
    """Wilson 99 % interval (valid at 0 and 1 successes too, where the normal one is 0 wide)"""
    mean_return: float
    return_ci99: float
    bot_agreement: float | None = None
    """grounding diagnostics (:mod:`glam_experiments.diagnostics`) on bot states of this test; ``None``: not
    measured (``grounding_states=0``, or an agent whose answer depends on its past: recurrent, DQN, bot)"""
    constant_agreement: float | None = None
    state_dependence: float | None = None
    value_std: float | None = None


def run_episodes(
    agent: Any, env: VecEnv, episodes: int, deterministic: bool = False, progress: tqdm | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Play ``episodes`` episodes (split over the envs); returns successes and returns.

    :param progress: a progress bar advanced by one per finished episode.
    """
    n = env.num_envs
    targets = np.array([(episodes + i) // n for i in range(n)])
    counts = np.zeros(n, dtype=int)
    successes, returns = [], []
    current = np.zeros(n)
    obs = env.reset()
    state = None
    starts = np.ones(n, dtype=bool)
    # A stateless network policy only needs the observations of envs still short of their
    # quota (the others step with action 0 and are not counted): saves LM forward passes.
    sliceable = _is_stateless_network_policy(agent)
    policy = agent if not hasattr(agent, "policy") else agent.policy
    cache = PromptScoreCache(policy) if sliceable and callable(getattr(policy, "prompts", None)) else None
    while (counts < targets).any():
        if cache is not None:
            active = np.flatnonzero(counts < targets)
            actions = np.zeros(n, dtype=np.int64)
            actions[active] = cache.actions({k: v[active] for k, v in obs.items()}, deterministic)
        elif sliceable:
            active = np.flatnonzero(counts < targets)
            actions = np.zeros(n, dtype=np.int64)
            actions[active], _ = agent.predict(
                {k: v[active] for k, v in obs.items()}, episode_start=starts[active], deterministic=deterministic
            )
        else:
            actions, state = agent.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
        obs, rewards, dones, infos = env.step(actions)
        current += rewards
        for i in range(n):
            if dones[i] and counts[i] < targets[i]:
                successes.append(float(infos[i].get("success", False)))
                returns.append(current[i])
                counts[i] += 1
                if progress is not None:
                    progress.update(1)
            if dones[i]:
                current[i] = 0
        starts = dones
    return np.array(successes), np.array(returns)


class PromptScoreCache:
    """A language-model policy's action probabilities, computed once per prompt it reads.

    The policy is stateless and, in evaluation, deterministic in its scores: a prompt it has
    scored gets the same probabilities again, so only new prompts are scored.  Episodes of one
    level revisit the same views often (turning on the spot, the same room from the same cell:
    about half the steps of a half-random agent's 200 PickUpS5N2 episodes), and the actions are
    still sampled afresh at every step.

    :param policy: an :class:`llm_policy.LLMPolicy` (anything with ``prompts`` and
        ``action_probabilities``).
    :param max_entries: prompts kept (the oldest are dropped beyond).
    """

    def __init__(self, policy: Any, max_entries: int = 200_000) -> None:
        from glam_algorithms.gigpo import default_step_key

        self.policy = policy
        self.key = default_step_key(policy)
        self.max_entries = max_entries
        self.entries: dict[Any, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def actions(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray:
        """One action per observation of the batch: the most probable, or sampled (torch's generator)."""
        self.policy.set_training_mode(False)
        tensors, _ = self.policy.obs_to_tensor(obs)
        keys = self.key(tensors)
        first: dict[Any, int] = {}
        for i, key in enumerate(keys):
            if key not in self.entries:
                first.setdefault(key, i)  # a prompt twice in the batch is scored once
        new = list(first.values())
        if new:
            part = {k: v[new] for k, v in tensors.items()}
            probs = self.policy.action_probabilities(part).float().cpu()
            for i, row in zip(new, probs, strict=True):
                if len(self.entries) >= self.max_entries:
                    self.entries.pop(next(iter(self.entries)))
                self.entries[keys[i]] = row
        self.hits += len(keys) - len(new)
        self.misses += len(new)
        probs = torch.stack([self.entries[key] for key in keys])
        chosen = probs.argmax(dim=1) if deterministic else torch.distributions.Categorical(probs=probs).sample()
        return chosen.numpy()


def _is_stateless_network_policy(agent: Any) -> bool:
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from stable_baselines3.common.policies import BasePolicy

    policy = agent if isinstance(agent, BasePolicy) else getattr(agent, "policy", None)
    return isinstance(policy, BasePolicy) and not isinstance(policy, RecurrentActorCriticPolicy)


def evaluate(
    agents: list[str],
    suite: str | list[tuple[str, str, dict[str, Any]]],
    episodes: int = 100,
    n_envs: int = 4,
    seed: int = 0,
    deterministic: bool = False,
    llm_kwargs: dict[str, Any] | None = None,
    names: list[str] | None = None,
    grounding_states: int = 0,
    variant_episodes: int | None = None,
) -> list[Result]:
    """Every agent on every entry of ``suite``, on the same seeded episodes.

    :param agents: agent specs (see :func:`load_agent`).
    :param suite: a name of :data:`SUITES`, an env id (that level alone), or its own list of
        ``(label, env id, env kwargs)`` tests.
    :param episodes: episodes per agent and suite entry.
    :param n_envs: envs stepped together (LM agents score them in one batch).
    :param seed: seeds the envs' episodes and the agents' sampling.
    :param deterministic: greedy actions instead of sampling from the policy.
    :param llm_kwargs: extra :class:`LLMPolicy` arguments for zero-shot language models.
    :param names: the agents' names in the results (default: the specs).
    :param grounding_states: also measure each stateless agent's grounding diagnostics on this many states
        along the BabyAI bot's paths of each test (seeded ``seed``; :mod:`glam_experiments.diagnostics`); 0: none.
    :param variant_episodes: episodes of the entries after the suite's first (default: ``episodes``).
    """
    if isinstance(suite, str):
        if suite in SUITES:
            entries = SUITES[suite]
        elif suite in gym.registry:
            entries = [("(a) no change", suite, {})]
        else:
            raise ValueError(f"unknown suite {suite!r}; choose one of {sorted(SUITES)} or a BabyAI-Text id")
    else:
        entries = list(suite)
        if not entries:
            raise ValueError("the suite has no test")
    if episodes < 1 or n_envs < 1 or (variant_episodes is not None and variant_episodes < 1):
        raise ValueError(
            f"episodes, variant_episodes and n_envs must be at least 1, got episodes={episodes}, "
            f"variant_episodes={variant_episodes}, n_envs={n_envs}"
        )
    if grounding_states < 0:
        raise ValueError(f"grounding_states must be >= 0, got {grounding_states}")
    if names is not None and len(names) != len(agents):
        raise ValueError(f"got {len(names)} names for {len(agents)} agents")
    results = []
    jobs = [(a, name, entry) for a, name in zip(agents, names or agents, strict=True) for entry in entries]
    first_label = entries[0][0]
    states: dict[str, Any] = {}
    for k, (agent_spec, name, (label, env_id, kwargs)) in enumerate(jobs):
        count = episodes if label == first_label or variant_episodes is None else variant_episodes
        env = DummyVecEnv([lambda env_id=env_id, kwargs=kwargs: gym.make(env_id, **kwargs)] * n_envs)
        env.seed(seed)
        agent = load_agent(agent_spec, env, llm_kwargs, seed=seed)
        set_random_seed(seed)  # the agents' own sampling is reproducible too
        desc = f"[{k + 1}/{len(jobs)}] {_short(name)}: {label}"
        with tqdm(total=count, desc=desc, unit="episode") as progress:
            success, returns = run_episodes(agent, env, count, deterministic, progress)
        low, high = wilson_interval(success)
        grounding = _grounding(agent, label, env_id, kwargs, grounding_states, seed, states)
        results.append(
            Result(
                agent=name,
                label=label,
                env_id=env_id + (f" {kwargs}" if kwargs else ""),
                episodes=len(success),
                success_rate=float(success.mean()),
                success_ci99=confidence_halfwidth(success),
                success_low=low,
                success_high=high,
                mean_return=float(returns.mean()),
                return_ci99=confidence_halfwidth(returns),
                **grounding,
            )
        )
        env.close()
    return results


def _grounding(
    agent: Any, label: str, env_id: str, kwargs: dict[str, Any], num_states: int, seed: int, cache: dict[str, Any]
) -> dict[str, float | None]:
    """The grounding fields of a :class:`Result` (empty where not measured)."""
    from glam_baselines import BotAgent
    from glam_experiments.diagnostics import BotStates, measure

    if not num_states or isinstance(agent, BotAgent) or not _is_measurable(agent):
        return {}
    if label not in cache:
        cache[label] = BotStates.collect(env_id, num_states, seed=seed, env_kwargs=kwargs)
    g = measure(agent, cache[label])
    return {
        "bot_agreement": g.bot_agreement,
        "constant_agreement": g.constant_agreement,
        "state_dependence": g.state_dependence,
        "value_std": g.value_std,
    }


def _is_measurable(agent: Any) -> bool:
    from stable_baselines3.common.policies import ActorCriticPolicy

    from glam_baselines import RandomAgent

    policy = getattr(agent, "policy", agent)
    return isinstance(agent, RandomAgent) or (
        _is_stateless_network_policy(agent) and isinstance(policy, ActorCriticPolicy)
    )


#: The agents :func:`markdown` compares each test with, when the tests are not variants of one level.
REFERENCE_AGENTS = ("random", "bot")


def compares_with_references(labels: list[str]) -> bool:
    """Whether a suite's table compares each test with the random agent and the bot on it (``True``)
    rather than with the suite's first test.

    Our variant suites (``glam``, ``small``...) label the unchanged level ``(a) ...`` and their other tests
    are that level changed: each test is read as a change from (a).  Tests of different kinds (``balrog``'s
    five task kinds) differ in difficulty by design, so a change from the first says nothing; the floor
    (random) and the ceiling (the bot) on the same test do.

    :param labels: the suite's test labels, in order.
    """
    return not (labels and labels[0].startswith("(a)"))


def markdown(results: list[Result], compare: Literal["auto", "first", "references"] = "auto") -> str:
    """One row per suite entry, a column per agent: success with its Wilson 99 % interval, how it
    compares, mean return.

    :param results: what :func:`evaluate` returned.
    :param compare: ``"first"``: relative change vs the first test, (a); ``"references"``: success minus
        the random agent's on the same test (``− random``) and as a fraction of the bot's (``÷ bot``), with
        a mean row; a reference agent not among ``results`` is named below the table instead of its column.
        ``"auto"``: :func:`compares_with_references` decides from the labels.
    """
    labels = list(dict.fromkeys(r.label for r in results))
    if compare == "auto":
        compare = "references" if compares_with_references(labels) else "first"
    if compare not in ("first", "references"):
        raise ValueError(f"compare must be 'auto', 'first' or 'references', got {compare!r}")
    table = _vs_first(results, labels) if compare == "first" else _vs_references(results, labels)
    measured = [r for r in results if r.bot_agreement is not None]
    if measured:
        table += "\n\n" + grounding_markdown(results)
    return table


def _vs_first(results: list[Result], labels: list[str]) -> str:
    agents = list(dict.fromkeys(r.agent for r in results))
    by_key = {(r.agent, r.label): r for r in results}
    head = "| test | " + " | ".join(f"{_short(a)}: success [99 % CI] | vs (a) | return" for a in agents) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(agents)]
    for label in labels:
        cells = []
        for agent in agents:
            r = by_key[(agent, label)]
            base = by_key[(agent, labels[0])].success_rate
            rel = f"{(r.success_rate - base) / base:+.0%}" if base > 0 and label != labels[0] else "—"
            cells.append(f"{_success(r)} | {rel} | {r.mean_return:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _vs_references(results: list[Result], labels: list[str]) -> str:
    agents = list(dict.fromkeys(r.agent for r in results))
    by_key = {(r.agent, r.label): r for r in results}
    random, bot = REFERENCE_AGENTS

    def rate(agent: str, label: str | None) -> float:
        """``agent``'s success on ``label`` (``None``: its mean over the tests)."""
        if label is None:
            return float(np.mean([by_key[(agent, lab)].success_rate for lab in labels]))
        return by_key[(agent, label)].success_rate

    # (header, reference agent, cell from the agent's success and the reference's)
    comparisons = [
        ("− random", random, lambda x, ref: f"{x - ref:+.2f}"),
        ("÷ bot", bot, lambda x, ref: f"{x / ref:.2f}" if ref > 0 else "—"),
    ]
    # a reference compared with itself would read 0 or 1 on every row: left out
    columns = {a: [c for c in comparisons if c[1] in agents and c[1] != a] for a in agents}
    head = " | ".join(
        " | ".join([f"{_short(a)}: success [99 % CI]", *(c[0] for c in columns[a]), "return"]) for a in agents
    )
    lines = [f"| test | {head} |", "|---|" + "".join("---|" * (len(columns[a]) + 2) for a in agents)]
    for label in [*labels, None]:
        cells = []
        for agent in agents:
            x = rate(agent, label)
            compared = [cell(x, rate(ref, label)) for _, ref, cell in columns[agent]]
            if label is None:  # no interval for a mean over tests of different kinds
                returns = np.mean([by_key[(agent, lab)].mean_return for lab in labels])
                cells.append(" | ".join([f"{x:.2f}", *compared, f"{returns:.2f}"]))
            else:
                r = by_key[(agent, label)]
                cells.append(" | ".join([_success(r), *compared, f"{r.mean_return:.2f}"]))
        lines.append(f"| {label if label is not None else f'mean of the {len(labels)} tests'} | {' | '.join(cells)} |")
    legend = []
    if random in agents:
        legend.append("− random: success minus the random agent's on the same test")
    if bot in agents:
        legend.append("÷ bot: success as a fraction of the bot's (BabyAIBot) on the same test")
    missing = [c for c in comparisons if c[1] not in agents]
    if missing:
        names, headers = " and ".join(c[1] for c in missing), " nor ".join(c[0] for c in missing)
        flags = " ".join(f"--agent {c[1]}" for c in missing)
        legend.append(
            f"{names} not evaluated, so no {headers} column ({flags} adds {'them' if len(missing) > 1 else 'it'})"
        )
    return "\n".join([*lines, "", "; ".join(legend) + "."])


def _success(r: Result) -> str:
    """Success rate with its Wilson 99 % interval."""
    return f"{r.success_rate:.2f} [{r.success_low:.2f}, {r.success_high:.2f}]"


def grounding_markdown(results: list[Result]) -> str:
    """Bot agreement (best constant action's), state dependence and value spread per test and agent."""
    agents = list(dict.fromkeys(r.agent for r in results if r.bot_agreement is not None))
    labels = list(dict.fromkeys(r.label for r in results))
    by_key = {(r.agent, r.label): r for r in results}
    head = "| test (grounding) | best constant | "
    head += " | ".join(f"{_short(a)}: bot agreement | state dep. | value sd" for a in agents) + " |"
    lines = [head, "|---|---|" + "---|---|---|" * len(agents)]
    for label in labels:
        rows = [by_key.get((a, label)) for a in agents]
        constant = next((r.constant_agreement for r in rows if r is not None and r.bot_agreement is not None), None)
        cells = []
        for r in rows:
            if r is None or r.bot_agreement is None:
                cells.append("– | – | –")
                continue
            value = "–" if r.value_std is None else f"{r.value_std:.3f}"
            cells.append(f"{r.bot_agreement:.2f} | {r.state_dependence:.2f} | {value}")
        lines.append(f"| {label} | {'–' if constant is None else f'{constant:.2f}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _short(agent: str) -> str:
    path = Path(agent)
    return path.parent.name.split("__")[1] if path.suffix == ".zip" and "__" in path.parent.name else path.name or agent


def bar_chart(results: list[Result], png: Path) -> None:
    """Grouped bars (one group per test, one bar per agent) with 99 % CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = list(dict.fromkeys(r.agent for r in results))
    labels = list(dict.fromkeys(r.label for r in results))
    by_key = {(r.agent, r.label): r for r in results}
    width = 0.8 / len(agents)
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 4))
    for k, agent in enumerate(agents):
        xs = np.arange(len(labels)) + k * width - 0.4 + width / 2
        rates = [by_key[(agent, lab)].success_rate for lab in labels]
        low = [by_key[(agent, lab)].success_rate - by_key[(agent, lab)].success_low for lab in labels]
        high = [by_key[(agent, lab)].success_high - by_key[(agent, lab)].success_rate for lab in labels]
        yerr = np.nan_to_num(np.array([low, high]))
        ax.bar(xs, rates, width, yerr=yerr, capsize=3, label=_short(agent))
    ax.set_xticks(np.arange(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylabel("success rate (Wilson 99 % CI)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


#: The files :func:`write` makes in its folder.
OUTPUT_FILES = tuple(f"evaluation.{ext}" for ext in ("md", "csv", "json", "png"))


def existing_outputs(out: Path) -> list[Path]:
    """The files of an earlier evaluation in ``out`` that :func:`write` would replace."""
    return [out / name for name in OUTPUT_FILES if (out / name).exists()]


def fresh_output_dir(root: Path = Path("evaluations")) -> Path:
    """A folder under ``root`` named after the current time, that does not exist yet
    (the CLI's default, so that no run replaces another's files)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, k = root / stamp, 1
    while out.exists():  # two evaluations started within the same second
        k += 1
        out = root / f"{stamp}-{k}"
    return out


def write(results: list[Result], out: Path, overwrite: bool = False) -> dict[str, Path]:
    """``evaluation.md``, ``.csv``, ``.json`` and ``.png`` in ``out``.

    :param results: what :func:`evaluate` returned.
    :param out: the folder (created if missing).
    :param overwrite: replace the files of an earlier evaluation in ``out``; without it,
        their presence raises :class:`FileExistsError` and nothing is written.
    """
    if not results:
        raise ValueError("no results to write")
    existing = existing_outputs(out)
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds an evaluation ({', '.join(p.name for p in existing)}); "
            "choose another folder or pass overwrite=True (CLI: --overwrite)"
        )
    out.mkdir(parents=True, exist_ok=True)
    paths = {name.split(".")[1]: out / name for name in OUTPUT_FILES}
    paths["md"].write_text(markdown(results) + "\n")
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(results[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)
    paths["json"].write_text(json.dumps([asdict(r) for r in results], indent=2))
    bar_chart(results, paths["png"])
    return paths


def main(argv: list[str] | None = None) -> None:
    run_command(_main, argv)


def _main(argv: list[str]) -> None:
    parser = ArgumentParser(description=summary(__doc__))
    parser.add_argument("--agent", action="append", required=True, help="repeatable: .zip, random, bot or a model")
    parser.add_argument(
        "--suite", default="glam", help=f"one of {sorted(SUITES)}, or a BabyAI-Text id: that level alone"
    )
    parser.add_argument("--episodes", type=int, default=100, help="per agent and test (>= 1)")
    parser.add_argument("--envs", type=int, default=4, help="envs stepped together (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deterministic", action="store_true", help="greedy actions instead of sampling")
    parser.add_argument(
        "--variant-episodes",
        type=int,
        default=None,
        help="episodes of the tests after (a) (default: --episodes)",
    )
    parser.add_argument(
        "--grounding-states",
        type=int,
        default=0,
        help="also measure bot agreement and state dependence on this many bot states per test (0: no)",
    )
    parser.add_argument(
        "--prompt-history", type=int, default=None, help="zero-shot LMs: observations in the prompt (default: all)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder of the results (default: a new evaluations/<date-time>)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation's files in --out")
    args = parser.parse_args(argv)
    require_at_least({"episodes": args.episodes, "envs": args.envs, "variant_episodes": args.variant_episodes})
    require_at_least({"prompt_history": args.prompt_history})
    require_at_least({"grounding_states": args.grounding_states}, minimum=0)
    out = args.out if args.out is not None else fresh_output_dir()
    # Refuse before the (possibly hours long) evaluation, not after it.
    if (existing := existing_outputs(out)) and not args.overwrite:
        parser.error(
            f"{out} already holds an evaluation ({', '.join(p.name for p in existing)}); "
            "choose another --out or pass --overwrite"
        )
    llm_kwargs = None
    if args.prompt_history is not None:
        from babyai_text.prompt import PromptTemplate

        llm_kwargs = {"prompt_template": PromptTemplate(history=args.prompt_history)}
    labels = [label for label, _, _ in SUITES.get(args.suite, [])]
    added = [a for a in REFERENCE_AGENTS if a not in args.agent]
    # the table compares each test with the random agent and the bot: they load no model and take seconds
    if labels and compares_with_references(labels) and added:
        print(f"the {args.suite} suite compares each test with the random agent and the bot: adding {added}")
        args.agent += added
    results = evaluate(
        args.agent,
        args.suite,
        args.episodes,
        args.envs,
        args.seed,
        args.deterministic,
        llm_kwargs,
        grounding_states=args.grounding_states,
        variant_episodes=args.variant_episodes,
    )
    print(markdown(results))
    for path in write(results, out, overwrite=args.overwrite).values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
