"""Training algorithms for SB3 policies, beside SB3's own (as sb3-contrib's: one sub-package each).

- :class:`GiGPO` / :class:`GRPO` (:mod:`glam_algorithms.gigpo`): PPO's clipped objective on
  critic-free advantages of groups of episodes that start from one initial state.
- :func:`behaviour_clone` / :func:`prefill_replay_buffer` (:mod:`glam_algorithms.bc`): learning from
  demonstrations, for an on-policy policy (through PPO's own ``evaluate_actions``) and an off-policy
  agent's replay buffer.
"""

from glam_algorithms.bc import behaviour_clone, prefill_replay_buffer
from glam_algorithms.gigpo import GRPO, GiGPO
from glam_algorithms.progress_bar import FramesProgressBar

__all__ = ["GRPO", "FramesProgressBar", "GiGPO", "behaviour_clone", "prefill_replay_buffer"]
