"""Routes to minigrid's own wrappers (``minigrid.wrappers``) on BabyAI-Text ids.

A BabyAI-Text observation is by default a ``Dict`` of fixed-size arrays (see
:mod:`babyai_text.observation`): its ``mission`` is UTF-8 bytes, not the string that
minigrid's wrappers read, so ``FlatObsWrapper`` and ``DictObservationSpaceWrapper``
fail on it (with an error that names these routes).  Every id takes
``observation="minigrid"``, which gives minigrid's observation, so that every minigrid
wrapper applies the way minigrid's docs apply them; :class:`MinigridObservation` does
the same for an env that was built with the text observation::

    import gymnasium as gym
    from minigrid.wrappers import FlatObsWrapper, FullyObsWrapper

    import babyai_text
    from babyai_text.wrappers import MinigridObservation

    env = FlatObsWrapper(gym.make("BabyAI-Text-GoTo-v0", observation="minigrid"))
    env = FullyObsWrapper(MinigridObservation(gym.make("BabyAI-Text-MixedTrain-v0")))
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium import spaces

from babyai_text.language import ENGLISH, Language
from babyai_text.level import BabyAITextEnv
from babyai_text.observation import minigrid_observation_space
from babyai_text.vocabulary import _mission_texts

__all__ = ["MinigridObservation", "mission_word_dict"]


class MinigridObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """minigrid's observation, ``{"image", "direction", "mission": str}``, for a BabyAI-Text env.

    Why: minigrid's wrappers (``FlatObsWrapper``, ``DictObservationSpaceWrapper``,
    ``FullyObsWrapper``, ``RGBImgObsWrapper``...) expect the observation of a minigrid
    env, whose mission is a string; BabyAI-Text's is a byte array (so that SB3 can store
    it).  Put this wrapper directly on the env, and minigrid's wrappers on top of it.
    ``gym.make(env_id, observation="minigrid")`` builds the env with this observation
    (and padding) in the first place; this wrapper is for an env built with the text
    observation.  On an env that already gives minigrid's observation it changes nothing.

    The observation space is minigrid's for BabyAI levels: ``image`` ``Box(uint8, (7, 7,
    3))``, ``direction`` ``Discrete(4)`` and ``mission`` minigrid's ``BabyAIMissionSpace``
    (which accepts any mission, so French, synonym and invented-word missions too).  The
    text the env puts in ``info`` (``mission``, ``descriptions``, ``action_names``,
    ``task``, ``success``) is passed through unchanged; ``obs["mission"] ==
    info["mission"]``.

    Wrappers that read the whole grid (``FullyObsWrapper``, ``RGBImgObsWrapper``,
    ``SymbolicObsWrapper``) size their space from ``env.unwrapped.width`` once, at
    construction.  On ids that mix one- and two-room tasks (``MixedTrain``,
    ``MixedTest``) the grid's width changes between episodes, so with ``pad_grid``
    (the default) this wrapper widens every grid to the widest task's with wall columns
    on the right, before those wrappers read it.  Nothing the agent observes or can do
    changes: minigrid shows cells beyond the grid's edge as walls anyway, so the
    egocentric view, descriptions, rewards and the verifier are the same; only full-grid
    views and renders of one-room episodes gain the wall columns.  On ids with one room
    count it never does anything.  It pads through the env's
    :meth:`~babyai_text.BabyAITextEnv.pad_grid`, so the grid of the wrapped env is padded
    too; ``pad_grid=False`` leaves the env as it is (an env built with
    ``observation="minigrid"`` pads by itself).

    :param env: a BabyAI-Text env (``gym.make("BabyAI-Text-...")``, possibly wrapped
        already by wrappers that keep its observation).
    :param pad_grid: pad the grid to a fixed size as described above.

    Example::

        env = MinigridObservation(gym.make("BabyAI-Text-GoTo-French-v0"))
        obs, info = env.reset(seed=0)
        obs["mission"] == info["mission"]   # "va à ..." (a str)
        obs["image"].shape                  # (7, 7, 3)
    """

    def __init__(self, env: gym.Env, pad_grid: bool = True) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, pad_grid=pad_grid)
        gym.ObservationWrapper.__init__(self, env)
        base = env.unwrapped
        if not isinstance(base, BabyAITextEnv):
            raise TypeError(
                f"MinigridObservation wraps BabyAI-Text envs (gym.make('BabyAI-Text-...') after "
                f"`import babyai_text`), not {type(base).__name__}; minigrid's own envs need no wrapper"
            )
        ours = env.observation_space
        if not isinstance(ours, spaces.Dict) or "image" not in ours.spaces or "direction" not in ours.spaces:
            raise TypeError(
                "MinigridObservation must be applied to a BabyAI-Text observation (a Dict with 'image', "
                f"'direction' and 'mission'), got {ours}; put it directly on the env, below other wrappers"
            )
        self.observation_space = minigrid_observation_space()
        self._env = base
        if pad_grid:
            # Sets the env's width now: wrappers built on top of this one read it before any reset.
            base.pad_grid(True)
        #: the width every grid is padded to, or None when grids are not padded
        self._grid_width: int | None = base.padded_width

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        """minigrid's fields of ``observation``, the mission as the env's string."""
        return {
            "image": observation["image"],
            "direction": int(observation["direction"]),
            "mission": self._env.mission,
        }


def mission_word_dict(language: Language | None = None) -> dict[str, int]:
    """``word_dict`` for minigrid's ``DictObservationSpaceWrapper``: every word of ``language``'s missions.

    Why: that wrapper's default dictionary is minigrid's English word list, which lacks
    BabyAI-Text words ("after", "next"...) and every word of the other languages.
    Words are split the wrapper's way (on whitespace, commas apart).

    :param language: the env's language (``env.unwrapped.language``); English if ``None``.

    Example::

        env = MinigridObservation(gym.make("BabyAI-Text-GoTo-French-v0"))
        env = DictObservationSpaceWrapper(env, word_dict=mission_word_dict(env.unwrapped.language))
    """
    words: set[str] = set()
    for text in _mission_texts(language or ENGLISH):
        words.update(text.replace(",", " , ").split())
    return {word: i for i, word in enumerate(sorted(words))}
