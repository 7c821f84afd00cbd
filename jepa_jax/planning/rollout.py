"""Unrolling a latent step function over an action sequence, and warm-start shifting.

Trajectory convention used by every cost and planner: `z_traj` has H+1 entries along the
leading axis, z_traj[0] = z0 (given) and z_traj[t] = state after actions[:t].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

StepFn = Callable[[Any, Any, jax.Array], Any]  # (params, z, action_A) -> z_next
CostFn = Callable[[Any, jax.Array, Any], jax.Array]  # (z_traj, actions_HA, z_goal) -> scalar


def unroll(step_fn: StepFn, params, z0, actions_HA):
  """z_traj with leading axis H+1 (z0 first). z may be any pytree (e.g. tokens (N, D))."""
  def body(z, a_A):
    z_next = step_fn(params, z, a_A)
    return z_next, z_next

  _, zs = jax.lax.scan(body, z0, actions_HA)
  return jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), z0, zs)


def trajectory_cost(step_fn: StepFn, cost_fn: CostFn, params, z0, z_goal, actions_HA):
  return cost_fn(unroll(step_fn, params, z0, actions_HA), actions_HA, z_goal)


def shift_plan(plan_HA, k: int, fill: str = 'last'):
  """Receding-horizon warm start: drop the k executed actions, pad k at the end.

  fill='last' repeats the final action (plans that hold a steady action stay optimal),
  fill='zeros' pads with zeros. k is static; k >= H gives a plan made only of padding.
  """
  if fill not in ('last', 'zeros'):
    raise ValueError(f"shift_plan: fill must be 'last' or 'zeros', got {fill!r}")
  if k < 0:
    raise ValueError(f'shift_plan: k must be >= 0, got {k}')
  H = plan_HA.shape[0]
  k = min(k, H)
  pad_A = plan_HA[-1] if fill == 'last' else jnp.zeros_like(plan_HA[-1])
  return jnp.concatenate([plan_HA[k:], jnp.broadcast_to(pad_A, (k,) + plan_HA.shape[1:])])


def finite_or_inf(cost):
  """Sampling planners rank costs: a NaN/inf rollout must rank last, never first."""
  return jnp.where(jnp.isfinite(cost), cost, jnp.inf)
