"""Binomial confidence intervals for success rates."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
  """Wilson score interval for a binomial proportion (default z: 95 %, two-sided).

  Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n
  successes (e.g. 200/200 gives [0.981, 1.0], not [1, 1]).
  """
  if n <= 0:
    raise ValueError(f'wilson_interval: need n > 0 episodes, got n={n}')
  if not 0 <= successes <= n:
    raise ValueError(f'wilson_interval: successes={successes} must be in [0, n={n}]')
  p, z2 = successes / n, z * z
  denom = 1.0 + z2 / n
  centre = (p + z2 / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
  return max(0.0, centre - half), min(1.0, centre + half)
