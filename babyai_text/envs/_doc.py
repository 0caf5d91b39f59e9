"""Docstring sections every BabyAI-Text environment shares."""

ACTION_SPACE = """
    ## Action Space

    `Discrete(6)`; the names the agent is told come from the language (variant):

    | Num | Standard name | Effect                              |
    |-----|---------------|-------------------------------------|
    | 0   | turn left     | turn left                           |
    | 1   | turn right    | turn right                          |
    | 2   | go forward    | move forward                        |
    | 3   | pick up       | pick up the object in front         |
    | 4   | drop          | drop the carried object in front    |
    | 5   | toggle        | open/close/unlock the door in front |
"""

OBSERVATION = """
    ## Observation

    A `Dict` of fixed-size arrays (see `babyai_text.observation`): `image` (minigrid's
    7x7x3 egocentric symbolic view), `direction`, and the text fields `mission`,
    `action_names`, `descriptions` (the last `history_length` steps' sentences) and
    `actions` (the actions between them), decoded by `babyai_text.decode_observation`.
    `info` holds the same text as strings: `mission`, `descriptions`, `action_names`,
    plus `task` and `success`.

    `observation="minigrid"` gives minigrid's observation instead: `image`, `direction`
    and `mission` as a string, with minigrid's space for BabyAI levels, so that
    minigrid's wrappers apply (`FlatObsWrapper(gym.make(id, observation="minigrid"))`);
    `info` is the same.
"""

REWARDS = """
    ## Rewards

    `1 - 0.9 * (step_count / max_steps)` on success, `0` otherwise.
"""


def termination(goal: str) -> str:
    return f"""
    ## Termination

    The episode terminates when {goal} (minigrid's verifier decides), and is truncated
    after `max_steps` steps (default: minigrid's BabyAI formula, room_size² × rooms ×
    navigations the instruction needs).
"""


def document(cls: type, goal: str, registered: list[str]) -> type:
    """Complete ``cls``'s docstring with the shared sections, in minigrid's order."""
    ids = "\n".join(f"    - `{env_id}`" for env_id in registered)
    cls.__doc__ = (
        (cls.__doc__ or "")
        + ACTION_SPACE
        + OBSERVATION
        + REWARDS
        + termination(goal)
        + f"\n    ## Registered Configurations\n\n{ids}\n"
    )
    return cls
