"""Training algorithms for SB3 policies, beside SB3's own (as sb3-contrib's: one sub-package each).

- :class:`GiGPO` / :class:`GRPO` (:mod:`glam_algorithms.gigpo`): PPO's clipped objective on
  critic-free advantages of groups of episodes that start from one initial state.
"""

from glam_algorithms.gigpo import GRPO, GiGPO
from glam_algorithms.progress_bar import FramesProgressBar

__all__ = ["GRPO", "FramesProgressBar", "GiGPO"]
