"""Two-level planning (planning/hierarchical.py): wiring on a point mass, and the case it exists
for — a wall between start and goal whose door the fine planner's horizon cannot see."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import planning as P
from jepa_jax.planning.closed_loop import repeated_step
from jepa_jax.planning.hierarchical import HierarchyConfig, make_hierarchical_planner
from jepa_jax.planning.move_memory import Remembered

DOOR_Y = (4.0, 6.0)  # the wall x = 0 is open for y in this band


def point_step(params, z, a):
  del params
  return z + a


def walled_step(params, z, a):
  """A point that cannot cross x = 0 outside the door: a crossing move stops at the wall."""
  del params
  nxt = z + a
  y_mid = 0.5 * (z[1] + nxt[1])
  left = z[0] < 0
  crosses = left != (nxt[0] < 0)
  blocked = crosses & ((y_mid < DOOR_Y[0]) | (y_mid > DOOR_Y[1]))
  return jnp.where(blocked, jnp.stack([jnp.where(left, -1e-3, 1e-3), nxt[1]]), nxt)


# Distance summed over the plan's steps: reach the goal soon and stay (a final-state cost would
# leave the high level's intermediate states, hence the subgoal, arbitrary).
l2_sum = P.goal_energy(metric='l2', reduction='sum')


def mppi(step, horizon, samples=256, iterations=6, bound=1.0):
  cfg = P.MPPIConfig(horizon=horizon, samples=samples, iterations=iterations, temperature=0.05,
                     noise_std=bound, noise_decay=0.7, action_low=-bound, action_high=bound)
  return P.make_mppi_planner(step, l2_sum, cfg)


def two_level(step, fine_horizon=3, high_horizon=6, repeat=3, subgoal_after=1, cold=True,
              tail=False):
  step_high = repeated_step(step, repeat, None)
  hcfg = HierarchyConfig(horizon=high_horizon, subgoal_after=subgoal_after, cold_restart=cold)
  two_scale = None
  if tail:
    def two_scale(p, z0, fine_HA, tail_HA, g):
      z_end = P.unroll(step, p, z0, fine_HA)[-1]
      return (P.trajectory_cost(step, l2_sum, p, z0, g, fine_HA)
              + P.trajectory_cost(step_high, l2_sum, p, z_end, g, tail_HA))
  return make_hierarchical_planner(mppi(step_high, high_horizon, samples=1024), step_high,
                                   mppi(step, fine_horizon), hcfg, action_dim=2,
                                   two_scale_cost=two_scale)


def test_subgoal_is_the_predicted_latent_after_subgoal_after_macro_actions():
  z0, goal = jnp.array([-3.0, 0.0]), jnp.array([3.0, 0.0])
  plan = jax.jit(two_level(point_step, fine_horizon=6, subgoal_after=2))
  actions, info = plan(None, z0, goal, jax.random.key(0), jnp.zeros((6, 2)))
  chex.assert_shape(actions, (6, 2))
  chex.assert_shape(info['high_plan'], (6, 2))
  # Macro actions are held 3 steps on a point mass: the subgoal is z0 + 3 * (a_1 + a_2).
  np.testing.assert_allclose(info['subgoal'], z0 + 3.0 * info['high_plan'][:2].sum(0), atol=1e-5)
  # The fine plan aims at the subgoal, and its reported cost is measured to the subgoal.
  traj = z0 + jnp.cumsum(actions, 0)
  np.testing.assert_allclose(info['cost'], np.linalg.norm(traj - info['subgoal'], axis=-1).sum(),
                             atol=1e-4)
  assert np.all(np.abs(np.asarray(actions)) <= 1.0 + 1e-6)


def test_cold_restart_never_returns_a_worse_fine_plan():
  z0, goal = jnp.array([-3.0, 0.0]), jnp.array([3.0, 0.0])
  bad_warm = jnp.full((3, 2), -1.0)  # pointing away from every reasonable subgoal
  key = jax.random.key(3)
  _, warm = jax.jit(two_level(point_step, cold=False))(None, z0, goal, key, bad_warm)
  _, both = jax.jit(two_level(point_step, cold=True))(None, z0, goal, key, bad_warm)
  np.testing.assert_allclose(both['subgoal'], warm['subgoal'])  # same high level, same key
  assert float(both['cost']) <= float(warm['cost']) + 1e-6


def run_closed_loop(plan, step, z0, goal, replans=14, execute=2):
  """Plan, execute the first `execute` actions in the true dynamics, replan."""
  plan = jax.jit(plan)
  z, warm = z0, jnp.zeros((3, 2))
  for r in range(replans):
    actions, _ = plan(None, z, goal, jax.random.key(r), warm)
    for a in actions[:execute]:
      z = step(None, z, a)
    warm = P.shift_plan(actions, execute)
  return np.asarray(z)


def test_subgoals_lead_through_the_door_the_flat_planner_cannot_see():
  """Start and goal face each other across the wall, 6 apart, door 4-6 above. With 3 steps of
  lookahead every move towards the door first moves away from the goal, so the flat planner
  stays pressed against the wall; the high level (6 macro actions of 3 steps) sees the way and
  sets a subgoal one macro action (3 steps, the fine horizon) ahead."""
  z0, goal = jnp.array([-3.0, 0.0]), jnp.array([3.0, 0.0])
  flat = run_closed_loop(mppi(walled_step, 3), walled_step, z0, goal)
  hier = run_closed_loop(two_level(walled_step), walled_step, z0, goal)
  assert flat[0] < 0.0 and np.linalg.norm(flat - goal) > 2.5, flat
  assert np.linalg.norm(hier - goal) < 0.5, hier


@pytest.mark.parametrize('tail', [False, True])
def test_tail_selection_through_the_door_and_straight_when_free(tail):
  """select='tail': behind the wall the subgoal-aimed plan (plus the high plan's tail) costs
  less and is kept, and the episode gets through the door; near the goal with a free line the
  goal-aimed plan is kept."""
  z0, goal = jnp.array([-3.0, 0.0]), jnp.array([3.0, 0.0])
  hier = run_closed_loop(two_level(walled_step, tail=tail), walled_step, z0, goal)
  assert np.linalg.norm(hier - goal) < 0.5, hier
  if tail:
    plan = jax.jit(two_level(walled_step, tail=True))
    found = 0
    for k in range(4):  # at the wall, the high level finds the door in some of its searches ...
      _, behind = plan(None, jnp.array([-1e-3, 0.0]), goal, jax.random.key(k), jnp.zeros((3, 2)))
      stay_cost = 6 * 3.0  # six macro steps, 3 from the goal
      if float(behind['high_cost']) < stay_cost - 1.0:  # ... and then its subgoal is followed
        found += 1
        assert bool(behind['chose_subgoal'])
    assert found >= 1
    near, free = jnp.array([2.0, 0.5]), jnp.array([3.0, 0.0])
    a, info = plan(None, near, free, jax.random.key(1), jnp.zeros((3, 2)))
    assert not bool(info['chose_subgoal'])
    assert np.linalg.norm(np.asarray(near + a.sum(0)) - np.asarray(free)) < 0.3


@pytest.mark.parametrize('tail', [False, True])
def test_a_remembered_goal_keeps_its_memory_at_both_levels(tail):
  """With the closed loop's memory (a Remembered goal) the high level gets it as it came, and
  every fine search gets it too: aimed at the subgoal (goal replaced) or, with the tail
  selection's goal-aimed candidate, at the goal itself."""
  seen = {'low': []}

  def high(params, z0, goal, key, init):
    seen['high'] = goal
    return jnp.ones_like(init), dict(cost=jnp.float32(0.0))

  def low(params, z0, goal, key, init):
    seen['low'].append(goal)
    return init, dict(cost=jnp.float32(0.0))

  z0, goal = jnp.array([-3.0, 0.0]), jnp.array([3.0, 0.0])
  mem = Remembered(goal, jnp.zeros((2, 2)), jnp.array([[1.0, 0.0], [0.0, 1.0]]),
                   jnp.array([1.0, 0.5]))
  step_high = repeated_step(point_step, 3, None)
  def two_scale(p, z, fine_HA, tail_HA, g):
    seen.setdefault('two_scale', []).append(g)
    return jnp.float32(0.0)

  plan = make_hierarchical_planner(high, step_high, low, HierarchyConfig(4, 2), action_dim=2,
                                   two_scale_cost=two_scale if tail else None)
  _, info = plan(None, z0, mem, jax.random.key(0), jnp.zeros((3, 2)))
  assert seen['high'] is mem
  np.testing.assert_allclose(info['subgoal'], z0 + 2 * 3.0)  # two macro actions of ones, held 3
  targets = [g.goal for g in seen['low']]
  assert all(isinstance(g, Remembered) and g.actions_MA is mem.actions_MA
             and g.shortfall_M is mem.shortfall_M for g in seen['low'])
  assert len(seen['low']) == (3 if tail else 2)  # tail: goal warm + goal cold + subgoal
  assert sum(t is goal for t in targets) == (2 if tail else 0)
  assert sum(np.allclose(t, info['subgoal']) for t in targets) == (1 if tail else 2)
  # the tail selection compares candidates by their cost to the goal, memory included
  assert all(g is mem for g in seen.get('two_scale', [])) and len(seen.get('two_scale', [])) == (
      4 if tail else 0)


def test_config_errors():
  with pytest.raises(ValueError, match='subgoal_after'):
    HierarchyConfig(horizon=2, subgoal_after=3)
  with pytest.raises(ValueError, match='horizon'):
    HierarchyConfig(horizon=0, subgoal_after=1)
