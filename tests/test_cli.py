"""Command-line behaviour shared by every tool: one-line refusals, --debug, Ctrl-C, --resume checks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from stable_baselines3.common.callbacks import BaseCallback

from glam_experiments.checkpoints import TrainingState, checkpoint_root
from glam_experiments.cli import ArgumentParser, UsageError, require_at_least, run_command, summary
from glam_experiments.configs import LLMPPOConfig, SymbolicPPOConfig
from glam_experiments.envs import make_text_vec_env
from glam_experiments.training import check_resume, record_flags, train


def test_require_at_least_names_the_flag() -> None:
    require_at_least({"n_envs": 1, "micro_batch_size": None})
    with pytest.raises(UsageError, match=r"^--n-envs must be at least 1, got 0 \(n_envs\)$"):
        require_at_least({"n_envs": 0})
    with pytest.raises(UsageError, match="--variant-episodes must be at least 0, got -1"):
        require_at_least({"variant_episodes": -1}, minimum=0)


@pytest.mark.parametrize(
    ("field", "flag"),
    [("n_envs", "--n-envs"), ("n_steps", "--n-steps"), ("prompt_history", "--prompt-history"), ("top_k", "--top-k")],
)
def test_configs_refuse_settings_that_cannot_run(field: str, flag: str) -> None:
    with pytest.raises(UsageError, match=f"{flag} must be at least 1, got 0"):
        LLMPPOConfig(**{field: 0}).check()


def test_make_checks_before_building() -> None:
    with pytest.raises(UsageError, match="--batch-size"):
        SymbolicPPOConfig(batch_size=0).make(make_text_vec_env("BabyAI-Text-GoToS5N2-v0"))


def test_a_user_error_is_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    def command(argv: list[str]) -> None:
        raise ValueError("unknown model 'x':\n  pass a directory")

    with pytest.raises(SystemExit) as exit_info:
        run_command(command, [])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: unknown model 'x': pass a directory  (--debug shows the traceback)\n"


def test_debug_shows_the_exception_and_is_not_passed_on() -> None:
    seen: list[list[str]] = []

    def command(argv: list[str]) -> None:
        seen.append(argv)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run_command(command, ["--x", "--debug"])
    assert seen == [["--x"]]


def test_a_bug_keeps_its_traceback() -> None:
    def command(argv: list[str]) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        run_command(command, [])


def test_ctrl_c_is_one_line_with_status_130(capsys: pytest.CaptureFixture[str]) -> None:
    def command(argv: list[str]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        run_command(command, [])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_argparse_errors_are_one_line_and_help_lists_debug(capsys: pytest.CaptureFixture[str]) -> None:
    parser = ArgumentParser(prog="tool", description=summary("Does a thing\nover two lines.\n\nMore."))
    parser.add_argument("--episodes", type=int, required=True)
    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda argv: parser.parse_args(argv), ["--episodes", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --episodes: invalid int value: 'x'" in err
    assert parser.description == "Does a thing over two lines."
    assert "--debug" in parser.format_help()


class _Interrupt(BaseCallback):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.at:
            raise KeyboardInterrupt
        return True


def _symbolic(n_steps: int = 8):
    config = SymbolicPPOConfig(recurrent=False, n_envs=1, n_steps=n_steps, batch_size=n_steps, n_epochs=1)
    return config.make(make_text_vec_env("BabyAI-Text-GoToS5N2-v0"), seed=0)


@pytest.mark.parametrize("checkpoint_every", [1, None])
def test_ctrl_c_in_training_says_where_the_last_checkpoint_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint_every: int | None
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train(_symbolic(), 64, tmp_path, False, checkpoint_every=checkpoint_every, callbacks=[_Interrupt(20)])
    assert exit_info.value.code == 130
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1
    if checkpoint_every:
        assert f"last checkpoint: {checkpoint_root(tmp_path) / 'frames-16'}" in lines[0]
        assert f"--resume {tmp_path}" in lines[0]
    else:
        assert "pass --checkpoint-every N to be able to resume" in lines[0]


@dataclass
class _Flags:
    n_envs: int = 2
    total_timesteps: int = 32
    torch_threads: int | None = None


def _run_with_checkpoint(run_dir: Path, frames: int) -> None:
    folder = checkpoint_root(run_dir) / f"frames-{frames}"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"frames": frames, "algo": "x:y", "successes": []}))
    (checkpoint_root(run_dir) / "latest").write_text(folder.name)
    assert TrainingState(**json.loads((folder / "state.json").read_text())).frames == frames


def test_resume_refuses_changed_flags_by_name(tmp_path: Path) -> None:
    record_flags(tmp_path, _Flags())
    _run_with_checkpoint(tmp_path, 16)
    with pytest.raises(UsageError, match=r"--n-envs 2 -> 4") as info:
        check_resume(tmp_path, _Flags(n_envs=4, torch_threads=1), free={"torch_threads"})
    assert "torch-threads" not in str(info.value)
    assert check_resume(tmp_path, _Flags(torch_threads=1), free={"torch_threads"})


def test_resume_of_a_complete_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record_flags(tmp_path, _Flags())
    _run_with_checkpoint(tmp_path, 32)
    assert not check_resume(tmp_path, _Flags(), free=())
    assert "already complete (32 frames" in capsys.readouterr().out
    assert check_resume(tmp_path, _Flags(total_timesteps=64), free=())  # a larger total extends it
    with pytest.raises(UsageError, match="--total-timesteps 16 is below the 32 frames"):
        check_resume(tmp_path, _Flags(total_timesteps=16), free=())


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        check_resume(tmp_path, _Flags(), free=())
