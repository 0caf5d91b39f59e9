"""Success rates as statistics: Wilson score intervals of success rates and normal intervals of means."""

from __future__ import annotations

import math

import numpy as np

#: z for a two-sided 99 % normal interval (as GLAM).
Z99 = 2.5758


def confidence_halfwidth(values: np.ndarray) -> float:
    """Half-width of the 99 % normal interval of the mean of ``values``."""
    if len(values) < 2:
        return float("nan")
    return Z99 * float(np.std(values, ddof=1)) / math.sqrt(len(values))


def wilson_interval(successes: np.ndarray, z: float = Z99) -> tuple[float, float]:
    """Wilson score interval of a success rate from 0/1 outcomes."""
    return wilson_bounds(float(np.sum(successes)), len(successes), z)


def wilson_bounds(successes: float, n: int, z: float = Z99) -> tuple[float, float]:
    """Wilson score interval of ``successes`` out of ``n`` trials."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return max(0.0, centre - half), min(1.0, centre + half)


__all__ = ["Z99", "confidence_halfwidth", "wilson_bounds", "wilson_interval"]
