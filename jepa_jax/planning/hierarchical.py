"""Two-level planning: a coarse planner looks far ahead and sets a latent subgoal, a fine planner
reaches it.

The high level plans over `H_hi` macro actions, each held for many environment steps (its own
`step_high`, e.g. the world-model step repeated 16 times), so a short, cheap search sees a long
way: around a wall and through a door that the fine planner's horizon cannot reach. Its subgoal
is the *predicted* latent after the first `subgoal_after` macro actions, a state the model itself
believes reachable, so the fine planner is asked for something it can achieve within its
horizon. Both levels use the same world model and cost; the subgoal replaces the goal in the
fine planner's call (or, with a `two_scale_cost`, competes with a goal-aimed fine plan).

Cold restart of the fine level happens here, not in the closed loop: the closed loop compares
the costs of two calls, and two calls would set two different subgoals whose costs do not
compare. Here both fine searches aim at the same subgoal and the cheaper plan is kept.

A goal handed in as `Remembered` (the closed loop's memory of moves that did not happen and of
the places the episode has been, planning/move_memory.py) keeps its memory at both levels: the
high level's cost charges macro actions that repeat a failed move or lead back to a visited
place, and the fine level aims at the subgoal with the same memory (its visited charge is then
gated by the distance to the subgoal).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jepa_jax.planning.closed_loop import search
from jepa_jax.planning.move_memory import Remembered
from jepa_jax.planning.rollout import StepFn, unroll


@dataclasses.dataclass(frozen=True)
class HierarchyConfig:
  horizon: int  # macro actions planned by the high level
  subgoal_after: int  # the subgoal is the predicted latent after this many macro actions
  cold_restart: bool = True  # fine level: also search from a zero plan, keep the cheaper plan

  def __post_init__(self):
    for key in ('horizon', 'subgoal_after'):
      v = getattr(self, key)
      if not isinstance(v, int) or v <= 0:
        raise ValueError(f'HierarchyConfig.{key} must be a positive int, got {v!r}')
    if self.subgoal_after > self.horizon:
      raise ValueError(f'HierarchyConfig.subgoal_after={self.subgoal_after} exceeds horizon='
                       f'{self.horizon}: the subgoal must lie on the high-level plan')


def make_hierarchical_planner(plan_high, step_high: StepFn, plan_low, cfg: HierarchyConfig,
                              action_dim: int, two_scale_cost=None):
  """plan(params, z0, z_goal, key, init_plan_HA) -> (actions_HA, info), the planner protocol.

  plan_high / plan_low: planners (params, z0, z_goal, key, init_plan) -> (plan, info), built on
  step_high / the fine step (step_high is also used here to predict the subgoal).

  two_scale_cost(params, z0, fine_HA, tail_HA, z_goal) -> scalar (optional): the goal cost of a
  fine plan followed by the high plan's remaining macro actions (the tail). Given, the fine
  level makes two candidates, one aimed at the goal (as the flat planner: warm, plus a cold
  restart with cfg.cold_restart) and one at the subgoal (cold), and keeps the one whose cost to
  the *goal* is lower, counting after the fine plan the better of the tail and staying put:
  behind a wall the subgoal-aimed plan leads to the door; near the goal the goal-aimed plan is
  the more precise.
  info: cost (fine level, to its own target), high_cost (high level, to the goal), subgoal
  (latent), high_plan (H_hi, A), chose_subgoal (bool; always True without two_scale_cost).
  """
  def plan(params, z0, z_goal, key, init_plan_HA):
    k_hi, k_lo, k_cold = jax.random.split(key, 3)
    high_HA, high_info = plan_high(params, z0, z_goal, k_hi,
                                   jnp.zeros((cfg.horizon, action_dim), jnp.float32))
    traj = unroll(step_high, params, z0, high_HA[:cfg.subgoal_after])
    subgoal = jax.tree.map(lambda z: z[-1], traj)
    info = dict(high_cost=high_info['cost'], subgoal=subgoal, high_plan=high_HA)
    # the fine level's target: the subgoal, with the goal's memory when it carries one
    target = z_goal._replace(goal=subgoal) if isinstance(z_goal, Remembered) else subgoal
    if two_scale_cost is not None:
      tail_HA = high_HA[cfg.subgoal_after:]
      k_goal_cold = None  # the goal-aimed candidate as the flat planner makes it
      if cfg.cold_restart:
        k_cold, k_goal_cold = jax.random.split(k_cold)
      to_goal, goal_cost = search(plan_low, params, z0, z_goal, k_lo, k_goal_cold, init_plan_HA,
                                  cfg.cold_restart)
      to_sub, sub_info = plan_low(params, z0, target, k_cold, jnp.zeros_like(init_plan_HA))

      # The tail was planned from the subgoal; from another end state it may lead away, so
      # each candidate may also stay put after its fine plan (a tail of zeros).
      stay_HA = jnp.zeros_like(tail_HA)
      value = lambda fine_HA: jnp.minimum(two_scale_cost(params, z0, fine_HA, tail_HA, z_goal),
                                          two_scale_cost(params, z0, fine_HA, stay_HA, z_goal))
      use_sub = value(to_sub) < value(to_goal)
      actions = jnp.where(use_sub, to_sub, to_goal)
      cost = jnp.where(use_sub, sub_info['cost'], goal_cost)
      return actions, dict(info, cost=cost, chose_subgoal=use_sub)
    low_HA, cost = search(plan_low, params, z0, target, k_lo, k_cold, init_plan_HA,
                          cfg.cold_restart)
    return low_HA, dict(info, cost=cost, chose_subgoal=jnp.bool_(True))

  return plan
