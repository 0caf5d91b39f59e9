"""GiGPO and GRPO: critic-free group advantages with PPO's clipped objective."""

from glam_algorithms.gigpo.advantages import GroupAdvantages, discounted_returns, group_advantages
from glam_algorithms.gigpo.gigpo import GRPO, EnvNotReseedableError, GiGPO, default_step_key

__all__ = [
    "GRPO",
    "EnvNotReseedableError",
    "GiGPO",
    "GroupAdvantages",
    "default_step_key",
    "discounted_returns",
    "group_advantages",
]
