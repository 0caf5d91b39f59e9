"""Learning from demonstrations: behaviour cloning of an on-policy SB3 policy, and demonstrations
in an off-policy agent's replay buffer."""

from glam_algorithms.bc.bc import (
    BCEpoch,
    Demonstrations,
    accuracy_floor,
    behaviour_clone,
    check_demonstrations,
    concatenate_rows,
    demonstration_steps,
    split_episodes,
    take_rows,
)
from glam_algorithms.bc.replay_prefill import prefill_replay_buffer

__all__ = [
    "BCEpoch",
    "Demonstrations",
    "accuracy_floor",
    "behaviour_clone",
    "check_demonstrations",
    "concatenate_rows",
    "demonstration_steps",
    "prefill_replay_buffer",
    "split_episodes",
    "take_rows",
]
