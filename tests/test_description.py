"""The sentences describe exactly what the agent sees, in GLAM's order and format."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.world_object import Ball, Box, Door, Key, Wall
from minigrid.minigrid_env import MiniGridEnv
from minigrid.utils.baby_ai_bot import BabyAIBot

from babyai_text.description import Describer
from babyai_text.language import ENGLISH
from tests.helpers import ALL_IDS

ENGLISH_IDS = [i for i in ALL_IDS if not any(v in i for v in ("Renamed", "Invented", "Colour", "French"))]
_OBJECT = re.compile(
    r"^You see an? (?:(open|closed|locked) )?(red|green|blue|purple|yellow|grey) (key|ball|box|door) (.+)$"
)
_WALL = re.compile(r"^You see a wall (\d+) steps? (forward|left|right)$")


def _offsets(where: str) -> tuple[int, int]:
    dx = dy = 0
    for part in where.split(" and "):
        n, unit, direction = part.split(" ")
        assert unit == ("step" if n == "1" else "steps"), where
        if direction == "forward":
            dy = int(n)
        else:
            dx = -int(n) if direction == "left" else int(n)
    return dx, dy


def expected_from_grid(env: MiniGridEnv) -> tuple[list, list, tuple | None]:
    """Objects, walls and carried object computed from the world grid, independently of our view code."""
    _, vis = MiniGridEnv.gen_obs_grid(env)
    objects, walls = [], []
    for x in range(env.grid.width):
        for y in range(env.grid.height):
            rel = env.relative_coords(x, y)
            if rel is None or not vis[rel] or (x, y) == tuple(env.agent_pos):
                continue
            cell = env.grid.get(x, y)
            dx, dy = rel[0] - 3, 6 - rel[1]
            if isinstance(cell, (Key, Ball, Box, Door)):
                state = None
                if isinstance(cell, Door):
                    state = "locked" if cell.is_locked else "open" if cell.is_open else "closed"
                objects.append((rel, state, cell.color, cell.type, dx, dy))
    objects.sort(key=lambda o: o[0])  # by view column, then far to near
    # Walls: first non-empty visible cell straight forward / left / right.
    for direction, steps in (
        ("forward", [(3, y) for y in range(5, -1, -1)]),
        ("left", [(x, 6) for x in range(2, -1, -1)]),
        ("right", [(x, 6) for x in range(4, 7)]),
    ):
        for n, (vx, vy) in enumerate(steps, start=1):
            if not vis[vx, vy]:
                break
            world = env.agent_pos + env.dir_vec * (6 - vy) + env.right_vec * (vx - 3)
            inside = 0 <= world[0] < env.grid.width and 0 <= world[1] < env.grid.height
            cell = env.grid.get(*world) if inside else Wall()
            if cell is None:
                continue
            if isinstance(cell, Wall):
                walls.append((n, direction))
            break
    carried = (env.carrying.color, env.carrying.type) if env.carrying else None
    return [o[1:] for o in objects], walls, carried


def parse(sentences: list[str]) -> tuple[list, list, tuple | None]:
    carried = None
    if sentences and sentences[0].startswith("You carry"):
        m = re.match(r"^You carry an? (\w+) (\w+)$", sentences[0])
        assert m, sentences[0]
        carried = (m[1], m[2])
        sentences = sentences[1:]
    walls = []
    while sentences and _WALL.match(sentences[0]):
        m = _WALL.match(sentences[0])
        walls.append((int(m[1]), m[2]))
        sentences = sentences[1:]
    objects = []
    for s in sentences:
        m = _OBJECT.match(s)
        assert m, f"unparseable sentence {s!r}"
        objects.append((m[1], m[2], m[3], *_offsets(m[4])))
    return objects, walls, carried


def trajectory_states(env_id: str, episodes: int):
    """Yield (unwrapped env, info) along bot-driven and random trajectories (doors get opened, objects carried)."""
    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    for seed in range(episodes):
        _, info = env.reset(seed=seed)
        yield env.unwrapped, info
        bot, taken = BabyAIBot(env.unwrapped), None
        for _ in range(60):
            # Mostly the bot (reaches doors, carries objects), sometimes a random action
            # (the bot is told what was taken, and replans).
            try:
                suggested = bot.replan(taken) if bot else 0
            except Exception:  # the bot gives up after some detours (e.g. a box toggled away)
                bot, suggested = None, 0
            taken = int(rng.integers(0, 6)) if rng.random() < 0.3 or suggested > 5 else int(suggested)
            _, _, terminated, truncated, info = env.step(taken)
            yield env.unwrapped, info
            if terminated or truncated:
                break


@pytest.mark.parametrize("env_id", ENGLISH_IDS)
def test_text_describes_exactly_the_visible_objects(env_id: str) -> None:
    checked = 0
    for env, info in trajectory_states(env_id, episodes=30):
        assert parse(info["descriptions"]) == expected_from_grid(env), info["descriptions"]
        checked += 1
    assert checked > 100


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_fast_view_matches_minigrid_view(env_id: str) -> None:
    for env, _ in trajectory_states(env_id, episodes=10):
        np.testing.assert_array_equal(env.gen_obs()["image"], MiniGridEnv.gen_obs(env)["image"])


def _view(*cells: tuple[int, int, tuple[int, int, int]], seen: bool = True) -> np.ndarray:
    image = np.zeros((7, 7, 3), dtype=np.uint8)
    if seen:
        image[:, :, 0] = 1  # all empty and visible
    for x, y, code in cells:
        image[x, y] = code
    return image


def test_sentence_formats_and_order() -> None:
    describer = Describer(ENGLISH)
    image = _view(
        (3, 6, (5, 4, 0)),  # carrying a yellow key
        (3, 3, (2, 5, 0)),  # wall 3 steps forward
        (0, 6, (2, 5, 0)),  # wall 3 steps left
        (4, 6, (6, 0, 0)),  # red ball 1 step right (blocks the right line)
        (5, 6, (2, 5, 0)),  # wall behind the ball: not described
        (2, 4, (4, 0, 0)),  # open red door 1 left 2 forward
        (2, 1, (7, 2, 0)),  # blue box 1 left 5 forward (same column, farther: first)
        (6, 0, (4, 3, 2)),  # locked purple door 3 right 6 forward
    )
    assert describer.describe(image) == [
        "You carry a yellow key",
        "You see a wall 3 steps forward",
        "You see a wall 3 steps left",
        "You see a blue box 1 step left and 5 steps forward",
        "You see an open red door 1 step left and 2 steps forward",
        "You see a red ball 1 step right",
        "You see a locked purple door 3 steps right and 6 steps forward",
    ]


def test_unseen_cells_are_not_described() -> None:
    image = _view((3, 5, (1, 0, 0)), (3, 6, (1, 0, 0)), seen=False)
    image[3, 2] = (6, 0, 0)  # would be a ball, but an unseen cell lies before it... it is itself seen
    image[3, 4] = (0, 0, 0)
    # Forward line: empty, then unseen: no wall sentence; the ball is still described (it is visible).
    assert Describer(ENGLISH).describe(image) == ["You see a red ball 4 steps forward"]


def test_closed_door_and_singular_step() -> None:
    image = _view((3, 5, (4, 1, 1)))
    assert Describer(ENGLISH).describe(image) == ["You see a closed green door 1 step forward"]


def test_describe_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="7x7x3"):
        Describer(ENGLISH).describe(np.zeros((5, 5, 3), dtype=np.uint8))
