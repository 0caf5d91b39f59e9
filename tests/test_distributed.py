"""One policy trained over several processes with ``torchrun`` (gloo on this CPU, 2 ranks, tiny model)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from stable_baselines3.common.logger import configure

from glam_experiments.distributed import Ranks, check_same_updates, rank_seed
from glam_experiments.envs import make_text_vec_env
from llm_policy.distributed import RanksOutOfStepError, RankSync
from tests.helpers.distributed_worker import CLONE_ARGS, CLONE_DATASET, CONFIG, ENV_ID, N_ENVS, N_STEPS, SEED

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(ROOT / "tests" / "helpers" / "distributed_worker.py")  # what each torchrun rank runs
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # a session of its own, so that a timeout kills the ranks with the launcher
    with subprocess.Popen(
        [*TORCHRUN, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"torchrun {args} did not end within {timeout} s:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def two_rank_run(tiny_llama: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("two_ranks")
    done = torchrun([WORKER, tiny_llama, str(out), "train"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return out


def load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def test_ranks_start_from_rank_0_and_stay_bit_identical(two_rank_run: Path) -> None:
    built = [load(two_rank_run / f"constructed{r}.pt") for r in (0, 1)]
    # the value head (and here the random LM) differ per rank until the broadcast
    assert any(not torch.equal(built[0][k], built[1][k]) for k in built[0])
    first = [load(two_rank_run / f"rollout{r}.pt")["weights"] for r in (0, 1)]
    assert all(torch.equal(first[0][k], built[0][k]) for k in built[0]), "rank 0's weights are the job's"
    for name in ("update1_", "update3_"):
        a, b = (load(two_rank_run / f"{name}{r}.pt") for r in (0, 1))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"ranks differ after {name}"
        assert any(not torch.equal(a[k], first[0][k]) for k in a), "training changed the weights"


def test_ranks_collected_different_episodes(two_rank_run: Path) -> None:
    rollouts = [load(two_rank_run / f"rollout{r}.pt") for r in (0, 1)]
    assert not np.array_equal(rollouts[0]["observations"]["mission"], rollouts[1]["observations"]["mission"])


def test_two_ranks_update_like_one_process_with_all_envs(two_rank_run: Path, tiny_llama: str) -> None:
    """2 ranks × k envs give the update of 1 process × 2k envs on the same rollout
    (no advantage normalisation, one epoch, one minibatch of the whole rollout)."""
    rollouts = [load(two_rank_run / f"rollout{r}.pt") for r in (0, 1)]
    single = replace(CONFIG, model=tiny_llama, n_envs=2 * N_ENVS, batch_size=2 * N_ENVS * N_STEPS)
    model = single.make(make_text_vec_env(ENV_ID, 2 * N_ENVS, SEED), seed=SEED)
    model.policy.load_state_dict(rollouts[0]["weights"])
    buf = model.rollout_buffer
    for key in buf.observations:
        buf.observations[key][:] = np.concatenate([r["observations"][key] for r in rollouts], axis=1)
    for key in ("actions", "rewards", "returns", "advantages", "values", "log_probs", "episode_starts"):
        getattr(buf, key)[:] = np.concatenate([r[key] for r in rollouts], axis=1)
    buf.full, buf.pos = True, buf.buffer_size
    model.set_logger(configure(None, []))
    model.train()
    expected = model.policy.state_dict()
    got = load(two_rank_run / "update1_0.pt")
    start = rollouts[0]["weights"]
    moved = max((expected[k] - start[k]).abs().max().item() for k in expected)
    assert moved > 1e-4
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_gigpo_ranks_with_rollouts_of_different_sizes_end_identical(tiny_llama: str, tmp_path: Path) -> None:
    done = torchrun([WORKER, tiny_llama, str(tmp_path), "gigpo"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    rank0, rank1 = load(tmp_path / "gigpo0.pt"), load(tmp_path / "gigpo1.pt")
    assert rank0["steps"] != rank1["steps"]  # 4-step and 7-step episodes (the model rarely ends one early)
    assert rank0["frames"] == rank1["frames"] and rank0["rollouts"] == rank1["rollouts"] >= 2
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key]), key


def test_failing_rank_ends_the_job_with_its_error(tiny_llama: str, tmp_path: Path) -> None:
    done = torchrun([WORKER, tiny_llama, str(tmp_path), "fail"], timeout=180)
    assert done.returncode != 0
    assert "rank 1 failed on purpose" in done.stderr
    assert "ChildFailedError" in done.stderr  # torchrun's report names the failed rank


def test_target_kl_is_refused_over_ranks(tiny_llama: str, tmp_path: Path) -> None:
    done = torchrun([WORKER, tiny_llama, str(tmp_path), "target_kl"])
    assert done.returncode != 0
    assert "target_kl=0.01 cannot be used over several processes" in done.stderr


def test_script_that_does_not_join_the_ranks_is_refused() -> None:
    script = str(ROOT / "examples" / "train_symbolic_ppo.py")
    done = torchrun([script, "--total-timesteps", "16", "--n-envs", "1", "--n-steps", "16", "--run-dir", "/tmp/unused"])
    assert done.returncode != 0
    assert "started by torchrun but has not joined the others" in done.stderr


def test_single_process_is_unchanged(tiny_llama: str) -> None:
    assert not dist.is_initialized()
    model = CONFIG.make(make_text_vec_env(ENV_ID, N_ENVS, SEED), seed=SEED, target_kl=0.01)
    assert model.policy.rank_sync is None
    check_same_updates(model, Ranks())  # target_kl is fine in one process
    assert rank_seed(SEED, N_ENVS, Ranks()) == SEED
    assert rank_seed(SEED, N_ENVS, Ranks(rank=1, world_size=2)) == SEED + N_ENVS


def _out_of_step(rank: int, port: int, queue: object) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    layer = torch.nn.Linear(2, 1)
    sync = RankSync(layer)
    try:
        # rank 1 stops its first update after one pass (as target_kl would), rank 0 runs two
        for passes in ((2, 1), (1, 1))[rank]:
            sync.next_update()
            for _ in range(passes):
                layer(torch.ones(1, 2)).sum().backward()
        queue.put((rank, "no error"))  # type: ignore[attr-defined]
    except RanksOutOfStepError as err:
        queue.put((rank, str(err)))  # type: ignore[attr-defined]
    finally:
        sync.remove()
        dist.destroy_process_group()


def test_ranks_out_of_step_raise() -> None:
    """A rank whose backward pass meets another update's pass on another rank raises on every rank."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_out_of_step, args=(r, port, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert "ranks out of step: rank 0 is at update 1, backward pass 2" in results[0]
    assert "ranks out of step: rank 1 is at update 2, backward pass 1" in results[1]


def test_cloning_over_two_ranks_is_cloning_all_the_steps_in_one_process(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data-parallel behaviour cloning: each rank clones half of each minibatch, the ranks end bit-identical,
    and (one minibatch of every step, an even number of them) the update is one process's on all the steps."""
    pytest.importorskip("minari")
    from glam_algorithms.bc import behaviour_clone, demonstration_steps
    from glam_experiments.demonstrations import load_demonstrations, record_demonstrations

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    dataset = record_demonstrations(ENV_ID, episodes=6, seed=0, dataset_id=CLONE_DATASET)
    # the first k episodes with an even number of steps: the two ranks share them all
    episodes = next(k for k in range(6, 0, -1) if len(demonstration_steps(dataset.iterate_episodes(range(k)))) % 2 == 0)
    done = torchrun([WORKER, tiny_llama, str(tmp_path), f"clone:{episodes}"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    cloned = [load(tmp_path / f"cloned{r}.pt") for r in (0, 1)]
    a, b = (c["weights"] for c in cloned)
    assert all(torch.equal(a[k], b[k]) for k in a), "the ranks differ after cloning"
    assert [h.accuracy for h in cloned[0]["history"]] == [h.accuracy for h in cloned[1]["history"]]

    single = replace(CONFIG, model=tiny_llama).make(make_text_vec_env(ENV_ID, N_ENVS, SEED), seed=SEED)
    start = load(tmp_path / "constructed0.pt")
    single.policy.load_state_dict(start)
    demonstrations = load_demonstrations(CLONE_DATASET)
    history = behaviour_clone(single, demonstrations, episodes=episodes, progress=False, **CLONE_ARGS)
    assert (
        history[-1].steps
        == cloned[0]["history"][-1].steps
        == 2 * len(demonstration_steps(dataset.iterate_episodes(range(episodes))))
    )
    expected = single.policy.state_dict()
    assert max((expected[k] - start[k]).abs().max().item() for k in expected) > 1e-4
    for key in expected:
        torch.testing.assert_close(a[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
    assert history[-1].loss == pytest.approx(cloned[0]["history"][-1].loss, rel=1e-5)
