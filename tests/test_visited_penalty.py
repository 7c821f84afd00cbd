"""The charge for returning to visited places while far from the goal: the penalty and its gate by
hand, which slots count as visited (the closed loop's stand-in before the first block does not),
the cost wrapper, and the evaluation's wiring of `cost.visited`."""

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
from jepa_jax.planning.move_memory import (Remembered, VisitedPenalty, blocked_move_penalty,
                                           empty_memory, remember, visited_penalty,
                                           with_blocked_move_penalty)


def memory(starts, written=None, goal=None):
  starts = jnp.asarray(starts, jnp.float32)
  M = starts.shape[0]
  return Remembered(goal, starts, jnp.zeros((M, 2)), jnp.zeros((M,)),
                    None if written is None else jnp.asarray(written, jnp.float32))


K = lambda d, r: np.exp(-0.5 * d ** 2 / r ** 2)  # the kernel, 1-D latents (RMS = |d|)


def test_visited_penalty_by_hand():
  # present latent 20 away from the goal (fully on), three plan steps; slot 2 never written
  z_traj = jnp.array([[20.0], [0.0], [3.5], [9.0]])
  mem = memory([[0.0], [3.0], [9.0]], written=[1.0, 1.0, 0.0])
  got = visited_penalty(z_traj, 3, mem, jnp.array([0.0]), radius=1.0, gate=(1.0, 2.0))
  want = 1.0 + K(0.5, 1.0) + K(6.0, 1.0)  # max over written slots per step; 9 -> 9 is not one
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # every slot written: step 3 now lands on slot 2
  got_all = visited_penalty(z_traj, 3, memory([[0.0], [3.0], [9.0]], [1.0, 1.0, 1.0]),
                            jnp.array([0.0]), 1.0, (1.0, 2.0))
  np.testing.assert_allclose(got_all, 1.0 + K(0.5, 1.0) + 1.0, rtol=1e-6)


@pytest.mark.parametrize('present, on', [(0.5, 0.0), (1.0, 0.0), (2.0, 0.5), (3.0, 1.0),
                                         (50.0, 1.0)])
def test_visited_penalty_is_off_near_the_goal_and_ramps_to_full(present, on):
  z_traj = jnp.array([[present], [0.0]])  # one plan step landing exactly on the visited place
  got = visited_penalty(z_traj, 1, memory([[0.0]], [1.0]), jnp.array([0.0]), 1.0, (1.0, 3.0))
  np.testing.assert_allclose(got, on, atol=1e-6)


def test_visited_penalty_is_bounded_by_the_steps():
  z_traj = jnp.zeros((5, 3))
  mem = memory(jnp.zeros((7, 3)), jnp.ones(7))  # seven visits to the same place
  got = visited_penalty(z_traj, 4, mem, jnp.full((3,), 100.0), 0.5, (0.1, 0.2))
  np.testing.assert_allclose(got, 4.0, rtol=1e-6)


def test_remember_marks_written_slots_and_a_stand_in_is_not_a_visit():
  mem = empty_memory(jnp.zeros(2), 3, 2)
  assert np.all(np.asarray(mem[3]) == 0)
  mem = remember(mem, jnp.ones(2), jnp.ones(2), 0.0, -1, written=False)
  mem = remember(mem, jnp.ones(2), jnp.ones(2), 0.0, 0)
  np.testing.assert_array_equal(mem[3], [1.0, 0.0, 0.0])


def test_with_blocked_move_penalty_adds_the_weighted_visit_charge():
  base = P.goal_energy('l2sq', 'sum')
  z_traj, a = jnp.array([[4.0], [1.0], [2.0]]), jnp.ones((2, 1))
  mem = Remembered(jnp.array([0.0]), jnp.array([[1.0], [2.0]]), jnp.array([[1.0], [-1.0]]),
                   jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0]))
  visited = VisitedPenalty(weight=5.0, radius=0.5, gate=(1.0, 2.0))
  cost = with_blocked_move_penalty(base, 3.0, 0.5, 1.0, visited=visited)
  want = (base(z_traj, a, mem.goal) + 3.0 * blocked_move_penalty(z_traj, a, mem, 0.5, 1.0)
          + 5.0 * visited_penalty(z_traj, 2, mem, mem.goal, 0.5, (1.0, 2.0)))
  np.testing.assert_allclose(cost(z_traj, a, mem), want, rtol=1e-6)
  assert float(visited_penalty(z_traj, 2, mem, mem.goal, 0.5, (1.0, 2.0))) == pytest.approx(2.0)
  # weight 0 for the blocked moves: only the visits are charged
  only = with_blocked_move_penalty(base, 0.0, 0.5, 1.0, visited=visited)
  np.testing.assert_allclose(only(z_traj, a, mem), base(z_traj, a, mem.goal) + 10.0, rtol=1e-6)


@pytest.mark.parametrize('kw, match', [(dict(weight=-1.0), 'weight'), (dict(radius=0.0), 'radius'),
                                       (dict(gate=(0.9, 0.8)), 'gate'),
                                       (dict(gate=(-0.1, 0.8)), 'gate')])
def test_visited_penalty_config_errors(kw, match):
  with pytest.raises(ValueError, match=match):
    VisitedPenalty(**{'weight': 1.0, **kw})


ENV = tr.TwoRoomsConfig(size=32, border=3, wall_padding=10, door_padding=3, door_half_height=3)
CL = ClosedLoopConfig(episode_steps=12, replan_every=1, horizon=2, action_repeat=2,
                      action_max_norm=1.8, move_memory=4, move_scale=0.5)


def test_closed_loop_marks_one_visit_per_executed_block():
  """The planner is handed the blocks executed so far as visits; the stand-in written before the
  first block is not one, and the ring holds at most `move_memory` of them."""
  def plan(params, z0, goal, key, init_plan_HA):
    del params, z0, key
    return jnp.zeros_like(init_plan_HA) + 1.0, dict(cost=jnp.sum(goal.written_M))

  step = planning_step(awm.make_step(ENV), CL)
  run = jax.jit(make_closed_loop(awm.encode, plan, lambda s, a: tr.step(s, a, ENV),
                                 lambda s: tr.render(s, ENV), CL, predict=step))
  state0 = tr.EnvState(pos=jnp.array([6.0, 6.0]), layout=tr.fixed_layout(ENV))
  ep = run(awm.init_params(), jax.random.key(0), state0, tr.render(state0, ENV))
  np.testing.assert_array_equal(ep.plan_cost_R, [0, 1, 2, 3, 4, 4])


def debug_cfg(blocked=2.0, **visited):
  cfg = plan_config.get_config('debug')
  cfg.cost.blocked.weight = blocked
  cfg.cost.visited.update(visited)
  return cfg


def test_visited_config_is_off_by_default_on_in_the_learned_preset_and_read_from_cost_visited():
  assert PE.visited_section(debug_cfg()) is None
  assert PE.visited_section(plan_config.get_config('cpu_learned')).weight > 0
  assert PE.visited_section(debug_cfg(weight=7.0, radius=0.2, gate=(0.5, 0.7))) == VisitedPenalty(
      7.0, 0.2, (0.5, 0.7))


@pytest.mark.parametrize('visited, match', [
    (dict(weight=1.0, radius=-1.0), 'cost.visited: .*radius'),
    (dict(weight=1.0, gate=(0.5,)), 'cost.visited.gate'),
    (dict(weight=1.0, gate=('near', 'far')), 'cost.visited.gate'),
    (dict(weight=1.0, gate=(0.9, 0.8)), 'cost.visited: .*gate'),
])
def test_visited_config_errors_name_the_key(visited, match):
  with pytest.raises(ValueError, match=match):
    PE.visited_section(debug_cfg(**visited))


def test_visited_penalty_needs_to_know_which_slots_were_written():
  with pytest.raises(ValueError, match='written_M'):
    visited_penalty(jnp.zeros((2, 1)), 1, Remembered(None, jnp.zeros((3, 1)), jnp.zeros((3, 2)),
                                                     jnp.zeros(3)), jnp.ones(1), 1.0, (0.1, 0.2))


@pytest.mark.parametrize('blocked', [2.0, 0.0])
def test_the_evaluation_cost_adds_the_visit_charge_with_or_without_the_failed_move_charge(blocked):
  """cost_fn with cost.visited on costs weight * visited_penalty more than with it off, and the
  closed loop keeps the memory it reads even when cost.blocked is off."""
  on, off = debug_cfg(blocked, weight=4.0, radius=0.5, gate=(0.1, 0.2)), debug_cfg(blocked)
  assert PE.control_config(on).move_memory == PE.control_config(on).num_replans
  z_traj, a = jnp.array([[3.0, 3.0], [0.0, 0.0], [1.0, 1.0]]), jnp.zeros((2, 2))
  mem = Remembered(jnp.array([5.0, 5.0]), jnp.zeros((2, 2)), jnp.zeros((2, 2)), jnp.zeros(2),
                   jnp.array([1.0, 0.0]))  # one written slot, right under the first plan step
  charge = visited_penalty(z_traj, 2, mem, mem.goal, 0.5, (0.1, 0.2))
  assert float(charge) > 1.0
  cost_off = PE.cost_fn(off)(z_traj, a, mem) if blocked else PE.cost_fn(off)(z_traj, a, mem.goal)
  np.testing.assert_allclose(PE.cost_fn(on)(z_traj, a, mem), cost_off + 4.0 * charge, rtol=1e-5)


def test_visited_config_refuses_unknown_keys():
  cfg = debug_cfg(weight=1.0)
  cfg.cost.visited.unlock()
  cfg.cost.visited.radious = 0.3
  with pytest.raises(ValueError, match="unknown keys \\['radious'\\]"):
    PE.visited_section(cfg)


def test_evaluation_runs_with_the_visit_charge():
  cfg = debug_cfg(weight=5.0, gate=(0.0, 0.1))
  cfg.episodes, cfg.chunk = 2, 2
  res = PE.evaluate(cfg, load_world_model(cfg.world_model, PE.env_config(cfg, 'fixed')), 'mppi',
                    'fixed', progress=False)
  assert res.pos_NT2.shape == (2, cfg.control.episode_steps + 1, 2)
  assert np.all(np.isfinite(res.plan_cost_NR))
