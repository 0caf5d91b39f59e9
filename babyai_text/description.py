"""From minigrid's egocentric symbolic view to GLAM's list of sentences.

The 7x7x3 ``image`` minigrid already computes (occlusion by walls applied, carried
object placed in the agent's cell) holds everything a description needs, so the
sentences are a pure function of it: no second pass over the grid.
"""

from __future__ import annotations

import numpy as np
from minigrid.core.constants import IDX_TO_COLOR, IDX_TO_OBJECT, OBJECT_TO_IDX

from babyai_text.language import DOOR_STATES, Language

VIEW_SIZE = 7
#: The agent's cell in the view: bottom row, middle column (the view is indexed [x, y]).
AGENT_X, AGENT_Y = VIEW_SIZE // 2, VIEW_SIZE - 1

_EMPTY = OBJECT_TO_IDX["empty"]
_WALL = OBJECT_TO_IDX["wall"]
_DOOR = OBJECT_TO_IDX["door"]
_DESCRIBED = frozenset(OBJECT_TO_IDX[t] for t in ("door", "key", "ball", "box"))
_CARRIABLE = frozenset(OBJECT_TO_IDX[t] for t in ("key", "ball", "box"))
_LO, _HI = min(_DESCRIBED), max(_DESCRIBED)
assert set(range(_LO, _HI + 1)) == _DESCRIBED

# The straight lines forward, left and right along which walls are described, near to far.
_LINES = (
    [(AGENT_X, y) for y in range(AGENT_Y - 1, -1, -1)],
    [(x, AGENT_Y) for x in range(AGENT_X - 1, -1, -1)],
    [(x, AGENT_Y) for x in range(AGENT_X + 1, VIEW_SIZE)],
)


class Describer:
    """Turns views into sentences in one language, caching each distinct sentence.

    :param language: the language of the sentences.
    """

    def __init__(self, language: Language) -> None:
        self.language = language
        self._sentences: dict[tuple[int, int, int, int, int], str] = {}

    def _sentence(self, obj: int, colour: int, state: int, x: int, y: int) -> str:
        key = (obj, colour, state, x, y)
        sentence = self._sentences.get(key)
        if sentence is None:
            dx, dy = x - AGENT_X, AGENT_Y - y
            if obj == _WALL:
                sentence = self.language.see_wall(dx, dy)
            elif (x, y) == (AGENT_X, AGENT_Y):
                sentence = self.language.carry(IDX_TO_OBJECT[obj], IDX_TO_COLOR[colour])
            else:
                door_state = DOOR_STATES[state] if obj == _DOOR else None
                sentence = self.language.see_object(IDX_TO_OBJECT[obj], IDX_TO_COLOR[colour], door_state, dx, dy)
            self._sentences[key] = sentence
        return sentence

    def describe(self, image: np.ndarray) -> list[str]:
        """Sentences for one 7x7x3 egocentric view, in GLAM's order.

        1. the carried object; 2. walls that are the first non-empty visible cell
        straight forward, left, right; 3. every other visible door, key, ball or box,
        by column from left to right and from far to near inside a column.
        """
        if image.shape != (VIEW_SIZE, VIEW_SIZE, 3):
            raise ValueError(f"expected a {VIEW_SIZE}x{VIEW_SIZE}x3 view, got shape {image.shape}")
        objects = image[:, :, 0]
        sentences = []
        carried = int(objects[AGENT_X, AGENT_Y])
        if carried in _CARRIABLE:
            sentences.append(self._sentence(carried, int(image[AGENT_X, AGENT_Y, 1]), 0, AGENT_X, AGENT_Y))
        for cells in _LINES:
            for x, y in cells:
                cell = objects[x, y]
                if cell == _EMPTY:
                    continue
                if cell == _WALL:
                    sentences.append(self._sentence(_WALL, 0, 0, x, y))
                break  # an object, or an unseen cell, ends the line
        mask = (objects >= _LO) & (objects <= _HI)
        mask[AGENT_X, AGENT_Y] = False
        # np.nonzero walks x (columns, left to right) then y (rows, far to near).
        for x, y in zip(*np.nonzero(mask), strict=True):
            obj, colour, state = image[x, y]
            sentences.append(self._sentence(int(obj), int(colour), int(state), int(x), int(y)))
        return sentences

    def longest_sentence_bytes(self) -> int:
        """Upper bound on the UTF-8 size of any sentence this describer can produce."""
        lang = self.language
        longest = 0
        positions = [(x, y) for x in range(VIEW_SIZE) for y in range(VIEW_SIZE) if (x, y) != (AGENT_X, AGENT_Y)]
        for colour in IDX_TO_COLOR.values():
            for obj_type in ("key", "ball", "box"):
                longest = max(longest, len(lang.carry(obj_type, colour).encode()))
            for obj_type, states in (("key", [None]), ("ball", [None]), ("box", [None]), ("door", DOOR_STATES)):
                for state in states:
                    for x, y in positions:
                        text = lang.see_object(obj_type, colour, state, x - AGENT_X, AGENT_Y - y)
                        longest = max(longest, len(text.encode()))
        for x, y in positions:
            if x == AGENT_X or y == AGENT_Y:
                longest = max(longest, len(lang.see_wall(x - AGENT_X, AGENT_Y - y).encode()))
        return longest
