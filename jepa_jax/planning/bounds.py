"""Action box bounds and config checks shared by the planners.

Bounds live in planner configs as `action_low` / `action_high`: both None (unbounded) or
both a float (same bound for every action dimension) or a tuple of floats (one per
dimension). They are plain Python values so configs stay hashable (usable as static args).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

Bound = float | tuple[float, ...] | None


def normalize_bound(bound) -> Bound:
  """Lists/arrays -> tuples so a frozen config holding them stays hashable."""
  if bound is None or isinstance(bound, (int, float)):
    return None if bound is None else float(bound)
  return tuple(float(b) for b in np.asarray(bound, np.float64).reshape(-1))


def validate_bounds(low: Bound, high: Bound, owner: str) -> None:
  if (low is None) != (high is None):
    raise ValueError(f'{owner}.action_low and {owner}.action_high must both be set or both be None, '
                     f'got action_low={low}, action_high={high}')
  if low is None:
    return
  lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
  if lo.shape != hi.shape and lo.ndim and hi.ndim:
    raise ValueError(f'{owner}.action_low and {owner}.action_high have different lengths: {low} vs {high}')
  if not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)) or not np.all(lo < hi):
    raise ValueError(f'{owner}: need finite action_low < action_high elementwise, got {low} and {high}')


def bounds_arrays(low: Bound, high: Bound, action_dim: int, owner: str):
  """(low_A, high_A) float32 arrays, or None when unbounded. Runs at trace time."""
  if low is None:
    return None
  out = []
  for name, b in (('action_low', low), ('action_high', high)):
    b = np.asarray(b, np.float32).reshape(-1)
    if b.size not in (1, action_dim):
      raise ValueError(f'{owner}.{name} has {b.size} entries but actions have dim {action_dim}')
    out.append(jnp.asarray(np.broadcast_to(b, (action_dim,))))
  return tuple(out)


def clip(actions_HA, bounds):
  return actions_HA if bounds is None else jnp.clip(actions_HA, bounds[0], bounds[1])


def squash(u_HA, bounds):
  """Unconstrained -> inside the box: mid + half * tanh(u)."""
  low, high = bounds
  return (high + low) / 2 + (high - low) / 2 * jnp.tanh(u_HA)


def unsquash(actions_HA, bounds, eps: float = 1e-3):
  """Inverse of `squash`. Actions on the bound map to atanh(1 - eps) (~3.8) rather than inf,
  so the tanh gradient there (~2e-3) still lets the optimiser move them back inside."""
  low, high = bounds
  x = (actions_HA - (high + low) / 2) / ((high - low) / 2)
  return jnp.arctanh(jnp.clip(x, -1 + eps, 1 - eps))


def check_positive(owner: str, **fields) -> None:
  for name, value in fields.items():
    if value is None or value <= 0:
      raise ValueError(f'{owner}.{name} must be > 0, got {value}')


def check_plan_shape(init_plan_HA, horizon: int, owner: str) -> None:
  shape = tuple(jnp.shape(init_plan_HA))
  if len(shape) != 2 or shape[0] != horizon:
    raise ValueError(f'init_plan must have shape ({owner}.horizon={horizon}, action_dim), got {shape}')
