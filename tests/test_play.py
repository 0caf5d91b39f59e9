"""``python -m babyai_text.play``: a person plays a level from the terminal."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import gymnasium as gym
import pytest
from minigrid.utils.baby_ai_bot import BabyAIBot

import babyai_text  # noqa: F401
from babyai_text.play import main, parse_action, play
from tests.helpers import REPO


def bot_plan(env_id: str, seed: int) -> list[str]:
    """The action names the bot plays on ``env_id``'s episode ``seed``, to its success."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    bot = BabyAIBot(env.unwrapped)
    names = env.unwrapped.action_names
    plan = []
    for _ in range(200):
        with contextlib.redirect_stdout(io.StringIO()):
            action = int(bot.replan())
        plan.append(names[action])
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            assert info["success"]
            return plan
    raise AssertionError("the bot did not finish")


def scripted(lines: list[str]):
    queue = list(lines)

    def read(prompt: str) -> str:
        if not queue:
            raise EOFError
        return queue.pop(0)

    return read


@pytest.mark.parametrize("env_id", ["BabyAI-Text-GoTo-v0", "BabyAI-Text-GoTo-French-v0", "BabyAI-Text-PickUp-v0"])
def test_bot_plan_typed_by_name_succeeds(env_id: str) -> None:
    plan = bot_plan(env_id, seed=4)
    out = io.StringIO()
    assert play(env_id, seed=4, read=scripted(plan), out=out) == [True]
    text = out.getvalue()
    assert "success in" in text and "mission:" in text and "[0]" in text


def test_numbers_and_forgiving_names() -> None:
    names = gym.make("BabyAI-Text-GoTo-French-v0").unwrapped.action_names
    assert parse_action("2", names) == 2
    assert parse_action("  TOURNER A  gauche ", names) == names.index("tourner à gauche")
    assert parse_action("6", names) is None and parse_action("fly", names) is None and parse_action("-1", names) is None


def test_bad_input_is_answered_with_the_actions_and_play_goes_on() -> None:
    env_id = "BabyAI-Text-GoTo-v0"
    plan = bot_plan(env_id, seed=1)
    out = io.StringIO()
    lines = ["fly away", "17", "", "help", *plan]
    assert play(env_id, seed=1, read=scripted(lines), out=out) == [True]
    text = out.getvalue()
    assert "'fly away' is not an action here. Valid actions: [0] turn left" in text
    assert "'17' is not an action here" in text and "Traceback" not in text


def test_quit_and_end_of_input_stop_cleanly() -> None:
    out = io.StringIO()
    assert play("BabyAI-Text-GoTo-v0", read=scripted(["0", "quit"]), out=out) == []
    assert "bye" in out.getvalue()
    assert play("BabyAI-Text-GoTo-v0", read=scripted([]), out=io.StringIO()) == []


def test_unknown_id_names_close_ones() -> None:
    with pytest.raises(SystemExit, match=r"unknown BabyAI-Text id 'GoTo-French'.*BabyAI-Text-GoTo-French-v0"):
        play("GoTo-French", read=scripted([]))


def test_command_through_stdin() -> None:
    env_id = "BabyAI-Text-GoTo-French-v0"
    plan = bot_plan(env_id, seed=7)
    stdin = "\n".join(["voler", *plan]) + "\n"
    done = subprocess.run(
        [sys.executable, "-m", "babyai_text.play", env_id, "--seed", "7"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "'voler' is not an action here" in done.stdout
    assert "1 of 1 episodes succeeded" in done.stdout and "Traceback" not in done.stderr


def test_window_opens_with_minigrids_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # pygame's headless display
    pytest.importorskip("pygame")
    plan = bot_plan("BabyAI-Text-GoTo-v0", seed=2)
    out = io.StringIO()
    assert play("BabyAI-Text-GoTo-v0", seed=2, window=True, read=scripted(plan), out=out) == [True]
    assert "no window" not in out.getvalue()


def test_no_display_falls_back_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "no-such-video-driver")  # as on a machine without a display
    pytest.importorskip("pygame")
    out = io.StringIO()
    assert play("BabyAI-Text-GoTo-v0", window=True, read=scripted(["0", "quit"]), out=out) == []
    assert "no window" in out.getvalue() and "playing in the terminal only" in out.getvalue()


def test_no_display_says_so_before_opening_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    out = io.StringIO()
    assert play("BabyAI-Text-GoTo-v0", window=True, read=scripted(["quit"]), out=out) == []
    assert "no window: no display here (DISPLAY is not set); playing in the terminal only" in out.getvalue()


def test_episodes_below_one_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["BabyAI-Text-GoTo-v0", "--episodes", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --episodes must be at least 1, got 0"


def test_the_sample_in_docs_viewer_is_what_play_shows() -> None:
    doc = (REPO / "docs" / "viewer.md").read_text()
    sample = doc.split("=== BabyAI-Text-GoTo-French-v0, seed 3 ===")[1].split("```")[0].strip()
    out = io.StringIO()

    def read(prompt: str) -> str:
        move = moves.pop(0)
        print(f"{prompt}{move}", file=out)
        return move

    moves = ["tourner a gauche", "quit"]
    play("BabyAI-Text-GoTo-French-v0", seed=3, read=read, out=out)
    assert sample in out.getvalue()
