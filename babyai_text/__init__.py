"""BabyAI-Text: the text worlds of GLAM on gymnasium and minigrid.

``import babyai_text`` registers the ``BabyAI-Text-*`` ids::

    import gymnasium as gym
    import babyai_text

    env = gym.make("BabyAI-Text-GoTo-v0")
    obs, info = env.reset(seed=0)
    info["descriptions"], info["mission"], env.unwrapped.action_names
    babyai_text.decode_observation(obs)   # the same text, from the array observation

``gym.make(id, observation="minigrid")`` gives minigrid's observation instead (the
mission as a string), on which minigrid's wrappers (``FlatObsWrapper``...) apply.

``import babyai_text`` also registers GLAM's original ids (``BabyAI-MixedTrainLocal-v0``...;
:mod:`babyai_text.envs.glam`), for code written against GLAM's BabyAI-Text or BALROG.
"""

from babyai_text.language import ENGLISH, VARIANTS, English, French, Language, get_language
from babyai_text.level import HELD_OUT_PAIRS, BabyAITextEnv, Task
from babyai_text.observation import (
    PAD_ACTION,
    TextObservation,
    decode_batch,
    decode_missions,
    decode_observation,
)
from babyai_text.prompt import PromptTemplate
from babyai_text.registration import (
    GLAM_IDS,
    REGISTERED_VARIANTS,
    glam_ids,
    register_babyai_text_envs,
    registered_ids,
)
from babyai_text.wrappers import MinigridObservation, mission_word_dict

register_babyai_text_envs()

#: the version of the whole distribution (glam-rl): setup.cfg reads it from here
__version__ = "0.1.0"

__all__ = [
    "ENGLISH",
    "GLAM_IDS",
    "HELD_OUT_PAIRS",
    "PAD_ACTION",
    "REGISTERED_VARIANTS",
    "VARIANTS",
    "BabyAITextEnv",
    "English",
    "French",
    "Language",
    "MinigridObservation",
    "PromptTemplate",
    "Task",
    "TextObservation",
    "decode_batch",
    "decode_missions",
    "decode_observation",
    "get_language",
    "glam_ids",
    "mission_word_dict",
    "register_babyai_text_envs",
    "registered_ids",
]
