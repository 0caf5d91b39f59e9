"""Registration of every ``BabyAI-Text-*`` id, and of GLAM's original ids, with gymnasium."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.registration import register, registry

#: Generalization variants registered as ids (``variant=`` accepts them on any task).
REGISTERED_VARIANTS = ("RenamedObjects", "InventedWords", "ColourSynonyms", "SynonymActions", "French")

_MODULES = {
    "GoTo": "goto",
    "PickUp": "pickup",
    "PutNext": "putnext",
    "Open": "open",
    "PickUpThenGoTo": "sequence",
    "GoToAfterPickUp": "sequence",
    "PickUpSeqGoTo": "sequence",
    "PickUpSeqPickUp": "sequence",
    "MixedTrain": "mixed",
    "MixedTest": "mixed",
}
#: GLAM's original ids (as GLAM's BabyAI-Text and BALROG name them) and their classes in
#: :mod:`babyai_text.envs.glam`: minigrid's observation, the task kind drawn per env.
GLAM_IDS: dict[str, str] = {
    f"BabyAI-{name}-v0": f"babyai_text.envs.glam:{name}"
    for name in (
        "MixedTrainLocal",
        "MixedTestLocal",
        "PickUpSeqGoToLocal",
        "PickUpThenGoToLocal",
        "GoToAfterPickUpLocal",
        "PickUpSeqPickUpLocal",
        "GoToFrench",
    )
}
_SMALL = {"S5N2": {"room_size": 5, "num_dists": 2}, "S6N3": {"room_size": 6, "num_dists": 3}}


def _configurations() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every id with its entry point and kwargs."""
    configs: dict[str, tuple[str, dict[str, Any]]] = {}
    for task, module in _MODULES.items():
        configs[f"BabyAI-Text-{task}-v0"] = (f"babyai_text.envs.{module}:{task}", {})
    for task in ("GoTo", "PickUp"):
        for suffix, kwargs in _SMALL.items():
            configs[f"BabyAI-Text-{task}{suffix}-v0"] = (f"babyai_text.envs.{_MODULES[task]}:{task}", dict(kwargs))
    for task in ("MixedTrain", "GoTo"):
        for variant in REGISTERED_VARIANTS:
            entry = f"babyai_text.envs.{_MODULES[task]}:{task}"
            configs[f"BabyAI-Text-{task}-{variant}-v0"] = (entry, {"variant": variant})
    return configs


def registered_ids() -> list[str]:
    """All ``BabyAI-Text-*`` ids this package registers."""
    return list(_configurations())


def glam_ids() -> list[str]:
    """GLAM's original ids this package registers (see :mod:`babyai_text.envs.glam`)."""
    return list(GLAM_IDS)


def register_babyai_text_envs() -> None:
    """Register every BabyAI-Text id and GLAM's original ids (idempotent; runs on ``import babyai_text``).

    A GLAM id another package registered first (a fork of minigrid that carries GLAM's
    levels) is left to it.
    """
    for env_id, (entry_point, kwargs) in _configurations().items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, kwargs=kwargs)
    for env_id, entry_point in GLAM_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point)
