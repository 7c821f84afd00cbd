"""The memory of moves that did not happen: shortfall and penalty by hand, the ring buffer, its
path through the goal rollout and the closed loop, and the evaluation's wiring of `cost.blocked`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import plan as plan_config
from jepa_jax import planning as P
from jepa_jax.envs import two_rooms as tr
from jepa_jax.eval import analytic_world_model as awm
from jepa_jax.eval import planning_eval as PE
from jepa_jax.eval.world_models import load_world_model
from jepa_jax.planning.closed_loop import ClosedLoopConfig, make_closed_loop, planning_step
from jepa_jax.planning.goal_rollout import corrected_cost, with_goal_rollout
from jepa_jax.planning.move_memory import (Remembered, blocked_move_penalty, empty_memory,
                                           move_shortfall, remember, with_blocked_move_penalty)


def memory(starts, actions, shortfall, goal=None):
  return Remembered(goal, jnp.asarray(starts, jnp.float32), jnp.asarray(actions, jnp.float32),
                    jnp.asarray(shortfall, jnp.float32))


def test_blocked_move_penalty_by_hand():
  z_traj = jnp.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])  # actions are taken from z0 and z1
  a_HA = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  mem = memory([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]],
               [0.5, 1.0, 0.0])  # the third slot failed nothing: it must not count
  r, ra = 0.5, 1.0
  k = lambda d2, a2: np.exp(-0.5 * d2 / r ** 2 - 0.5 * a2 / ra ** 2)
  # step 0 from (0, 0) with (1, 0): slot 0 exactly (x 0.5); slot 1 at RMS^2 0.5, same action
  step0 = max(0.5 * k(0.0, 0.0), 1.0 * k(0.5, 0.0))
  # step 1 from (1, 1) with (0, 1): slot 0 RMS^2 1, |da|^2 2; slot 1 RMS^2 0.5, |da|^2 2
  step1 = max(0.5 * k(1.0, 2.0), 1.0 * k(0.5, 2.0))
  np.testing.assert_allclose(blocked_move_penalty(z_traj, a_HA, mem, r, ra), step0 + step1,
                             rtol=1e-6)


def test_blocked_move_penalty_is_bounded_by_the_steps_however_often_a_move_failed():
  mem = memory(np.zeros((10, 3)), np.zeros((10, 2)), np.ones(10))  # the same failure ten times
  got = blocked_move_penalty(jnp.zeros((5, 3)), jnp.zeros((4, 2)), mem, 1.0, 1.0)
  assert float(got) == pytest.approx(4.0)
  with pytest.raises(ValueError, match='action_radius'):
    blocked_move_penalty(jnp.zeros((5, 3)), jnp.zeros((4, 2)), mem, 1.0, 0.0)


@pytest.mark.parametrize('observed, predicted, scale, want', [
    (0.0, 2.0, 1.0, 1.0),  # predicted a move, nothing moved: a block
    (2.0, 2.0, 1.0, 0.0),  # moved as predicted
    (1.0, 2.0, 1.0, 0.5),  # half the move
    (3.0, 2.0, 1.0, 0.0),  # moved more than predicted: not a block
    (0.0, 0.5, 1.0, 0.5),  # a predicted move below the scale counts in proportion
])
def test_move_shortfall_by_hand(observed, predicted, scale, want):
  start, still = jnp.zeros(4), jnp.full((4,), 7.0)  # drift of the still rollout is not a move
  got = move_shortfall(start, still + predicted, still, jnp.full((4,), observed), scale)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_remember_fills_a_ring_oldest_first():
  mem = empty_memory(jnp.zeros(2), 3, 2)
  for i in range(5):
    mem = remember(mem, jnp.full((2,), float(i)), jnp.full((2,), -float(i)), i / 10, i)
  starts, actions, short, written = mem
  np.testing.assert_array_equal(starts[:, 0], [3.0, 4.0, 2.0])  # slots 0 and 1 overwritten
  np.testing.assert_array_equal(actions[:, 0], [-3.0, -4.0, -2.0])
  np.testing.assert_allclose(short, [0.3, 0.4, 0.2])
  with pytest.raises(ValueError, match='slots'):
    empty_memory(jnp.zeros(2), 0, 2)


def test_with_blocked_move_penalty_adds_the_weighted_penalty_and_needs_a_memory():
  base = P.goal_energy('l2sq', 'sum')
  cost = with_blocked_move_penalty(base, weight=3.0, radius=0.5, action_radius=1.0)
  z_traj, a = jnp.array([[0.0], [1.0], [2.0]]), jnp.ones((2, 1))
  mem = memory([[0.0]], [[1.0]], [1.0], goal=jnp.array([2.0]))
  want = base(z_traj, a, mem.goal) + 3.0 * blocked_move_penalty(z_traj, a, mem, 0.5, 1.0)
  np.testing.assert_allclose(cost(z_traj, a, mem), want, rtol=1e-6)
  with pytest.raises(TypeError, match='Remembered'):
    cost(z_traj, a, mem.goal)


def drifting_step(params, z, a_A):
  del params
  return z + a_A + 0.3  # a drift that does not depend on the action


def test_goal_rollout_carries_the_memory_and_charges_the_corrected_trajectory():
  base = P.goal_energy('l2', 'sum')
  cost = with_blocked_move_penalty(base, weight=2.0, radius=0.4, action_radius=0.8)
  z0 = jnp.array([0.0, 0.0])
  mem = memory([[1.0, 0.0], [9.0, 9.0]], [[1.0, 0.0], [0.0, 1.0]], [1.0, 1.0],
               goal=jnp.array([3.0, 0.0]))
  a_HA = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.5]])
  z_traj = P.unroll(drifting_step, None, z0, a_HA)
  got = corrected_cost(drifting_step, cost, None, z_traj, a_HA, mem)
  # by hand: the drift (0.3 per step) is removed before both the goal energy and the penalty
  corrected = z_traj - 0.3 * jnp.arange(4.0)[:, None]
  want = base(corrected, a_HA, mem.goal) + 2.0 * blocked_move_penalty(corrected, a_HA, mem, 0.4,
                                                                       0.8)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # a planner built on it takes the Remembered goal like any other goal
  cfg = P.MPPIConfig(horizon=3, samples=8, iterations=2, action_low=-1.0, action_high=1.0)
  plan = jax.jit(with_goal_rollout(lambda st, co: P.make_mppi_planner(st, co, cfg),
                                   drifting_step, cost))
  actions, info = plan(None, z0, mem, jax.random.key(0), jnp.zeros((3, 2)))
  assert actions.shape == (3, 2) and np.isfinite(float(info['cost']))


ENV = tr.TwoRoomsConfig(size=32, border=3, wall_padding=10, door_padding=3, door_half_height=3)
CL = ClosedLoopConfig(episode_steps=12, replan_every=1, horizon=2, action_repeat=2,
                      action_max_norm=1.8, move_memory=3, move_scale=0.5)
PUSH_RIGHT = jnp.array([1.8, 0.0])


def run_pushing_right(state0):
  """A 'planner' that always pushes right and reports the memory it was handed."""
  def plan(params, z0, goal, key, init_plan_HA):
    del params, z0, key
    assert isinstance(goal, Remembered)
    return jnp.broadcast_to(PUSH_RIGHT, init_plan_HA.shape), dict(cost=jnp.sum(goal.shortfall_M))

  step = planning_step(awm.make_step(ENV), CL)  # with walls=False params: blind to walls
  run = jax.jit(make_closed_loop(awm.encode, plan, lambda s, a: tr.step(s, a, ENV),
                                 lambda s: tr.render(s, ENV), CL, predict=step))
  goal_obs = tr.render(state0, ENV)
  return run(awm.init_params(walls=False), jax.random.key(1), state0, goal_obs)


def test_closed_loop_remembers_the_pushes_the_wall_stopped():
  layout = tr.fixed_layout(ENV)
  x_wall = float(tr.wall_bounds(layout, ENV)[0])
  # start in the left room level with the wall (not the door), 6 px from it: the first push
  # moves freely, the ones after it are stopped by the wall the model does not see
  state0 = tr.EnvState(pos=jnp.array([x_wall - 6.0, 6.0]), layout=layout)
  ep = run_pushing_right(state0)
  assert float(ep.plan_cost_R[0]) == 0.0  # nothing remembered before the first block
  assert float(ep.plan_cost_R[1]) < 0.5  # the first push went (mostly) through
  assert float(ep.plan_cost_R[-1]) > 2.5  # three pushes into the wall, each ~fully blocked
  assert np.all(np.diff(np.asarray(ep.states.pos)[-4:, 0]) == 0.0)  # and they were


def test_closed_loop_needs_the_prediction_for_a_memory():
  with pytest.raises(ValueError, match='predict'):
    make_closed_loop(awm.encode, None, None, None, CL)
  with pytest.raises(ValueError, match='move_memory'):
    ClosedLoopConfig(move_memory=-1)


def debug_cfg(**blocked):
  cfg = plan_config.get_config('debug')
  cfg.cost.blocked.update(blocked)
  return cfg


def test_memory_off_by_default_on_with_a_weight_and_on_in_the_learned_preset():
  assert PE.control_config(debug_cfg()).move_memory == 0
  cl = PE.control_config(debug_cfg(weight=5.0))
  assert cl.move_memory == cl.num_replans and cl.move_scale == 0.3  # slots 0: the whole episode
  assert PE.control_config(debug_cfg(weight=5.0, slots=4)).move_memory == 4
  assert PE.control_config(plan_config.get_config('cpu_learned')).move_memory > 0


@pytest.mark.parametrize('kw, key', [(dict(weight=1.0, radius=0.0), 'radius'),
                                     (dict(weight=1.0, action_radius=-1.0), 'action_radius'),
                                     (dict(weight=1.0, slots=-2), 'slots')])
def test_blocked_config_errors_name_the_key(kw, key):
  with pytest.raises(ValueError, match=f'cost.blocked.{key}'):
    PE.control_config(debug_cfg(**kw))


def test_evaluation_runs_with_the_memory_under_the_hierarchy():
  """cost.blocked with hierarchy.enabled: both levels plan with the memory (planning/
  hierarchical.py), the closed loop keeps it, and an evaluation runs."""
  cfg = debug_cfg(weight=2.0)
  cfg.control.cold_restart = True  # the hierarchy moves it into the fine level
  cfg.hierarchy.update(enabled=True, horizon=3, action_repeat=4, subgoal_after=1)
  cfg.episodes, cfg.chunk = 2, 2
  wm = load_world_model(cfg.world_model, PE.env_config(cfg, 'fixed'))
  _, _, _, cl = PE.build(cfg, wm, 'mppi', 'fixed')
  assert cl.move_memory == cl.num_replans and not cl.cold_restart  # fine restarts in the planner
  res = PE.evaluate(cfg, wm, 'mppi', 'fixed', progress=False)
  assert res.pos_NT2.shape == (2, cfg.control.episode_steps + 1, 2)
  assert np.all(np.isfinite(res.plan_cost_NR))


def test_evaluation_runs_with_the_memory():
  cfg = debug_cfg(weight=2.0)
  cfg.episodes, cfg.chunk = 2, 2
  res = PE.evaluate(cfg, load_world_model(cfg.world_model, PE.env_config(cfg, 'fixed')), 'mppi',
                    'fixed', progress=False)
  assert res.pos_NT2.shape == (2, cfg.control.episode_steps + 1, 2)
  assert np.all(np.isfinite(res.plan_cost_NR)) and res.replan_latency_s > 0
