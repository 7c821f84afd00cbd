"""Small statistics: binomial confidence intervals for success rates, tie-aware ranks and the
Spearman rank correlation."""

from __future__ import annotations

import math

import numpy as np


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


def average_ranks(x) -> np.ndarray:
  """1-based ranks, ties sharing the mean of the ranks they span (e.g. [5, 5, 7] -> 1.5, 1.5, 3)."""
  x = np.asarray(x)
  ranks = np.empty(len(x), np.float64)
  ranks[np.argsort(x, kind='stable')] = np.arange(1, len(x) + 1)
  _, tie = np.unique(x, return_inverse=True)
  return (np.bincount(tie, ranks) / np.bincount(tie))[tie]


def spearman(x, y) -> float:
  """Spearman rank correlation, ties at their mean rank."""
  return float(np.corrcoef(average_ranks(x), average_ranks(y))[0, 1])
