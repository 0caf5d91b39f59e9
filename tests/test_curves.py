"""Learning curves from runs' TensorBoard logs (or episodes.csv), grouped over seeds."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from glam_experiments.curves import (
    SUCCESS_TAG,
    binned_success,
    group_bins,
    group_runs,
    main,
    markdown_table,
    plot,
    read_episodes,
)


def write_csv_run(directory, rows) -> None:
    directory.mkdir(parents=True)
    with open(directory / "episodes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frames", "return", "length", "success"])
        writer.writerows(rows)


def write_tb_run(directory, episodes) -> None:
    writer = SummaryWriter(str(directory))
    for frames, success in episodes:
        writer.add_scalar(SUCCESS_TAG, success, frames)
        writer.add_scalar("charts/episodic_return", 0.5 * success, frames)
    writer.close()


def test_csv_run_binned_table_and_plot(tmp_path) -> None:
    run = tmp_path / "BabyAI-Text-GoToS5N2-v0__drrn__3__123"
    write_csv_run(run, [(10, 0.5, 10, 1), (20, 0.0, 25, 0), (120, 0.9, 3, 1), (130, 0.9, 3, 1)])
    frames, success = read_episodes(run)
    assert binned_success(frames, success, 100) == [(0, 100, 0.5, 2), (100, 200, 1.0, 2)]
    table = markdown_table([run], 100)
    assert "**drrn on BabyAI-Text-GoToS5N2-v0** — 1 seed(s), up to 130 frames" in table
    assert "| 0–100 | 0.50 | 0.50–0.50 | 1 | 2 |" in table and "| 100–200 | 1.00 | 1.00–1.00 | 1 | 2 |" in table
    png = tmp_path / "out" / "curves.png"
    plot([run], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_runs_give_mean_and_spread_over_seeds(tmp_path) -> None:
    # three seeds of one algorithm: per 100-frame bin success 0/0.5/1 in the first bin, all 1 in the second
    seeds = {1: [(50, 0), (90, 0), (150, 1)], 2: [(40, 1), (80, 0), (160, 1)], 3: [(60, 1), (70, 1), (190, 1)]}
    runs = []
    for seed, episodes in seeds.items():
        run = tmp_path / f"BabyAI-Text-GoToS5N2-v0__llm_ppo__{seed}__100{seed}"
        write_tb_run(run, episodes)
        runs.append(run)
    other = tmp_path / "BabyAI-Text-GoToS5N2-v0__drrn__1__1000"
    write_tb_run(other, [(30, 0), (130, 0)])
    frames, success = read_episodes(runs[1])
    np.testing.assert_array_equal(frames, [40, 80, 160])
    np.testing.assert_array_equal(success, [1, 0, 1])
    groups = group_runs([*runs, other])
    assert list(groups) == ["llm_ppo on BabyAI-Text-GoToS5N2-v0", "drrn on BabyAI-Text-GoToS5N2-v0"]
    assert groups["llm_ppo on BabyAI-Text-GoToS5N2-v0"] == runs
    first, second = group_bins(runs, 100)
    assert (first.start, first.end, first.seeds, first.episodes) == (0, 100, 3, 6)
    assert first.mean == pytest.approx(0.5) and first.std == pytest.approx(0.5)  # rates 0, 0.5, 1
    assert (first.low, first.high) == (0.0, 1.0)
    assert second.mean == 1.0 and second.std == 0.0
    table = markdown_table([*runs, other], 100)
    assert "**llm_ppo on BabyAI-Text-GoToS5N2-v0** — 3 seed(s), up to 190 frames" in table
    assert "| 0–100 | 0.50 ± 0.50 | 0.00–1.00 | 3 | 6 |" in table
    assert "| 100–200 | 0.00 | 0.00–0.00 | 1 | 1 |" in table  # drrn, one seed: no spread
    png = tmp_path / "curves.png"
    plot([*runs, other], png, window=2, title="GoToS5N2")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_table_and_writes_png(tmp_path, capsys) -> None:
    run = tmp_path / "BabyAI-Text-GoToS5N2-v0__llm_ppo__1__1"
    write_tb_run(run, [(10, 1), (20, 0), (30, 1)])
    main([str(run), "--bin", "50", "--window", "2", "--png", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert "| 0–50 | 0.67 | 0.67–0.67 | 1 | 3 |" in out and "wrote" in out
    assert (tmp_path / "c.png").exists()


def test_missing_or_empty_runs_are_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a TensorBoard log"):
        read_episodes(tmp_path)
    write_csv_run(tmp_path / "empty", [])
    with pytest.raises(ValueError, match="no finished episode"):
        read_episodes(tmp_path / "empty")


def test_runs_without_a_finished_episode_are_reported_as_such(tmp_path, capsys) -> None:
    write_csv_run(tmp_path / "short", [])
    main([str(tmp_path / "short"), "--png", str(tmp_path / "c.png")])
    assert "no finished episode yet" in capsys.readouterr().out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def write_evaluation(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["agent", "label", "env_id", "episodes", "success_rate", "bot_agreement", "constant_agreement",
              "state_dependence"]  # fmt: skip
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(dict(zip(fields, row, strict=True)) for row in rows)


def test_evaluation_table_groups_final_agents_over_seeds(tmp_path) -> None:
    env = "BabyAI-Text-PickUpS5N2-v0"
    for seed, (llm, drrn) in {1: (0.6, 0.1), 2: (0.8, 0.2)}.items():
        write_evaluation(
            tmp_path / f"seed{seed}" / "evaluation.csv",
            [
                (f"out/{env}__llm_ppo__{seed}__17/model.zip", "(a) no change", env, 100, llm, 0.7, 0.4, 0.3),
                (f"out/{env}__drrn__{seed}__17/model.zip", "(a) no change", env, 100, drrn, "", "", ""),
            ],
        )
    write_evaluation(tmp_path / "ref" / "evaluation.csv", [("random", "(a) no change", env, 100, 0.15, "", "", "")])
    csvs = sorted(tmp_path.glob("*/evaluation.csv"))
    table = main_output(["--evaluation", *map(str, csvs), "--bin", "10"], tmp_path, env)
    # two seeds of 100 episodes each: mean ± sd of the rates, and the 200 episodes pooled
    llm = f"| llm_ppo on {env} | 2 | 200 | 0.70 ± 0.14 | 0.70 [0.61, 0.78] | 0.70 ± 0.00 (0.40) | 0.30 ± 0.00 |"
    assert llm in table
    assert f"| drrn on {env} | 2 | 200 | 0.15 ± 0.07 | 0.15 [0.10, 0.23] | — | — |" in table
    assert "| random | 1 | 100 | 0.15 | 0.15 [0.08, 0.26] | — | — |" in table


def main_output(extra: list[str], tmp_path, env: str) -> str:
    import contextlib
    import io

    run = tmp_path / "runs" / f"{env}__llm_ppo__1__17"
    write_csv_run(run, [(10, 0.5, 10, 1)])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([str(run), *extra])
    return out.getvalue()


def test_resumed_run_reads_as_tensorboard_shows_it_without_a_restart_warning(tmp_path, caplog) -> None:
    run = tmp_path / "BabyAI-Text-GoToS5N2-v0__llm_ppo__1__1"
    write_tb_run(run, [(10, 0), (20, 0), (30, 1)])  # killed after 30 frames, its checkpoint at 15
    writer = SummaryWriter(str(run), purge_step=16)
    writer.add_scalar(SUCCESS_TAG, 1, 20)
    writer.close()
    with caplog.at_level("WARNING"):
        frames, success = read_episodes(run)
    assert frames.tolist() == [10, 20] and success.tolist() == [0.0, 1.0]
    assert "out of order" not in caplog.text
