"""The evaluation CLI and API: any agent on a suite, table with 99 % CIs, files written."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from glam_baselines import DRRNPolicy
from glam_experiments.evaluate import SUITES, Result, evaluate, main, markdown, write
from glam_experiments.statistics import Z99, confidence_halfwidth, wilson_interval
from llm_policy import LLMPolicy


def test_confidence_interval_math() -> None:
    values = np.array([1.0, 0.0, 1.0, 1.0])
    expected = Z99 * np.std(values, ddof=1) / 2
    assert confidence_halfwidth(values) == pytest.approx(expected)
    assert np.isnan(confidence_halfwidth(np.array([1.0])))


def test_wilson_interval() -> None:
    # no success in 20 episodes: the normal interval is 0 wide, Wilson's reaches z²/(n + z²)
    low, high = wilson_interval(np.zeros(20))
    assert low == 0.0 and high == pytest.approx(Z99**2 / (20 + Z99**2))
    assert confidence_halfwidth(np.zeros(20)) == 0.0
    low, high = wilson_interval(np.ones(20))
    assert high == 1.0 and low == pytest.approx(20 / (20 + Z99**2))
    # many episodes: close to the normal interval, centred on the rate
    outcomes = np.array([1.0, 0.0] * 500)
    low, high = wilson_interval(outcomes)
    assert (high - low) / 2 == pytest.approx(confidence_halfwidth(outcomes), rel=1e-2)
    assert (low + high) / 2 == pytest.approx(0.5)
    assert all(np.isnan(wilson_interval(np.array([]))))


def test_cli_writes_table_csv_json_and_png(tmp_path, tiny_llama: str, capsys) -> None:
    main(
        [
            "--agent",
            "random",
            "--agent",
            "bot",
            "--agent",
            tiny_llama,
            "--suite",
            "small",
            "--episodes",
            "4",
            "--envs",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    printed = capsys.readouterr().out
    rows = json.loads((tmp_path / "evaluation.json").read_text())
    assert len(rows) == 3 * len(SUITES["small"])
    assert all(r["episodes"] == 4 for r in rows)
    bot = [r for r in rows if r["agent"] == "bot"]
    assert all(r["success_rate"] == 1.0 for r in bot)
    table = (tmp_path / "evaluation.md").read_text().splitlines()
    assert len(table) == 2 + len(SUITES["small"])
    assert table[0].count("success [99 % CI]") == 3
    assert "(f) French" in printed
    assert (tmp_path / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "evaluation.csv").read_text().startswith("agent,label,env_id,episodes,success_rate")


def test_saved_agents_of_each_algorithm(tmp_path, tiny_llama: str) -> None:
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    ppo = PPO(LLMPolicy, env, n_steps=8, batch_size=16, n_epochs=1, policy_kwargs={"model": tiny_llama})
    ppo.learn(16)
    ppo.save(tmp_path / "llm.zip")
    dqn = DQN(
        DRRNPolicy,
        env,
        learning_starts=4,
        batch_size=4,
        buffer_size=64,
        policy_kwargs={"embedding_dim": 8, "hidden_dim": 8},
    )
    dqn.learn(16)
    dqn.save(tmp_path / "drrn.zip")
    results = evaluate([str(tmp_path / "llm.zip"), str(tmp_path / "drrn.zip")], "small", episodes=2, n_envs=2)
    assert len(results) == 2 * len(SUITES["small"])
    assert all(0 <= r.success_rate <= 1 for r in results)
    assert "vs (a)" in markdown(results)


def _result(agent: str, label: str, rate: float) -> Result:
    return Result(agent, label, "env", 10, rate, 0.0, max(0.0, rate - 0.1), min(1.0, rate + 0.1), rate / 2, 0.0)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("|")[1:-1]]


BALROG_RATES = {
    "random": [0.4, 0.2, 0.0, 0.0, 0.1],
    "bot": [1.0, 1.0, 0.0, 0.5, 1.0],
    "runs/x__llm_ppo__1/model.zip": [0.6, 0.2, 0.0, 0.25, 0.0],
}


def balrog_results(agents: list[str]) -> list[Result]:
    labels = [label for label, _, _ in SUITES["balrog"]]
    return [_result(a, label, rate) for a in agents for label, rate in zip(labels, BALROG_RATES[a], strict=True)]


def test_task_suites_compare_each_task_with_random_and_bot() -> None:
    """balrog's tasks are five kinds, not variants of the first: each is compared with the floor and the
    ceiling on the same task, not with goto."""
    lines = markdown(balrog_results(list(BALROG_RATES))).splitlines()
    head = _cells(lines[0])
    assert head == [
        "test",
        *("random: success [99 % CI]", "÷ bot", "return"),  # no column of random against itself
        *("bot: success [99 % CI]", "− random", "return"),
        *("llm_ppo: success [99 % CI]", "− random", "÷ bot", "return"),
    ]
    rows = {_cells(line)[0]: _cells(line) for line in lines[2:8]}
    assert all(len(row) == len(head) for row in rows.values())
    goto, putnext = rows["BabyAI-MixedTrainLocal-v0/goto"], rows["BabyAI-MixedTrainLocal-v0/putnext"]
    assert goto[7:10] == ["0.60 [0.50, 0.70]", "+0.20", "0.60"]
    assert putnext[5] == "+0.50" and putnext[8:10] == ["+0.25", "0.50"]
    assert rows["BabyAI-MixedTrainLocal-v0/open"][9] == "—"  # the bot never succeeded: no ratio
    # the mean over the tasks (BALROG's score): 0.21, vs random's 0.14 and the bot's 0.70
    assert rows["mean of the 5 tests"][7:10] == ["0.21", "+0.07", "0.30"]
    assert "vs (a)" not in "\n".join(lines)
    assert lines[-1].startswith("− random: success minus the random agent's on the same test; ÷ bot:")


def test_a_missing_reference_is_named_instead_of_its_column() -> None:
    table = markdown(balrog_results(["runs/x__llm_ppo__1/model.zip", "random"]))
    assert _cells(table.splitlines()[0]) == [
        "test",
        *("llm_ppo: success [99 % CI]", "− random", "return"),
        *("random: success [99 % CI]", "return"),
    ]
    assert "bot not evaluated, so no ÷ bot column (--agent bot adds it)" in table
    alone = markdown(balrog_results(["runs/x__llm_ppo__1/model.zip"]))
    assert _cells(alone.splitlines()[0]) == ["test", "llm_ppo: success [99 % CI]", "return"]
    assert "random and bot not evaluated, so no − random nor ÷ bot column" in alone


def test_variant_suites_keep_the_change_from_a() -> None:
    labels = [label for label, _, _ in SUITES["small"]]
    results = [_result(a, label, 0.5 if k else 0.8) for a in ("random", "bot") for k, label in enumerate(labels)]
    table = markdown(results)
    assert _cells(table.splitlines()[0]).count("vs (a)") == 2 and "− random" not in table
    assert _cells(table.splitlines()[3])[2] == "-38%"  # (0.5 - 0.8) / 0.8
    assert "÷ bot" in markdown(results, compare="references")
    with pytest.raises(ValueError, match="compare must be"):
        markdown(results, compare="goto")  # type: ignore[arg-type]


def test_a_level_id_is_a_suite_of_that_level_alone() -> None:
    (result,) = evaluate(["random"], "BabyAI-Text-PickUpS5N2-v0", episodes=3, n_envs=2)
    assert (result.label, result.env_id, result.episodes) == ("(a) no change", "BabyAI-Text-PickUpS5N2-v0", 3)


def test_bad_agent_and_suite() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(["nowhere/agent.zip"], "small", episodes=1)
    with pytest.raises(ValueError, match="unknown suite 'atari'"):
        evaluate(["random"], "atari", episodes=1)
    with pytest.raises(ValueError, match="unknown agent 'no-such-agent'"):
        evaluate(["no-such-agent"], "small", episodes=1)


def test_evaluation_is_reproducible(tiny_llama: str) -> None:
    first = evaluate([tiny_llama], "small", episodes=3, n_envs=1, seed=3)
    second = evaluate([tiny_llama], "small", episodes=3, n_envs=1, seed=3)
    assert first == second


def test_finished_envs_and_seen_prompts_are_not_scored_and_results_are_unchanged(tiny_llama: str) -> None:
    """Stateless policies only see the envs still short of their quota, and a language model scores
    each prompt once (PromptScoreCache); the episodes played and their outcomes are those of
    stepping every env and scoring every step."""
    from glam_experiments.agents import load_agent
    from glam_experiments.evaluate import run_episodes

    class Opaque:  # hides the policy, so run_episodes cannot slice
        def __init__(self, agent) -> None:
            self.agent = agent

        def predict(self, obs, state=None, episode_start=None, deterministic=False):
            return self.agent.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)

    def play(wrap: bool):
        env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0", max_steps=6)] * 3)
        env.seed(5)
        agent = load_agent(tiny_llama, env)
        batch_sizes = []
        # a zero-shot LM is an untrained LLMPolicy: predict() scores through _predict, the cache directly
        name = "_predict" if wrap else "action_probabilities"
        original = getattr(agent, name)

        def spy(obs, *args, **kwargs):
            batch_sizes.append(len(obs["mission"]))
            return original(obs, *args, **kwargs)

        setattr(agent, name, spy)
        played = run_episodes(Opaque(agent) if wrap else agent, env, episodes=4, deterministic=True)
        return played, batch_sizes

    (sliced_s, sliced_r), sliced_sizes = play(wrap=False)
    (full_s, full_r), full_sizes = play(wrap=True)
    np.testing.assert_array_equal(sliced_s, full_s)
    np.testing.assert_allclose(sliced_r, full_r)
    assert len(sliced_s) == 4
    assert set(full_sizes) == {3} and max(sliced_sizes) <= 3
    assert sum(sliced_sizes) < sum(full_sizes)  # finished envs and prompts seen before are not scored


def test_prompt_cache_scores_each_prompt_once_and_samples_every_step(tiny_llama: str) -> None:
    from glam_experiments.agents import load_agent
    from glam_experiments.evaluate import PromptScoreCache

    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    agent = load_agent(tiny_llama, env)
    cache = PromptScoreCache(agent)
    obs = env.reset()
    twice = {k: np.concatenate([v, v]) for k, v in obs.items()}
    actions = cache.actions(twice, deterministic=True)
    assert cache.misses == 2 and cache.hits == 2 and actions[0] == actions[2] and actions[1] == actions[3]
    np.testing.assert_array_equal(actions[:2], agent.predict(obs, deterministic=True)[0])
    import torch

    torch.manual_seed(0)
    sampled = np.concatenate([cache.actions(obs) for _ in range(200)])
    assert cache.misses == 2  # no new prompt
    probs = agent.action_probabilities(agent.obs_to_tensor(obs)[0])[0].numpy()
    frequencies = np.bincount(sampled[::2], minlength=len(probs)) / 200
    assert np.abs(frequencies - probs).max() < 0.12  # sampled from the policy's distribution


def test_zero_shot_llm_kwargs_and_names(tiny_llama: str) -> None:
    from glam_experiments.agents import load_agent
    from llm_policy import PromptTemplate

    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")])
    agent = load_agent(tiny_llama, env, {"prompt_template": PromptTemplate(history=1)})
    assert agent.prompt_template.history == 1
    results = evaluate([tiny_llama], "small", episodes=1, n_envs=1, names=["zero-shot"])
    assert {r.agent for r in results} == {"zero-shot"}
    with pytest.raises(ValueError, match="2 names for 1 agents"):
        evaluate([tiny_llama], "small", episodes=1, names=["a", "b"])


def test_random_agent_follows_the_evaluation_seed(monkeypatch) -> None:
    from glam_baselines import RandomAgent
    from glam_experiments.agents import load_agent

    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    obs = env.reset()

    def stream(seed: int) -> list[int]:
        agent = load_agent("random", env, seed=seed)
        return [int(a) for _ in range(20) for a in agent.predict(obs)[0]]

    assert stream(3) == stream(3)
    assert stream(3) != stream(4)
    seeds = []

    class Spy(RandomAgent):
        def __init__(self, action_space, seed=None) -> None:
            seeds.append(seed)
            super().__init__(action_space, seed=seed)

    monkeypatch.setattr("glam_baselines.RandomAgent", Spy)
    evaluate(["random"], "small", episodes=1, n_envs=1, seed=7)
    assert seeds == [7] * len(SUITES["small"])


def test_a_loaded_dqn_agent_has_a_one_transition_buffer(tmp_path) -> None:
    from glam_experiments.agents import load_agent

    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")] * 2)
    dqn = DQN(DRRNPolicy, env, learning_starts=4, batch_size=4, buffer_size=20_000, policy_kwargs={"hidden_dim": 8})
    dqn.learn(8)
    dqn.save(tmp_path / "drrn.zip")
    loaded = load_agent(str(tmp_path / "drrn.zip"), env)
    assert isinstance(loaded, DQN) and loaded.replay_buffer.buffer_size == 1  # saved: 20,000 (~200 MB)
    assert sum(v.nbytes for v in loaded.replay_buffer.observations.values()) < 100_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--episodes", "0"], "error: --episodes must be at least 1, got 0"),
        (["--episodes", "-5"], "error: --episodes must be at least 1, got -5"),
        (["--envs", "0"], "error: --envs must be at least 1, got 0"),
    ],
)
def test_cli_refuses_counts_below_one(tmp_path, capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit):
        main(["--agent", "random", "--suite", "small", "--out", str(tmp_path), *args])
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="at least 1"):
        evaluate(["random"], "small", episodes=0)
    with pytest.raises(ValueError, match="at least 1"):
        evaluate(["random"], "small", episodes=2, n_envs=0)


def test_cli_never_replaces_an_earlier_evaluation_unasked(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    quick = ["--agent", "random", "--suite", "small", "--episodes", "1", "--envs", "1"]
    # by default every run writes a new folder, never results/ (the main job's)
    main(quick)
    main(quick)
    runs = sorted((tmp_path / "evaluations").iterdir())
    assert len(runs) == 2 and all((run / "evaluation.json").exists() for run in runs)
    assert not (tmp_path / "results").exists()
    # an explicit folder holding an evaluation is refused before evaluating, untouched
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "evaluation.md").write_text("my table\n")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*quick, "--out", str(mine)])
    assert "already holds an evaluation (evaluation.md)" in capsys.readouterr().err
    assert (mine / "evaluation.md").read_text() == "my table\n"
    assert not (mine / "evaluation.json").exists()
    main([*quick, "--out", str(mine), "--overwrite"])
    assert (mine / "evaluation.md").read_text().startswith("| test |")
    with pytest.raises(FileExistsError, match="already holds an evaluation"):
        write(evaluate(["random"], "small", episodes=1, n_envs=1), mine)


def test_balrog_suite_is_balrogs_task_set_and_takes_our_agents(tmp_path, tiny_llama: str) -> None:
    labels = [label for label, _, _ in SUITES["balrog"]]
    assert labels == [
        f"BabyAI-MixedTrainLocal-v0/{task}" for task in ("goto", "pickup", "open", "putnext", "pick_up_seq_go_to")
    ]
    for label, env_id, kwargs in SUITES["balrog"]:
        env = gym.make(env_id, **kwargs).unwrapped
        assert env.action_kinds[0].replace(" ", "_") == label.split("/")[1] and env.max_steps == 100
    results = evaluate(["bot", "random"], "balrog", episodes=4, n_envs=2)
    assert [r.success_rate for r in results if r.agent == "bot"] == [1.0] * 5
    # an agent trained on a BabyAI-Text id loads on these levels (same observation space)
    env = DummyVecEnv([lambda: gym.make("BabyAI-Text-GoToS5N2-v0")])
    PPO(LLMPolicy, env, n_steps=4, batch_size=4, policy_kwargs={"model": tiny_llama}).save(tmp_path / "llm.zip")
    (result, *_) = evaluate([str(tmp_path / "llm.zip")], "balrog", episodes=1, n_envs=1)
    assert result.label == labels[0] and result.episodes == 1


def test_grounding_columns_and_variant_episodes(tmp_path, tiny_llama: str, capsys) -> None:
    main(
        [
            *("--agent", "random", "--agent", "bot", "--agent", tiny_llama),
            *("--suite", "small-pickup", "--episodes", "3", "--variant-episodes", "2", "--envs", "2"),
            *("--grounding-states", "10", "--out", str(tmp_path)),
        ]
    )
    rows = json.loads((tmp_path / "evaluation.json").read_text())
    assert [r["episodes"] for r in rows[: len(SUITES["small-pickup"])]] == [3] + [2] * (len(SUITES["small-pickup"]) - 1)
    by_agent = {}
    for r in rows:
        by_agent.setdefault(r["agent"], []).append(r)
    assert all(r["bot_agreement"] is None for r in by_agent["bot"])  # the bot is the reference
    assert all(r["bot_agreement"] == pytest.approx(1 / 6) and r["value_std"] is None for r in by_agent["random"])
    llm = by_agent[tiny_llama]
    assert all(0 <= r["bot_agreement"] <= 1 and r["state_dependence"] >= 0 and r["value_std"] >= 0 for r in llm)
    # the same bot states for every agent of a test
    assert {r["constant_agreement"] for r in by_agent["random"]} >= {llm[0]["constant_agreement"]}
    printed = capsys.readouterr().out
    assert "| test (grounding) | best constant |" in printed and "bot agreement | state dep. | value sd" in printed


def test_grounding_states_must_not_be_negative(tiny_llama: str) -> None:
    with pytest.raises(ValueError, match="grounding_states"):
        evaluate(["random"], "small", episodes=1, grounding_states=-1)
