"""Play a BabyAI-Text level yourself, in the terminal, in the level's language.

    python -m babyai_text.play BabyAI-Text-GoTo-French-v0 --seed 3 [--window] [--episodes 2]

Any ``BabyAI-Text-*`` id, and GLAM's original ids (``BabyAI-MixedTrainLocal-v0``...).

Each step prints the mission, what the agent sees (the text observation an agent gets)
and the numbered actions; type an action's number or its name in the level's language
(case, spaces and accents do not matter: ``tourner a gauche`` is ``tourner à gauche``).
``help`` lists the actions again, ``quit`` (or end of input) stops.  ``--window`` also
shows the grid in minigrid's window (it needs a display).  Episode ``k`` is seeded
``seed + k``, so a seed replays the same level.
"""

from __future__ import annotations

import argparse
import os
import sys
import unicodedata
from collections.abc import Callable
from typing import Any, TextIO

import gymnasium as gym

from babyai_text.registration import glam_ids, registered_ids

QUIT = ("quit", "q", "exit")
HELP = ("help", "?", "h")


def _normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def parse_action(text: str, action_names: tuple[str, ...]) -> int | None:
    """The action index ``text`` names: a number or an action name (``None``: neither).

    :param text: what the player typed.
    :param action_names: the level's action names, in its language.
    """
    text = text.strip()
    if text.isdigit():
        index = int(text)
        return index if index < len(action_names) else None
    wanted = _normalise(text)
    for index, name in enumerate(action_names):
        if _normalise(name) == wanted:
            return index
    return None


def action_list(action_names: tuple[str, ...]) -> str:
    return "  ".join(f"[{i}] {name}" for i, name in enumerate(action_names))


def play(
    env_id: str,
    seed: int = 0,
    episodes: int = 1,
    window: bool = False,
    read: Callable[[str], str] = input,
    out: TextIO = sys.stdout,
) -> list[bool]:
    """Play ``episodes`` episodes of ``env_id`` with actions typed by a person.

    :param read: asks for and returns one line (``input``; raising ``EOFError`` stops).
    :param out: where the game is printed.
    :return: the successes of the episodes played to their end.
    """
    env = _make(env_id, window, out)
    names: tuple[str, ...] = env.unwrapped.action_names
    successes: list[bool] = []
    try:
        for k in range(episodes):
            _, info = env.reset(seed=seed + k)
            print(f"\n=== {env_id}, seed {seed + k} ===", file=out)
            total, steps = 0.0, 0
            while True:
                _show(info, steps, out)
                print(f"actions: {action_list(names)}", file=out)
                action = _ask(names, read, out)
                if action is None:
                    print("bye", file=out)
                    return successes
                _, reward, terminated, truncated, info = env.step(action)
                steps += 1
                total += float(reward)
                print(f"-> {names[action]}: reward {float(reward):.2f}, return {total:.2f}", file=out)
                if terminated or truncated:
                    if info.get("success", False):
                        print(f"success in {steps} steps! return {total:.2f}", file=out)
                    elif truncated:
                        print(f"out of time after {steps} steps: failure", file=out)
                    else:
                        print(f"episode over after {steps} steps: failure", file=out)
                    successes.append(bool(info.get("success", False)))
                    break
    finally:
        env.close()
    return successes


def _make(env_id: str, window: bool, out: TextIO) -> gym.Env:
    known = [*registered_ids(), *glam_ids()]
    if env_id not in known:
        close = [i for i in known if env_id.lower() in i.lower()][:8]
        hint = f" Did you mean one of: {', '.join(close)}?" if close else " See babyai_text.registered_ids()."
        raise SystemExit(f"unknown BabyAI-Text id {env_id!r}.{hint}")
    if not window:
        return gym.make(env_id)
    # a driver the user chose (SDL_VIDEODRIVER, e.g. "dummy" in tests) is theirs to judge
    chosen = bool(os.environ.get("SDL_VIDEODRIVER"))
    no_display = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not chosen and sys.platform.startswith("linux") and no_display:
        print("no window: no display here (DISPLAY is not set); playing in the terminal only", file=out)
        return gym.make(env_id)
    env = gym.make(env_id, render_mode="human")
    try:
        env.reset(seed=0)  # opens the window now, so that a machine without a display says so at once
    except Exception as err:  # pygame's error type depends on its build
        env.close()
        print(f"no window ({err}); playing in the terminal only", file=out)
        return gym.make(env_id)
    driver = _video_driver()
    if not chosen and driver in HEADLESS_DRIVERS:
        # without a display SDL falls back to a driver that draws nowhere: say so rather than show nothing
        env.close()
        print(f"no window: no display here (SDL video driver {driver!r}); playing in the terminal only", file=out)
        return gym.make(env_id)
    return env


#: SDL video drivers that open no window
HEADLESS_DRIVERS = frozenset({"offscreen", "dummy"})


def _video_driver() -> str | None:
    pygame = sys.modules.get("pygame")  # minigrid's human rendering imported it (the envs need not)
    if pygame is None or not pygame.display.get_init():
        return None
    return pygame.display.get_driver()


def _show(info: dict[str, Any], steps: int, out: TextIO) -> None:
    print(f"\nstep {steps + 1} | mission: {info['mission']}", file=out)
    for sentence in info["descriptions"]:
        print(f"  {sentence}", file=out)


def _ask(names: tuple[str, ...], read: Callable[[str], str], out: TextIO) -> int | None:
    """The player's next action (``None``: they quit)."""
    while True:
        try:
            text = read("action> ")
        except (EOFError, KeyboardInterrupt):
            return None
        if text.strip().lower() in QUIT:
            return None
        if text.strip().lower() in HELP or not text.strip():
            print(f"type a number or a name: {action_list(names)}", file=out)
            continue
        action = parse_action(text, names)
        if action is not None:
            return action
        print(f"{text.strip()!r} is not an action here. Valid actions: {action_list(names)}", file=out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("env_id", help="a BabyAI-Text id, e.g. BabyAI-Text-GoTo-v0")
    parser.add_argument("--seed", type=int, default=0, help="episode k is seeded seed + k")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--window", action="store_true", help="also show the grid (minigrid's window)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        # the one-line refusal every command of the package gives (glam_experiments.cli, which envs cannot import)
        print(f"error: --episodes must be at least 1, got {args.episodes}", file=sys.stderr)
        raise SystemExit(2)
    read = input if sys.stdin.isatty() else _echoed_input
    try:
        successes = play(args.env_id, args.seed, args.episodes, args.window, read=read)
        if successes:
            print(f"{sum(successes)} of {len(successes)} episodes succeeded")
    except BrokenPipeError:  # the output was piped into a reader that stopped (e.g. head)
        # what the Python docs advise: point stdout at devnull so the exit flush stays silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _echoed_input(prompt: str) -> str:
    """``input`` for piped-in moves: the transcript shows each move after its prompt."""
    text = input(prompt)
    print(text)
    return text


if __name__ == "__main__":
    main()
