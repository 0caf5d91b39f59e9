"""What runs make on disk while others run: run folders, the main job's results, SB3's log folder."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
from stable_baselines3 import PPO

from glam_experiments import training
from glam_experiments.cli import run_command
from glam_experiments.distributed import Ranks
from llm_policy.file_lock import LockHeldError, exclusive


def test_runs_started_in_the_same_second_get_folders_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training.time, "time", lambda: 1_700_000_000.0)
    made = [training.new_run_dir(tmp_path / "runs", "BabyAI-Text-GoTo-v0", "llm_ppo", 1) for _ in range(3)]
    names = [path.name for path in made]
    base = "BabyAI-Text-GoTo-v0__llm_ppo__1__1700000000"
    assert names == [base, f"{base}-2", f"{base}-3"] and all(path.is_dir() for path in made)


def test_a_second_main_job_into_the_same_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tyro
    from filelock import FileLock

    from studies.main_job import Args, main

    out = tmp_path / "results"
    # a lock object of its own, as another process's would be (a nested exclusive() would re-enter it)
    with FileLock(tmp_path / ".results.lock"), pytest.raises(SystemExit) as ended:
        run_command(lambda argv: main(tyro.cli(Args, args=argv)), ["--out", str(out)])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert f"another process holds {tmp_path / '.results.lock'} (running the main job into {out})" in err
    assert "give this job another folder with --out" in err
    assert not out.exists()


def test_a_held_lock_waits_then_names_the_lock_and_the_fix(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with exclusive(lock, "holding", 0, "fix"):
        with exclusive(lock, "holding", 0, "fix"):  # re-entered in the same process
            pass
        import threading  # another thread takes the lock as another process would

        errors: list[BaseException] = []

        def other() -> None:
            try:
                with exclusive(lock, "converting X", 0.2, "stop it"):
                    pass
            except LockHeldError as err:
                errors.append(err)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(errors) == 1 and f"waited 0 s for the process holding {lock} (converting X); stop it" in str(errors[0])


def test_only_rank_0_writes_sb3s_tensorboard_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = PPO(
        "MlpPolicy", gym.make("CartPole-v1"), n_steps=16, batch_size=16, n_epochs=1, tensorboard_log=str(tmp_path)
    )
    monkeypatch.setattr(training, "current_ranks", lambda: Ranks(rank=1, world_size=2))
    monkeypatch.setattr(training, "check_same_updates", lambda model, ranks: None)
    training.train(model, 32, tmp_path / "run", save_model=False)
    assert not list(tmp_path.glob("PPO_*"))  # rank 0 alone makes PPO_1
