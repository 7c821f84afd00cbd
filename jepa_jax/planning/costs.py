"""Planning costs `cost(z_traj, actions_HA, z_goal) -> scalar` and their composition.

z_traj has H+1 entries along axis 0 with z_traj[0] = z0 (see rollout.unroll). State terms skip
z0: it does not depend on the actions, so including it only shifts the value. Latents may
have any trailing shape (a vector (D,) or tokens (N, D)); they are flattened per step.
All terms are summed over time (not averaged) so weights keep their meaning across horizons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jepa_jax.planning.rollout import CostFn

StatePenalty = Callable[[jax.Array], jax.Array]  # z (any shape) -> scalar >= 0

_SAFE_EPS = 1e-12  # keeps sqrt differentiable at 0 (gradient of |x| at x=0 is NaN otherwise)


def _steps_TF(z_traj):
  return z_traj[1:].reshape(z_traj.shape[0] - 1, -1)


def _reduce_time(d_T, reduction: str, discount: float):
  if reduction == 'final':
    return d_T[-1]
  return jnp.sum(discount ** jnp.arange(d_T.shape[0], dtype=d_T.dtype) * d_T)


def _check_reduction(owner: str, reduction: str, discount: float) -> None:
  if reduction not in ('final', 'sum'):
    raise ValueError(f"{owner}: reduction must be 'final' or 'sum', got {reduction!r}")
  if reduction == 'final' and discount != 1.0:
    raise ValueError(f"{owner}: discount={discount} only applies to reduction='sum'")
  if not 0.0 < discount <= 1.0:
    raise ValueError(f'{owner}: discount must be in (0, 1], got {discount}')


def goal_energy(metric: str = 'l2sq', reduction: str = 'final', discount: float = 1.0,
                average: bool = False) -> CostFn:
  """Distance of predicted latents to z_goal.

  metric: 'l1' (sum |d|), 'l2sq' (sum d^2) or 'l2' (Euclidean norm).
  reduction: 'final' (z_H only) or 'sum' (sum_{t=1..H} discount^(t-1) * dist(z_t)).
  average: use means over latent elements instead of sums ('l2' becomes RMS), so the scale
    does not grow with the latent size (useful for token latents).
  """
  if metric not in ('l1', 'l2', 'l2sq'):
    raise ValueError(f"goal_energy: metric must be 'l1', 'l2' or 'l2sq', got {metric!r}")
  _check_reduction('goal_energy', reduction, discount)

  def cost(z_traj, actions_HA, z_goal):
    del actions_HA
    diff_TF = _steps_TF(z_traj) - jnp.reshape(z_goal, (1, -1))
    agg = jnp.mean if average else jnp.sum
    if metric == 'l1':
      d_T = agg(jnp.abs(diff_TF), axis=-1)
    else:
      d_T = agg(jnp.square(diff_TF), axis=-1)
      if metric == 'l2':
        d_T = jnp.sqrt(d_T + _SAFE_EPS)
    return _reduce_time(d_T, reduction, discount)

  return cost


def learned_goal_distance(distance_fn: Callable, reduction: str = 'final',
                          discount: float = 1.0, floor: float = 0.0) -> CostFn:
  """A learned goal-conditioned distance `distance_fn(z, z_goal) -> scalar` (e.g. steps of walk,
  train/goal_distance.py) of the final predicted latent, or summed over the plan. Unlike a
  latent difference, it keeps falling along a way round a wall, so the receding-horizon plan
  has a reason to follow it. Only the part above `floor` is charged: within `floor` of the goal
  a coarse learned distance would only blur the finer latent energy beside it."""
  _check_reduction('learned_goal_distance', reduction, discount)
  if not floor >= 0:
    raise ValueError(f'learned_goal_distance: floor must be >= 0 (distance units), got {floor}')
  above = lambda d: jnp.maximum(d - floor, 0.0) if floor else d

  def cost(z_traj, actions_HA, z_goal):
    del actions_HA
    if reduction == 'final':  # the head is the costly part: evaluate it once
      return above(distance_fn(z_traj[-1], z_goal))
    d_T = jax.vmap(lambda z: above(distance_fn(z, z_goal)))(z_traj[1:])
    return _reduce_time(d_T, reduction, discount)

  return cost


def quadratic_goal_cost(Q_FF, reduction: str = 'sum', discount: float = 1.0) -> CostFn:
  """sum_t (z_t - g)^T Q (z_t - g) over t=1..H (or t=H only), latents flattened to F."""
  _check_reduction('quadratic_goal_cost', reduction, discount)
  Q_FF = jnp.asarray(Q_FF, jnp.float32)

  def cost(z_traj, actions_HA, z_goal):
    del actions_HA
    diff_TF = _steps_TF(z_traj) - jnp.reshape(z_goal, (1, -1))
    return _reduce_time(jnp.einsum('tf,fg,tg->t', diff_TF, Q_FF, diff_TF), reduction, discount)

  return cost


def action_energy(R_AA=None) -> CostFn:
  """sum_t a_t^T R a_t (R=None: identity, i.e. sum of squared actions)."""
  R_AA = None if R_AA is None else jnp.asarray(R_AA, jnp.float32)

  def cost(z_traj, actions_HA, z_goal):
    del z_traj, z_goal
    if R_AA is None:
      return jnp.sum(jnp.square(actions_HA))
    return jnp.einsum('ha,ab,hb->', actions_HA, R_AA, actions_HA)

  return cost


def action_bound_penalty(low, high) -> CostFn:
  """Soft box guardrail: sum of hinge^2 of the violation, zero inside [low, high]."""
  low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)

  def cost(z_traj, actions_HA, z_goal):
    del z_traj, z_goal
    return jnp.sum(jnp.square(jax.nn.relu(actions_HA - high)) + jnp.square(jax.nn.relu(low - actions_HA)))

  return cost


def smoothness_penalty() -> CostFn:
  """sum_t ||a_{t+1} - a_t||^2: discourages bang-bang plans that a real actuator cannot track."""
  def cost(z_traj, actions_HA, z_goal):
    del z_traj, z_goal
    return jnp.sum(jnp.square(actions_HA[1:] - actions_HA[:-1]))

  return cost


def ball_penalty(center, radius: float) -> StatePenalty:
  """Per-state keep-out: (radius - ||x - center||)_+^2, positive only inside the ball."""
  center = jnp.asarray(center, jnp.float32)
  if radius <= 0:
    raise ValueError(f'ball_penalty: radius must be > 0, got {radius}')

  def penalty(x):
    dist = jnp.sqrt(jnp.sum(jnp.square(jnp.ravel(x) - jnp.ravel(center))) + _SAFE_EPS)
    return jnp.square(jax.nn.relu(radius - dist))

  return penalty


def box_penalty(low, high) -> StatePenalty:
  """Per-state keep-out: (penetration depth)_+^2, where depth is the distance to the nearest
  face when inside the box; pushes states out through the closest face."""
  low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)

  def penalty(x):
    x = jnp.ravel(x)
    depth = jnp.min(jnp.minimum(x - jnp.ravel(low), jnp.ravel(high) - x))
    return jnp.square(jax.nn.relu(depth))

  return penalty


def keep_out(penalty_fn: StatePenalty, project: Callable | None = None) -> CostFn:
  """Lift a per-state penalty to a trajectory cost: sum_{t=1..H} penalty(project(z_t)).

  `project` maps a latent to the space the region is defined in (e.g. a linear probe that
  decodes position from z); None means the region is defined on z itself.
  """
  project = project or (lambda z: z)

  def cost(z_traj, actions_HA, z_goal):
    del actions_HA, z_goal
    return jnp.sum(jax.vmap(lambda z: penalty_fn(project(z)))(z_traj[1:]))

  return cost


def token_grid_blur(sigma: float, grid_hw: tuple[int, int] | None = None) -> Callable:
  """z (N, C) tokens of an H x W grid (row-major; None: square) -> (N, C) blurred over the grid.

  A separable Gaussian of `sigma` cells whose weights are renormalised at the border (so a
  constant map stays constant). Why: the latent of a local encoder changes only where the agent
  is, so |z - z_goal| grows over about one cell and is flat beyond; blurred maps overlap at
  larger distances, and their distance keeps growing with the offset (a coarse-to-fine goal
  energy). Linear in z, so it commutes with the goal-rollout drift correction.
  """
  if not sigma > 0:
    raise ValueError(f'token_grid_blur: sigma must be > 0 (grid cells), got {sigma}')

  def kernel(n):
    x = jnp.arange(n, dtype=jnp.float32)
    k = jnp.exp(-0.5 * jnp.square((x[:, None] - x[None, :]) / sigma))
    return k / jnp.sum(k, axis=1, keepdims=True)

  def blur(z_NC):
    if z_NC.ndim != 2:
      raise ValueError(f'token_grid_blur: the latent has shape {z_NC.shape}, not tokens (N, C) on '
                       'a grid; only token-map latents can be blurred (for this world model set '
                       'cost.pyramid.sigmas=() and cost.pyramid.weights=())')
    n = z_NC.shape[0]
    h, w = grid_hw if grid_hw is not None else (math.isqrt(n), math.isqrt(n))
    if h * w != n:
      raise ValueError(f'token_grid_blur: {n} tokens do not fill a {h}x{w} grid; give grid_hw '
                       '(rows, columns) for a non-square token grid')
    z_HWC = z_NC.reshape(h, w, -1)
    return jnp.einsum('ai,bj,ijc->abc', kernel(h), kernel(w), z_HWC).reshape(n, -1)

  return blur


def project_cost(cost_fn: CostFn, project: Callable) -> CostFn:
  """cost_fn measured between projected latents: project every z_t and the goal first."""
  def cost(z_traj, actions_HA, z_goal):
    return cost_fn(jax.vmap(project)(z_traj), actions_HA, project(z_goal))

  return cost


def weighted_sum(terms: Sequence[tuple[float, CostFn]]) -> CostFn:
  """sum_i w_i * cost_i: a task cost plus guardrails as one objective."""
  terms = tuple(terms)
  if not terms:
    raise ValueError('weighted_sum: need at least one (weight, cost_fn) term')
  for i, term in enumerate(terms):
    if not isinstance(term, (tuple, list)) or len(term) != 2 or not callable(term[1]):
      raise ValueError(f'weighted_sum: term {i} must be (weight, cost_fn), got {term!r}')

  def cost(z_traj, actions_HA, z_goal):
    return sum(w * fn(z_traj, actions_HA, z_goal) for w, fn in terms)

  return cost
