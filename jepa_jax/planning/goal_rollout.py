"""Goal targets in the model's own prediction space.

A learned world model's predicted latents drift away from encoder latents even when nothing
moves (the Two Rooms model never saw a zero action). Its cost of staying on the goal for 32 steps
was 52.5, against 58.2 two pixels away (BUILD_NOTES session 5). Compared with the *encoded* goal,
every plan pays that floor, the last few pixels barely change the cost, and the planner jitters
around the goal instead of stopping on it.

`with_goal_rollout` removes that floor: the goal latent is unrolled by the same model under
zero actions, and step t of a plan is compared with step t of that goal rollout. Formally the
cost sees z_t - (g_t - g_0) against g_0, so any drift that does not depend on the actions
cancels, and a plan that starts on the goal and stays there costs exactly what z0 == goal costs
with a perfect model. Works for any cost of the form cost(z_traj, actions, z_goal) and any
latent pytree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jepa_jax.planning.move_memory import Remembered
from jepa_jax.planning.rollout import CostFn, StepFn, unroll


def goal_rollout_cost(cost_fn: CostFn) -> CostFn:
  """cost(z_traj, actions_HA, goal_traj) where goal_traj = unroll of the goal under zero actions
  (H+1 entries, goal first): `cost_fn` applied to the drift-corrected trajectory. A
  `Remembered` goal_traj keeps its memory, which is then compared with the corrected trajectory
  (its latents are encoded ones, the frame the correction brings the plan back to)."""
  def cost(z_traj, actions_HA, goal_traj):
    task = goal_traj if isinstance(goal_traj, Remembered) else None
    if task is not None:
      goal_traj = task.goal
    goal = jax.tree.map(lambda g: g[0], goal_traj)
    corrected = jax.tree.map(lambda z, g: z - (g - g[0:1]), z_traj, goal_traj)
    return cost_fn(corrected, actions_HA, goal if task is None else task._replace(goal=goal))

  return cost


def unroll_goal(step_fn: StepFn, params, z_goal, actions_HA):
  """The goal's own rollout under zero actions, as many steps as `actions_HA` has (H+1 entries,
  goal first): the target trajectory of `goal_rollout_cost`."""
  return unroll(step_fn, params, z_goal, jnp.zeros(jnp.shape(actions_HA), jnp.float32))


def goal_target(step_fn: StepFn, params, z_goal, actions_HA):
  """`unroll_goal`, also for a `Remembered` goal (its goal is unrolled, the memory rides along)."""
  if isinstance(z_goal, Remembered):
    return z_goal._replace(goal=unroll_goal(step_fn, params, z_goal.goal, actions_HA))
  return unroll_goal(step_fn, params, z_goal, actions_HA)


def corrected_cost(step_fn: StepFn, cost_fn: CostFn, params, z_traj, actions_HA, z_goal):
  """The drift-corrected cost of an already unrolled plan `z_traj` (H+1 entries) to the encoded
  goal: unrolls the goal under zero actions and applies `goal_rollout_cost`."""
  return goal_rollout_cost(cost_fn)(z_traj, actions_HA,
                                    goal_target(step_fn, params, z_goal, actions_HA))


def with_goal_rollout(make_plan, step_fn: StepFn, cost_fn: CostFn):
  """plan(params, z0, z_goal, key, init_plan_HA) built by `make_plan(step_fn, cost)` on the
  drift-corrected cost; it takes the encoded goal like any planner and unrolls it itself, over
  as many zero actions as the plan has steps."""
  plan = make_plan(step_fn, goal_rollout_cost(cost_fn))

  def plan_to_goal(params, z0, z_goal, key, init_plan_HA):
    return plan(params, z0, goal_target(step_fn, params, z_goal, init_plan_HA), key,
                init_plan_HA)

  return plan_to_goal
