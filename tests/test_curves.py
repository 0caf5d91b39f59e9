"""Success-rate-vs-frames tables and plots from runs' episodes.csv."""

from __future__ import annotations

import csv

import pytest

from glam_baselines.curves import binned_success, markdown_table, plot, read_episodes


def write_run(directory, rows) -> None:
    directory.mkdir(parents=True)
    with open(directory / "episodes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frames", "return", "length", "success"])
        writer.writerows(rows)


def test_binned_table_and_plot(tmp_path) -> None:
    run = tmp_path / "BabyAI-Text-GoToS5N2-v0__drrn__3__123"
    write_run(run, [(10, 0.5, 10, 1), (20, 0.0, 25, 0), (120, 0.9, 3, 1), (130, 0.9, 3, 1)])
    frames, success = read_episodes(run)
    assert binned_success(frames, success, 100) == [(0, 100, 0.5, 2), (100, 200, 1.0, 2)]
    table = markdown_table([run], 100)
    assert "**drrn (seed 3)** — 4 episodes, 130 frames" in table
    assert "| 0–100 | 0.50 | 2 |" in table and "| 100–200 | 1.00 | 2 |" in table
    png = tmp_path / "out" / "curves.png"
    plot([run], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_or_empty_runs_are_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"episodes\.csv not found"):
        read_episodes(tmp_path)
    write_run(tmp_path / "empty", [])
    with pytest.raises(ValueError, match="no finished episode"):
        read_episodes(tmp_path / "empty")
