"""minigrid's egocentric symbolic view, computed without building rotated sub-grids.

``MiniGridEnv.gen_obs_grid`` slices the grid into a new ``Grid``, rotates it up to four
times (each rotation another ``Grid``) and then computes visibility; that is most of
the cost of a minigrid step.  :func:`egocentric_view` reads the same 7x7 cells straight
from the world grid through the agent's frame and applies the same visibility sweep,
producing an identical array (the tests compare the two on every registered level).
"""

from __future__ import annotations

import numpy as np
from minigrid.core.constants import DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import Wall, WorldObj

from babyai_text.description import AGENT_X, AGENT_Y, VIEW_SIZE

_OUTSIDE = Wall()  # minigrid shows cells beyond the grid's edge as walls
_EMPTY = (OBJECT_TO_IDX["empty"], 0, 0)
_UNSEEN = (OBJECT_TO_IDX["unseen"], 0, 0)
_FRAMES = [(int(fx), int(fy), int(-fy), int(fx)) for fx, fy in DIR_TO_VEC]  # forward and right vectors


def egocentric_view(grid: Grid, agent_pos: tuple[int, int], agent_dir: int, carrying: WorldObj | None) -> np.ndarray:
    """The 7x7x3 encoding ``MiniGridEnv.gen_obs()["image"]`` returns (walls block sight)."""
    width, height, cells = grid.width, grid.height, grid.grid
    ax, ay = int(agent_pos[0]), int(agent_pos[1])
    fx, fy, rx, ry = _FRAMES[agent_dir]
    # view[x][y]: x from left to right, y from far (0) to the agent's row (VIEW_SIZE - 1).
    view: list[list[WorldObj | None]] = []
    opaque: list[list[bool]] = []
    for x in range(VIEW_SIZE):
        side = x - AGENT_X
        column, column_opaque = [], []
        for y in range(VIEW_SIZE):
            ahead = AGENT_Y - y
            wx, wy = ax + fx * ahead + rx * side, ay + fy * ahead + ry * side
            cell = cells[wy * width + wx] if 0 <= wx < width and 0 <= wy < height else _OUTSIDE
            column.append(cell)
            column_opaque.append(cell is not None and not cell.see_behind())
        view.append(column)
        opaque.append(column_opaque)

    # Grid.process_vis: sweep rows from the agent outwards, spreading sight sideways and
    # forward from every visible cell that does not block it.
    visible = [[False] * VIEW_SIZE for _ in range(VIEW_SIZE)]
    visible[AGENT_X][AGENT_Y] = True
    for y in range(VIEW_SIZE - 1, -1, -1):
        for x in range(VIEW_SIZE - 1):
            if visible[x][y] and not opaque[x][y]:
                visible[x + 1][y] = True
                if y > 0:
                    visible[x + 1][y - 1] = True
                    visible[x][y - 1] = True
        for x in range(VIEW_SIZE - 1, 0, -1):
            if visible[x][y] and not opaque[x][y]:
                visible[x - 1][y] = True
                if y > 0:
                    visible[x - 1][y - 1] = True
                    visible[x][y - 1] = True

    view[AGENT_X][AGENT_Y] = carrying  # the agent sees what it carries in its own cell
    codes = []
    for x in range(VIEW_SIZE):
        for y in range(VIEW_SIZE):
            if not visible[x][y]:
                codes.append(_UNSEEN)
            else:
                cell = view[x][y]
                codes.append(_EMPTY if cell is None else cell.encode())
    return np.array(codes, dtype=np.uint8).reshape(VIEW_SIZE, VIEW_SIZE, 3)
