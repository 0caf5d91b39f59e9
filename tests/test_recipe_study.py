"""The recipe study's runs and report (studies.recipe_study), on a tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from glam_experiments.configs import LLMPPOConfig
from studies.recipe_study import ARMS, Cloning, arm_config, main, report, run_arm

ENV_ID = "BabyAI-Text-GoToS5N2-v0"
TINY_RUN = {"episodes": 2, "grounding_states": 4, "grounding_every": 1, "eval_envs": 2, "curve_states": 3}


@pytest.fixture
def bc_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pytest.importorskip("minari")
    from glam_experiments.demonstrations import record_demonstrations

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    record_demonstrations(ENV_ID, episodes=8, seed=0, dataset_id="babyai-text/study-bot-v0")
    return "babyai-text/study-bot-v0"


def _base(model: str) -> LLMPPOConfig:
    return LLMPPOConfig(model=model, n_envs=2, n_steps=8, batch_size=8, n_epochs=1)


def test_arm_config_changes_the_defaults_only_where_the_arm_says() -> None:
    config = arm_config("token")
    assert config.normalization == "token"
    assert config.top_k == LLMPPOConfig().top_k
    with pytest.raises(ValueError, match="unknown arm 'nope'"):
        arm_config("nope")


def test_ppo_arm_writes_its_result_and_report_row(tiny_llama: str, tmp_path: Path) -> None:
    result = run_arm("advnorm", 1, ENV_ID, 16, tmp_path, base=_base(tiny_llama), **TINY_RUN)
    saved = json.loads((tmp_path / "advnorm" / "seed1" / "result.json").read_text())
    assert saved["arm"] == "advnorm" and saved["changes"] == ARMS["advnorm"]
    assert saved["cloning"] is None and result["success"]["episodes"] == 2
    assert 0 <= saved["grounding"]["bot_agreement"] <= 1
    assert saved["grounding_curve"], "the diagnostics were logged during training"
    row = next(line for line in report(tmp_path).splitlines() if line.startswith("| advnorm "))
    # changes against today's defaults, read from the recorded config (the tiny base's changes too)
    assert "normalize_advantage=True" in row and "n_envs=2" in row and "| — | 1 | 16 |" in row
    with (tmp_path / "advnorm" / "seed1" / "episodes.csv").open() as f:
        successes = sum(int(episode["success"]) for episode in csv.DictReader(f))
    assert row.split(" | ")[5] == f"{successes} ± 0"  # the training successes, PPO's only reward here
    with pytest.raises(FileExistsError, match="remove the folder"):
        run_arm("advnorm", 1, ENV_ID, 16, tmp_path, base=_base(tiny_llama), **TINY_RUN)


@pytest.mark.parametrize("frames", [0, 16])
def test_cloning_arm_clones_then_trains(tiny_llama: str, tmp_path: Path, frames: int, bc_dataset: str) -> None:
    cloning = Cloning(bc_dataset, episodes=5, epochs=2, learning_rate=1e-3, value_coef=0.0)
    run_arm("default", 2, ENV_ID, frames, tmp_path, cloning=cloning, name="bc", base=_base(tiny_llama), **TINY_RUN)
    result = json.loads((tmp_path / "bc" / "seed2" / "result.json").read_text())
    assert result["arm"] == "bc" and result["changes"] == {"arm": "default"}
    done = result["cloning"]
    assert done["episodes"] == 5 and done["epochs"] == 2 and done["learning_rate"] == 1e-3
    assert done["value_coef"] == 0.0 and (tmp_path / "bc" / "seed2" / "cloned.zip").exists() == (frames > 0)
    assert done["steps_trained"] > 0 and done["cpu_min"] > 0
    assert done["val_accuracy_before"] is not None and done["val_accuracy_after"] is not None
    assert bool(result["grounding_curve"]) == (frames > 0)
    assert ("success" in done) == (frames > 0)  # the cloned policy is measured before PPO too
    rows = {line.split(" | ")[0]: line for line in report(tmp_path).splitlines() if line.startswith("| bc")}
    assert "| 5 ep x 2, lr 0.001, value coef 0 (" in rows["| bc"] and f"| 2 | {frames} |" in rows["| bc"]
    if frames:
        before = rows["| bc (cloned, before PPO)"]
        assert "| 2 | 0 |" in before and "| – | – | – | – |" in before  # no PPO update: no PPO statistics


def test_arm_from_a_cloned_policy(tiny_llama: str, tmp_path: Path, bc_dataset: str) -> None:
    cloning = Cloning(bc_dataset, episodes=3, epochs=1, learning_rate=1e-3, value_coef=0.0)
    run_arm("default", 1, ENV_ID, 16, tmp_path, cloning=cloning, name="bc", base=_base(tiny_llama), **TINY_RUN)
    cloned = tmp_path / "bc" / "seed1" / "cloned.zip"
    before = json.loads((tmp_path / "bc" / "seed1" / "result.json").read_text())["cloning"]
    result = run_arm(
        "advnorm", 1, ENV_ID, 16, tmp_path, name="bc_advnorm", init_from=cloned, base=_base(tiny_llama), **TINY_RUN
    )
    assert result["init_from"] == str(cloned) and result["cloning"] is None
    assert before["steps_trained"] > 0
    # the first training-time measurement (before PPO's first update) is the cloned policy's
    from stable_baselines3 import PPO

    from glam_experiments.diagnostics import BotStates, measure

    states = BotStates.collect(ENV_ID, TINY_RUN["curve_states"], seed=5000 + 10_000)
    expected = measure(PPO.load(cloned).policy, states).as_dict()
    first = result["grounding_curve"][0]
    assert first["updates"] == 0
    for key in ("bot_agreement", "state_dependence", "value_mean"):
        assert first[key] == pytest.approx(expected[key], abs=1e-5), key
    row = next(line for line in report(tmp_path).splitlines() if line.startswith("| bc_advnorm "))
    assert "| from bc/seed1/cloned.zip |" in row


def test_no_frames_without_cloning_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="frames must be at least 1"):
        run_arm("default", 1, ENV_ID, 0, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--arm", "shipped", "--seed", "1", "--frames", "0", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--frames must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--arm", "shipped", "--seed", "1", "--bc-dataset", "x", "--bc-epochs", "0"])
    assert "--bc-epochs must be at least 1, got 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_report_without_results_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run some arms first"):
        report(tmp_path)
