"""Each training script runs end to end for a tiny budget, as a user would run it."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import tyro

from tests.helpers import REPO, load_example


def run_script(script: str, *args: str) -> str:
    """Run a script (``examples/<script>``, or a path from the repository's root such as
    ``studies/<script>``) or a module (``-m name``) as a user would: a fresh interpreter; fail
    with its stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if script.startswith("-m "):
        target = ["-m", script[3:]]
    else:
        target = [str(REPO / script if "/" in script else REPO / "examples" / script)]
    out = subprocess.run(
        [sys.executable, *target, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def run(script: str, *args: str, tmp_path) -> str:
    return run_script(script, "--run-dir", str(tmp_path), "--save-model", *args)


def check_run(tmp_path) -> None:
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (run_dir / "model.zip").exists()
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())
    with open(run_dir / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"frames", "return", "length", "success"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run_dir)).Reload().Tags()["scalars"]
    assert {"charts/episodic_return", "charts/success_rate", "charts/SPS"} <= set(tags)
    assert any(t.startswith("losses/") for t in tags)


@pytest.mark.slow
def test_train_symbolic_ppo(tmp_path) -> None:
    run(
        "train_symbolic_ppo.py",
        "--total-timesteps",
        "512",
        "--n-envs",
        "2",
        "--n-steps",
        "128",
        "--batch-size",
        "64",
        tmp_path=tmp_path,
    )
    check_run(tmp_path)


@pytest.mark.slow
def test_train_drrn(tmp_path) -> None:
    run(
        "train_drrn.py",
        "--total-timesteps",
        "400",
        "--learning-starts",
        "64",
        "--batch-size",
        "16",
        "--n-envs",
        "2",
        tmp_path=tmp_path,
    )
    check_run(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("npae", [False, True])
def test_train_llm_ppo(tmp_path, tiny_llama: str, npae: bool) -> None:
    args = ["--model", tiny_llama, "--total-timesteps", "64", "--n-envs", "2", "--n-steps", "16", "--batch-size", "16"]
    run("train_llm_ppo.py", *args, *(["--npae"] if npae else ["--record-every", "1"]), tmp_path=tmp_path)
    check_run(tmp_path)
    if not npae:  # 2 rollouts: the policy after 0 and 1 updates, and after the last (2)
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
        events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
        events.Reload()
        assert [image.step for image in events.Images("episode/frames")] == [32, 64, 64]


@pytest.mark.slow
def test_rl_zoo3_trains_symbolic_ppo(tmp_path) -> None:
    # the "zoo" extra; `make test-lowest` leaves it out (rl-zoo3's floor needs the newest SB3)
    pytest.importorskip("rl_zoo3")
    cmd = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "BabyAI-Text-GoToS5N2-v0"]
    cmd += ["--gym-packages", "babyai_text", "--conf-file", str(REPO / "hyperparams" / "ppo.yml")]
    cmd += ["-n", "2048", "--log-folder", str(tmp_path), "--eval-freq", "-1", "--seed", "0"]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert list(tmp_path.rglob("BabyAI-Text-GoToS5N2-v0.zip"))


@pytest.mark.slow
def test_main_job_end_to_end(tmp_path, tiny_llama: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))  # the bot's episodes, recorded by the job
    args = ["--model", tiny_llama, "--total-timesteps", "64", "--episodes", "2", "--n-envs", "2", "--eval-envs", "2"]
    args += ["--bc-episodes", "6", "--algo", "gigpo", "--group-size", "2"]  # cloned over the two ranks, then GiGPO
    args += [
        "--n-steps",
        "16",
        "--batch-size",
        "32",
        "--n-epochs",
        "1",
        "--out",
        str(tmp_path),
        "--viewer-episodes",
        "1",
        *("--variant-episodes", "1", "--grounding-states", "8", "--nproc", "2"),
    ]
    printed = run_script("-m studies.main_job", *args)
    viewers = ("viewer_trained.html", "viewer_trained.gif", "viewer_zero_shot.html")
    for name in (
        "evaluation.md",
        "evaluation.csv",
        "evaluation.json",
        "evaluation.png",
        "learning_curve.png",
        "diagnostics.png",
        *viewers,
    ):
        assert (tmp_path / name).exists(), name
    (run_dir,) = (tmp_path / "training").iterdir()
    assert (run_dir / "model.zip").exists() and (run_dir / "episodes.csv").exists()
    assert (run_dir / "cloned.zip").exists()  # the agent before its RL stage
    assert (run_dir / "grounding.csv").exists()  # measured by rank 0 of the two training processes
    assert (tmp_path / "minari" / "babyai-text" / "PickUpS5N2" / "bot-v0").is_dir()
    table = (tmp_path / "evaluation.md").read_text()
    assert "zero-shot" in table and "after cloning 6 bot episodes + 64 GiGPO steps" in table and "random" in table
    assert "after cloning 6 bot episodes: success" in table  # the agent before RL, on the same episodes
    assert "behaviour cloning of 6 bot episodes, then GiGPO" in printed
    assert "GiGPO's part, on the training-time bot states: bot agreement" in printed and "after cloning ->" in printed
    assert "RL's own gain" in printed and "after-RL 99 % interval above before-RL's" in printed
    assert "| test (grounding) | best constant |" in table
    assert "zero-shot ->" in printed and "trained; random agent" in printed
    assert "learning NOT shown" in printed or "learning shown" in printed
    assert "trained 99 % interval above random's" in printed and "state dependence" in printed


def test_default_settings_run(tmp_path, tiny_llama: str) -> None:
    out = tmp_path / "defaults.md"
    args = ["--model", tiny_llama, "--n-envs", "2", "--n-steps", "8", "--batch-size", "16", "--updates", "1"]
    run_script("studies/default_settings_run.py", *args, "--out", str(out))
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 1e-6") or line.startswith("| 3e-4")]
    assert len(rows) == 2  # one update with each LM learning rate


def test_main_job_refuses_to_clone_evaluation_episodes(capsys: pytest.CaptureFixture[str]) -> None:
    from glam_experiments.cli import run_command
    from studies.main_job import Args, main

    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda argv: main(tyro.cli(Args, args=argv)), ["--bc-episodes", "1001", "--eval-seed", "1000"])
    assert exit_info.value.code == 2
    assert "raise --eval-seed above 1001" in capsys.readouterr().err


def test_learning_verdict_needs_every_criterion() -> None:
    from glam_experiments.evaluate import Result
    from studies.main_job import learning_verdict

    def result(agent: str, low: float, high: float, **grounding) -> Result:
        return Result(agent, "(a) no change", "env", 100, (low + high) / 2, 0.0, low, high, 0.0, 0.0, **grounding)

    grounded = {"bot_agreement": 0.7, "constant_agreement": 0.38, "state_dependence": 0.3, "value_std": 1.0}
    marginal = {**grounded, "bot_agreement": 0.4, "state_dependence": 0.05}
    for trained, expected in ((result("t", 0.6, 0.8, **grounded), True), (result("t", 0.6, 0.8, **marginal), False)):
        ok, lines = learning_verdict([result("z", 0.0, 0.05), trained, result("random", 0.1, 0.3)], "z", "t")
        assert ok is expected and len(lines) == 4
    ok, lines = learning_verdict(
        [result("z", 0.0, 0.05), result("t", 0.2, 0.5, **grounded), result("random", 0.1, 0.3)], "z", "t"
    )
    assert not ok and lines[0].startswith("NOT met: trained 99 % interval above random's")


def test_rl_gain_verdict_needs_the_intervals_apart() -> None:
    from glam_experiments.evaluate import Result
    from glam_experiments.statistics import wilson_bounds
    from studies.main_job import rl_gain_verdict, separating_rate

    def result(agent: str, low: float, high: float) -> Result:
        return Result(agent, "(a) no change", "env", 200, (low + high) / 2, 0.0, low, high, 0.0, 0.0)

    shown, line = rl_gain_verdict([result("before", 0.26, 0.43), result("after", 0.45, 0.62)], "before", "after")
    assert shown and line.startswith("met: after-RL 99 % interval above before-RL's") and "gain +0.19" in line
    shown, line = rl_gain_verdict([result("before", 0.26, 0.43), result("after", 0.39, 0.57)], "before", "after")
    assert not shown and line.startswith("NOT met")
    needed = separating_rate(0.43, 200)
    assert needed is not None and wilson_bounds(needed * 200, 200)[0] > 0.43 >= wilson_bounds(needed * 200 - 1, 200)[0]
    assert line.endswith(f"an after-RL success of {needed:.2f} or more would show it")
    assert separating_rate(0.99, 10) is None  # 10 successes of 10: a lower bound of 0.59


@pytest.mark.slow
def test_train_llm_ppo_starts_from_a_saved_agent(tmp_path, tiny_llama: str) -> None:
    import torch
    from stable_baselines3 import PPO

    from glam_experiments.configs import LLMPPOConfig
    from glam_experiments.envs import make_text_vec_env

    sizes = {"n_envs": 2, "n_steps": 8, "batch_size": 8, "n_epochs": 1}
    start = LLMPPOConfig(model=tiny_llama, **sizes).make(make_text_vec_env("BabyAI-Text-GoToS5N2-v0", 2), seed=3)
    with torch.no_grad():  # unlike any freshly built policy
        for parameter in start.policy.parameters():
            if parameter.requires_grad:
                parameter.add_(0.5)
    start.save(tmp_path / "start.zip")
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in sizes.items()]
    # at rate 0 the run ends with the weights it started from: the saved agent's
    run(
        "train_llm_ppo.py",
        *["--model", tiny_llama, "--total-timesteps", "16", *flags, "--learning-rate", "0", "--lm-learning-rate", "0"],
        *["--init-from", str(tmp_path / "start.zip")],
        tmp_path=tmp_path / "runs",
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    trained = PPO.load(run_dir / "model.zip").policy.state_dict()
    started = start.policy.state_dict()
    changed = [name for name, value in start.policy.named_parameters() if value.requires_grad]
    assert changed and all(torch.equal(trained[name], started[name]) for name in changed)


def test_train_llm_ppo_refuses_a_missing_init_from(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from glam_experiments.cli import run_command

    script = load_example("examples/train_llm_ppo.py")
    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda argv: script.main(tyro.cli(script.Args, args=argv)), ["--init-from", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "--init-from" in capsys.readouterr().err


@pytest.mark.slow
def test_reference_curves_script_clones_then_trains_each_agent_once(tmp_path, tiny_llama: str) -> None:
    pytest.importorskip("minari")
    out = tmp_path / "reference"
    tiny = "--n-envs 2 --n-steps 8 --batch-size 8 --n-epochs 1 --grounding-states 4"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MINARI_DATASETS_PATH": str(tmp_path / "minari"),
        "OUT": str(out),
        "FRAMES": "128",
        "SEEDS": "1",
        "NPROC": "1",
        "BC_EPISODES": "3",
        "PY": sys.executable,
        "LLM_FLAGS": tiny,
        "MODEL": tiny_llama,
        "EVAL_EPISODES": "2",
        "GROUNDING_STATES": "4",
        "LOGS": str(tmp_path / "logs"),
    }

    def script() -> set[str]:
        command = ["bash", str(REPO / "studies" / "reference_curves.sh")]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return {path.name.split("__")[1] for path in out.glob("*__*")}

    assert script() == {"llm_ppo", "symbolic_recurrent_ppo", "drrn"}
    (cloned,) = (out / "cloned" / "seed1").glob("*__bc_llm__1__*")
    (llm,) = out.glob("*__llm_ppo__*")
    assert json.loads((llm / "flags.json").read_text())["init_from"] == str(cloned / "model.zip")
    # the table comes from the logs kept apart: every run and evaluation, no weights
    logs = tmp_path / "logs"
    assert not (out / "curves.md").exists()
    kept = {path.relative_to(logs).parts[:2] for path in logs.rglob("*") if path.is_file()}
    assert {(llm.name, "flags.json"), (cloned.parent.parent.name, "seed1"), ("evaluation", "references")} <= kept
    assert {(f"{llm.name}", "grounding.csv"), ("evaluation", "seed1")} <= kept
    assert not [path for path in logs.rglob("*") if path.name in ("model.zip", "checkpoints")]
    assert any((logs / llm.name).glob("events.out.tfevents.*"))
    table = (logs / "curves.md").read_text()
    assert "llm_ppo" in table and "drrn" in table
    # the final agents of the seed (the cloned one too) and the references, on the same 2 episodes
    evaluated = {row.split(" | ")[0].lstrip("| ") for row in table.splitlines() if " | 2 | " in row}
    level = "on BabyAI-Text-PickUpS5N2-v0"
    assert evaluated >= {f"bc_llm {level}", f"llm_ppo {level}", f"drrn {level}", "random", tiny_llama}

    def models() -> list[tuple[str, int]]:  # the agents saved (not checkpoints), and when
        saved = [path for path in out.rglob("model.zip") if "checkpoints" not in path.parts]
        return sorted((str(path), path.stat().st_mtime_ns) for path in saved)

    def evaluations() -> list[int]:
        return sorted(path.stat().st_mtime_ns for path in out.glob("evaluation/*/evaluation.md"))

    before, evaluated_at = models(), evaluations()
    assert len(before) == 4 and len(evaluated_at) == 2
    replaced = logs / "BabyAI-Text-PickUpS5N2-v0__drrn__1__0"  # an older DRRN of seed 1 in the logs
    shutil.copytree(logs / next(out.glob("*__drrn__1__*")).name, replaced)
    assert script() and models() == before and evaluations() == evaluated_at  # a second call trains nothing
    assert not replaced.exists() and len(list(logs.glob("*__drrn__1__*"))) == 1
