"""Bot demonstrations as local Minari datasets (glam_experiments.demonstrations)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Minari is the optional "data" extra (numpy >= 2): the lowest-versions run goes without it.
minari = pytest.importorskip("minari")
pytest.importorskip("h5py")

import babyai_text  # noqa: E402
from glam_experiments.cli import UsageError  # noqa: E402
from glam_experiments.demonstrations import (  # noqa: E402
    bot_demonstrations,
    default_dataset_id,
    episode_seeds,
    load_demonstrations,
    main,
    record_demonstrations,
    require_minari,
)


@pytest.fixture(autouse=True)
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every dataset of these tests goes to a temporary root, never to ~/.minari."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _replays(dataset: Any) -> None:
    """The recovered env, reset with each stored seed and stepped with the stored actions, gives every
    stored observation, reward and end again."""
    env = dataset.recover_environment()
    try:
        for episode, seed in zip(dataset.iterate_episodes(), episode_seeds(dataset), strict=True):
            assert seed is not None
            obs, _ = env.reset(seed=seed)
            steps = len(episode.actions)
            assert all(len(v) == steps + 1 for v in episode.observations.values())
            for key, value in obs.items():
                np.testing.assert_array_equal(episode.observations[key][0], value, err_msg=key)
            for t, action in enumerate(episode.actions):
                obs, reward, terminated, truncated, _ = env.step(int(action))
                for key, value in obs.items():
                    np.testing.assert_array_equal(episode.observations[key][t + 1], value, err_msg=f"{key} {t}")
                assert reward == episode.rewards[t]
                assert (terminated, truncated) == (episode.terminations[t], episode.truncations[t])
            assert episode.terminations[-1] or episode.truncations[-1]
    finally:
        env.close()


@pytest.mark.parametrize(
    ("env_id", "env_kwargs"),
    [
        ("BabyAI-Text-PickUpS5N2-v0", {}),
        ("BabyAI-Text-GoTo-French-v0", {}),  # a GLAM generalization variant
        ("BabyAI-MixedTrainLocal-v0", {"kind": "pickup", "observation": "text"}),  # GLAM's id, with kwargs
    ],
)
def test_recorded_bot_episodes_load_back_and_replay(env_id: str, env_kwargs: dict[str, Any]) -> None:
    dataset = record_demonstrations(env_id, 3, seed=5, env_kwargs=env_kwargs)
    dataset_id = default_dataset_id(env_id, "bot", env_kwargs)
    loaded = minari.load_dataset(dataset_id)
    assert loaded.total_episodes == 3 and loaded.total_steps == dataset.total_steps
    assert episode_seeds(loaded) == [5, 6, 7]
    # the env's own spaces: the text observation's Dict of arrays and Discrete(6)
    env = loaded.recover_environment()
    assert env.spec.id == env_id and env.spec.kwargs == {**env.spec.kwargs, **env_kwargs}
    assert loaded.observation_space == env.observation_space
    assert loaded.action_space == env.action_space
    env.close()
    metadata = loaded.storage.metadata
    assert metadata["algorithm_name"] == "BabyAIBot"
    assert metadata["recording"]["success_rate"] == 1.0  # the bot solves these levels
    assert "success rate 1.000" in metadata["description"]
    assert all(episode.infos["success"][-1] for episode in loaded.iterate_episodes())
    _replays(loaded)


def test_the_default_id_follows_minaris_naming() -> None:
    assert default_dataset_id("BabyAI-Text-PickUpS5N2-v0") == "babyai-text/PickUpS5N2/bot-v0"
    assert default_dataset_id("BabyAI-Text-GoTo-French-v0", "random") == "babyai-text/GoTo-French/random-v0"
    assert (
        default_dataset_id("BabyAI-MixedTrainLocal-v0", "bot", {"observation": "text", "kind": "pick up seq go to"})
        == "babyai-text/MixedTrainLocal/bot-kind_pick_up_seq_go_to-observation_text-v0"
    )
    assert default_dataset_id("BabyAI-Text-GoTo-v0", "runs/2024__ppo/model.zip").endswith("/2024__ppo_model-v0")
    for dataset_id in ("babyai-text/PickUpS5N2/bot-v0", default_dataset_id("BabyAI-Text-GoTo-v0", "a/b c.zip")):
        namespace, _, version = minari.dataset.minari_dataset.parse_dataset_id(dataset_id)
        assert namespace is not None and version == 0


def test_the_text_and_mission_come_back_from_a_stored_step(minari_root: Path) -> None:
    record_demonstrations("BabyAI-Text-PickUpS5N2-v0", 1, dataset_id="test/pickup-v0")
    episode = next(load_demonstrations("test/pickup-v0").iterate_episodes())
    first = babyai_text.decode_observation({key: value[0] for key, value in episode.observations.items()})
    assert first.mission.startswith("pick up ")
    assert first.current and all(isinstance(s, str) for s in first.current)
    assert first.action_names[3] == "pick up"
    whole = babyai_text.decode_observation(episode.observations)  # the T + 1 steps at once
    assert len(whole) == len(episode.actions) + 1 and {t.mission for t in whole} == {first.mission}
    assert (minari_root / "test" / "pickup-v0" / "data").is_dir()


def test_the_random_agent_is_recorded_and_reproducible() -> None:
    a = record_demonstrations("BabyAI-Text-GoToS5N2-v0", 2, seed=1, agent="random", dataset_id="tests/a-v0")
    b = record_demonstrations("BabyAI-Text-GoToS5N2-v0", 2, seed=1, agent="random", dataset_id="tests/b-v0")
    assert a.storage.metadata["algorithm_name"] == "RandomAgent"
    for x, y in zip(a.iterate_episodes(), b.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(x.actions, y.actions)
    _replays(a)


def test_an_existing_dataset_is_refused_unless_overwrite() -> None:
    record_demonstrations("BabyAI-Text-PickUpS5N2-v0", 1, dataset_id="tests/x-v0")
    with pytest.raises(ValueError, match=r"'tests/x-v0' already exists .*overwrite=True \(--overwrite\)"):
        record_demonstrations("BabyAI-Text-PickUpS5N2-v0", 2, dataset_id="tests/x-v0")
    assert load_demonstrations("tests/x-v0").total_episodes == 1  # untouched
    replaced = record_demonstrations("BabyAI-Text-PickUpS5N2-v0", 2, seed=3, dataset_id="tests/x-v0", overwrite=True)
    assert replaced.total_episodes == 2 and episode_seeds(load_demonstrations("tests/x-v0")) == [3, 4]


def test_the_main_jobs_demonstrations_are_recorded_once() -> None:
    dataset_id = bot_demonstrations("BabyAI-Text-PickUpS5N2-v0", 3)
    assert dataset_id == "babyai-text/PickUpS5N2/bot-v0"
    assert episode_seeds(load_demonstrations(dataset_id)) == [0, 1, 2]
    assert bot_demonstrations("BabyAI-Text-PickUpS5N2-v0", 2) == dataset_id  # enough: used as it is
    with pytest.raises(ValueError, match=r"holds 3 episodes, fewer than the 5 asked for: .*--episodes 5 --overwrite"):
        bot_demonstrations("BabyAI-Text-PickUpS5N2-v0", 5)


def test_jobs_started_together_record_the_main_jobs_demonstrations_once(minari_root: Path) -> None:
    import os
    import subprocess

    code = (
        "from glam_experiments.demonstrations import bot_demonstrations as b; print(b('BabyAI-Text-PickUpS5N2-v0', 3))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert out.split() == ["babyai-text/PickUpS5N2/bot-v0"]
    assert episode_seeds(load_demonstrations("babyai-text/PickUpS5N2/bot-v0")) == [0, 1, 2]


def _metadata(dataset_id: str) -> Path:
    from glam_experiments.demonstrations import dataset_path

    return dataset_path(dataset_id) / "data" / "metadata.json"


def test_an_interrupted_recording_is_recorded_again(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    dataset_id = bot_demonstrations("BabyAI-Text-PickUpS5N2-v0", 2)
    metadata = json.loads(_metadata(dataset_id).read_text())
    del metadata["recording"]  # written last: a recording killed while writing has none
    _metadata(dataset_id).write_text(json.dumps(metadata))
    assert bot_demonstrations("BabyAI-Text-PickUpS5N2-v0", 3) == dataset_id
    assert "holds an interrupted recording: recording it again" in capsys.readouterr().err
    assert episode_seeds(load_demonstrations(dataset_id)) == [0, 1, 2]

    _metadata(dataset_id).unlink()  # killed before Minari wrote its metadata
    assert bot_demonstrations("BabyAI-Text-PickUpS5N2-v0", 1) == dataset_id
    assert load_demonstrations(dataset_id).total_episodes == 1


def test_a_dataset_another_tool_wrote_is_used_as_it_is() -> None:
    import json

    dataset_id = bot_demonstrations("BabyAI-Text-PickUpS5N2-v0", 2)
    metadata = json.loads(_metadata(dataset_id).read_text())
    del metadata["recording"]
    metadata["code_permalink"] = "https://example.org/their-recorder"
    _metadata(dataset_id).write_text(json.dumps(metadata))
    assert bot_demonstrations("BabyAI-Text-PickUpS5N2-v0", 2) == dataset_id
    assert json.loads(_metadata(dataset_id).read_text())["code_permalink"] == "https://example.org/their-recorder"


def test_a_failed_overwrite_keeps_the_old_dataset() -> None:
    record_demonstrations("BabyAI-Text-PickUpS5N2-v0", 1, dataset_id="tests/x-v0")
    with pytest.raises(ValueError, match="unknown agent"):
        record_demonstrations(
            "BabyAI-Text-PickUpS5N2-v0", 1, agent="no-such-agent", dataset_id="tests/x-v0", overwrite=True
        )
    assert load_demonstrations("tests/x-v0").total_episodes == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"env_id": "BabyAI-Text-PickUpS5N3-v0"}, ValueError, r"unknown BabyAI-Text id .*Did you mean .*PickUpS5N2"),
        ({"env_id": "CartPole-v1"}, ValueError, r"unknown BabyAI-Text id 'CartPole-v1'"),
        ({"episodes": 0}, UsageError, r"--episodes must be at least 1, got 0"),
        ({"agent": "no-such-agent"}, ValueError, r"unknown agent 'no-such-agent'"),
        ({"dataset_id": "tests/no-version"}, ValueError, r"has no version: Minari's ids end with -v<N>"),
        ({"dataset_id": "tests/bad name!-v0"}, ValueError, r"malformed dataset id"),
        ({"env_id": "BabyAI-MixedTrainLocal-v0"}, ValueError, r"Minari cannot store .*observation=text"),
        (
            {"env_id": "BabyAI-MixedTrainLocal-v0", "env_kwargs": {"observation": "text"}},
            ValueError,
            r"draws its task kind when it is made.*--env-kwarg kind=",
        ),
    ],
)
def test_bad_input_is_refused_clearly(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    arguments = {"env_id": "BabyAI-Text-PickUpS5N2-v0", "episodes": 1, **kwargs}
    with pytest.raises(error, match=message):
        record_demonstrations(**arguments)


def test_loading_an_unknown_id_names_the_local_ones() -> None:
    record_demonstrations("BabyAI-Text-PickUpS5N2-v0", 1)
    with pytest.raises(FileNotFoundError, match=r"no local Minari dataset .*did you mean .*PickUpS5N2/bot-v0"):
        load_demonstrations("babyai-text/PickUpS5N2/bot-v1")
    with pytest.raises(FileNotFoundError, match=r"python -m glam_experiments.demonstrations"):
        load_demonstrations("other/thing-v0")


def test_without_minari_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minari", None)  # import minari raises ImportError
    with pytest.raises(ImportError, match=r'pip install "glam-rl\[data\]"'):
        require_minari()
    with pytest.raises(ImportError, match=r'pip install "glam-rl\[data\]"'):
        load_demonstrations("babyai-text/PickUpS5N2/bot-v0")
    with pytest.raises(SystemExit) as exit_info:
        main(["--env-id", "BabyAI-Text-PickUpS5N2-v0", "--episodes", "1"])
    assert exit_info.value.code == 2


def test_the_command_writes_and_refuses(capsys: pytest.CaptureFixture[str], minari_root: Path) -> None:
    argv = ["--env-id", "BabyAI-Text-PickUpS5N2-v0", "--episodes", "2", "--seed", "0"]
    main(argv)
    out = capsys.readouterr().out
    assert "wrote Minari dataset babyai-text/PickUpS5N2/bot-v0" in out and "success rate 1.000" in out
    assert (minari_root / "babyai-text" / "PickUpS5N2" / "bot-v0" / "data").is_dir()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "already exists" in capsys.readouterr().err
    main([*argv, "--overwrite", "--env-kwarg", "max_steps=5", "--dataset-id", "tests/short-v0"])
    env = load_demonstrations("tests/short-v0").recover_environment()
    assert env.spec.kwargs["max_steps"] == 5 and env.unwrapped.max_steps == 5
    env.close()
    for bad in (["--episodes", "0"], ["--env-kwarg", "novalue"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, *bad])
        assert exit_info.value.code == 2


def test_without_the_agents_dependencies_the_error_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "stable_baselines3.common.utils", None)  # as if SB3 were missing
    with pytest.raises(ImportError, match=r'pip install "glam-rl\[data,policy,train\]"'):
        record_demonstrations("BabyAI-Text-PickUpS5N2-v0", 1)
    assert not minari.list_local_datasets()  # nothing written
