"""Planning evaluation pieces: tasks, success metric, Wilson CI, analytic world model, the debug
preset end to end."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.envs import two_rooms as tr
from jepa_jax.eval import analytic_world_model as awm
from jepa_jax.eval import planning_tasks as T
from jepa_jax.eval.stats import wilson_interval
from jepa_jax.planning import factory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('k, n, lo, hi', [
    (0, 10, 0.0, 3.8414588 / 13.8414588),  # closed form at 0 successes: z^2 / (n + z^2)
    (10, 10, 10 / 13.8414588, 1.0),
    (5, 10, 0.2365931, 0.7634069),
    (200, 200, 200 / 203.8414588, 1.0),  # closed form at n successes: n / (n + z^2)
])
def test_wilson_interval_known_values(k, n, lo, hi):
  got = wilson_interval(k, n)
  np.testing.assert_allclose(got, (lo, hi), atol=2e-6)


@pytest.mark.parametrize('k, n', [(196, 200), (37, 50), (1, 4)])
def test_wilson_interval_is_the_score_test_inversion(k, n):
  """Independent derivation: the bounds are the roots in p of (k/n - p)^2 = z^2 p (1 - p) / n."""
  z2, ph = 1.959963984540054 ** 2, k / n
  roots = np.sort(np.roots([1 + z2 / n, -(2 * ph + z2 / n), ph * ph]).real)
  np.testing.assert_allclose(wilson_interval(k, n), roots, atol=1e-9)


def test_wilson_interval_errors():
  with pytest.raises(ValueError, match='n > 0'):
    wilson_interval(0, 0)
  with pytest.raises(ValueError, match='successes'):
    wilson_interval(11, 10)


def test_success_metric_hand_computed():
  pos_T2 = jnp.array([[40.0, 40.0], [20.0, 30.0], [10.0, 10.0]])  # only the final position counts
  assert bool(T.success(pos_T2, jnp.array([13.0, 13.0])))  # distance 4.243 < 4.5
  assert not bool(T.success(pos_T2, jnp.array([13.5, 13.0])))  # 4.610
  assert not bool(T.success(pos_T2, jnp.array([40.0, 40.0])))  # visited, but not at the end
  assert bool(T.success(pos_T2, jnp.array([11.0, 10.5]), threshold=T.PLDM_THRESHOLD))  # 1.118 < 1.414
  assert not bool(T.success(pos_T2, jnp.array([11.5, 11.0]), threshold=T.PLDM_THRESHOLD))  # 1.803
  np.testing.assert_allclose(T.final_distance(pos_T2, jnp.array([13.0, 14.0])), 5.0, rtol=1e-6)


@pytest.mark.parametrize('fixed', [True, False])
def test_tasks_start_and_goal_in_opposite_rooms(fixed):
  cfg = tr.TwoRoomsConfig(fixed_layout=fixed)
  tasks = jax.jit(T.sample_tasks, static_argnums=(1, 2))(jax.random.key(0), 128, cfg)
  assert not np.any(np.asarray(tr.same_room(tasks.state0.pos, tasks.goal_pos, tasks.state0.layout)))
  assert not np.any(np.asarray(jax.vmap(lambda p, l: tr.in_wall(p, l, cfg))(tasks.goal_pos, tasks.state0.layout)))
  rooms = np.asarray(tr.room_of(tasks.state0.pos, tasks.state0.layout))
  assert 0.3 < rooms.mean() < 0.7  # both directions
  i = 5
  np.testing.assert_allclose(tasks.goal_obs[i], tr.render_pos(tasks.goal_pos[i], tasks.state0.layout[i], cfg),
                             atol=1e-6)
  # Task i does not depend on how many tasks are drawn (chunking).
  few = jax.jit(T.sample_tasks, static_argnums=(1, 2))(jax.random.key(0), 8, cfg)
  np.testing.assert_array_equal(few.goal_pos, tasks.goal_pos[:8])


def test_analytic_encoder_reads_position_and_layout_from_the_image():
  cfg = tr.TwoRoomsConfig(fixed_layout=False)
  states = jax.vmap(lambda k: tr.reset(k, cfg))(jax.random.split(jax.random.key(1), 16))
  z = jax.jit(jax.vmap(lambda s: awm.encode(awm.init_params(), tr.render(s, cfg))))(states)
  np.testing.assert_allclose(z[:, :2], states.pos, atol=1e-3)
  np.testing.assert_allclose(z[:, 2:], states.layout, atol=1e-4)


def test_analytic_step_matches_env_and_has_finite_gradients():
  cfg = tr.TwoRoomsConfig()
  step, params = awm.make_step(cfg), awm.init_params()
  lay = tr.fixed_layout(cfg)
  z = jnp.concatenate([jnp.array([28.0, 50.0]), lay])
  for a in ([1.0, 0.5], [5.0, 0.0], [0.0, -2.0]):  # free move, into the wall, along it
    nxt = step(params, z, jnp.array(a))
    expect = tr.step(tr.EnvState(pos=z[:2], layout=lay), jnp.array(a), cfg).pos
    np.testing.assert_allclose(nxt[:2], expect, atol=1e-5)
  g = jax.grad(lambda a: jnp.sum(step(params, z, a)[:2]))(jnp.zeros(2))
  assert np.all(np.isfinite(g))


def test_factory_builds_every_planner_and_rejects_unknown_keys():
  from experiments.configs import plan as plan_configs
  cfg = plan_configs.get_config('debug')
  for name in factory.PLANNERS:
    pcfg = factory.planner_config(name, cfg.planner)
    pcfg = pcfg.cem if name == 'hybrid' else pcfg
    assert pcfg.action_low == -cfg.planner.action_bound and pcfg.horizon == cfg.planner.horizon
  cfg.planner.cem.populaton = 3
  with pytest.raises(ValueError, match='populaton'):
    factory.planner_config('cem', cfg.planner)
  with pytest.raises(ValueError, match='planners'):
    factory.planner_config('astar', cfg.planner)


@pytest.mark.parametrize('gif', [2, 0])  # plots.gif=0 turns the animation off
def test_debug_preset_end_to_end(tmp_path, gif):
  cmd = [sys.executable, '-m', 'experiments.plan', '--config=experiments/configs/plan.py:debug',
         f'--workdir={tmp_path}', '--config.planners=cem', '--config.layouts=random', '--noprogress',
         f'--config.plots.gif={gif}']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'cem       random' in out.stdout
  res = json.load(open(tmp_path / 'results.json'))['results'][0]
  assert res['episodes'] == 4 and 0.0 <= res['success_rate'] <= 1.0
  assert res['ci95'][0] <= res['success_rate'] <= res['ci95'][1]
  for f in ('traj_cem_random.png', 'table.txt'):
    assert (tmp_path / f).stat().st_size > 0
  assert (tmp_path / 'episodes_cem_random.gif').exists() == (gif > 0)
  # Every episode is saved; failures are counted by where they ended and drawn when there are any.
  ep = np.load(tmp_path / 'per_episode_cem_random.npz')
  assert ep['pos_NT2'].shape == (4, 25, 2) and ep['failure_class'].shape == (4,)
  np.testing.assert_array_equal(ep['success_N'], ep['final_dist_N'] < 4.5)
  assert sum(v['failed'] for v in res['failures'].values()) == 4 - res['successes']
  assert (tmp_path / 'failures_cem_random.png').exists() == (res['successes'] < 4)


def test_cost_fn_adds_the_action_guardrail_by_hand():
  """cost_fn = sum_t |z_t - g| + final_weight |z_H - g| + action_weight sum |a|^2 (l2 metric)."""
  import ml_collections
  from experiments.configs import plan as plan_configs
  from jepa_jax.eval import planning_eval
  cfg = plan_configs.get_config('debug')
  cfg.cost = ml_collections.ConfigDict(dict(metric='l2', reduction='sum', discount=1.0,
                                            average=False, final_weight=2.0, action_weight=0.5))
  z_TD = jnp.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])  # z_0 (start) is not scored
  a_HA = jnp.array([[1.0, 2.0], [0.0, -1.0]])
  g_D = jnp.zeros(2)
  got = float(planning_eval.cost_fn(cfg)(z_TD, a_HA, g_D))
  assert got == pytest.approx((5.0 + 10.0) + 2.0 * 10.0 + 0.5 * (1 + 4 + 1))
  cfg.cost.action_weight = 0.0
  assert float(planning_eval.cost_fn(cfg)(z_TD, a_HA, g_D)) == pytest.approx(35.0)


@pytest.mark.parametrize('goal_rollout', [False, True])
def test_build_wires_goal_rollout(goal_rollout):
  """cost.goal_rollout: on a model that drifts under zero actions, starting on the goal costs
  nothing and the plan stays; without it the plan pays the drift."""
  from experiments.configs import plan as plan_configs
  from jepa_jax.eval import planning_eval
  from jepa_jax.eval.world_models import WorldModel
  cfg = plan_configs.get_config('debug')
  cfg.cost.update(action_weight=0.1, goal_rollout=goal_rollout)
  drift = jnp.array([0.3, -0.2])
  wm = WorldModel('drifting', lambda p, obs: obs, lambda p, z, a: z + a + drift, {})
  plan, *_ = planning_eval.build(cfg, wm, 'gradient', 'fixed')
  g = jnp.array([10.0, 20.0])
  a, info = jax.jit(plan)({}, g, g, jax.random.key(0), jnp.zeros((cfg.planner.horizon, 2)))
  if goal_rollout:
    assert float(info['cost']) == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(a, 0.0, atol=1e-6)
  else:  # the best plan pushes against the drift and still pays for it
    assert float(info['cost']) > 0.1
    assert float(jnp.abs(a).max()) > 0.1


@pytest.mark.parametrize('goal_rollout', [False, True])
def test_unrolled_cost_is_what_the_config_planner_charges(goal_rollout):
  """`unrolled_cost` (used to score given plans, e.g. by scripts/diagnose_plan_failures.py)
  equals the cost the planner built by `config_planner` reports for the plan it returns, with
  and without the drift-corrected goal (a model whose zero action drifts, so the two differ)."""
  from experiments.configs import plan as plan_configs
  from jepa_jax.eval import planning_eval
  from jepa_jax.eval.world_models import WorldModel
  from jepa_jax.planning.rollout import unroll
  cfg = plan_configs.get_config('debug')
  cfg.cost.goal_rollout = goal_rollout
  wm = WorldModel('drift', lambda p, obs: obs, lambda p, z, a: z + a + 0.3, {})
  cl = planning_eval.control_config(cfg)
  step, cost = planning_eval.step_and_cost(cfg, wm, cl)
  plan = planning_eval.config_planner(cfg, 'mppi', cfg.planner, step, cost)
  z0, g = jnp.array([10.0, 20.0]), jnp.array([14.0, 17.0])
  a, info = jax.jit(plan)({}, z0, g, jax.random.key(0), jnp.zeros((cfg.planner.horizon, 2)))
  ours = planning_eval.unrolled_cost(cfg, cost, step, {}, unroll(step, {}, z0, a), a, g)
  np.testing.assert_allclose(ours, info['cost'], rtol=1e-5)
  plain = cost(unroll(step, {}, z0, a), a, g)
  assert goal_rollout == (abs(float(plain) - float(ours)) > 1e-3)


def test_build_wires_the_hierarchy_and_checks_the_subgoal_span():
  """hierarchy.enabled: the evaluated planner becomes the fine level (its plan shape), the coarse
  planner's subgoal lies on its own macro-action rollout, results are labelled, and a subgoal
  beyond the fine lookahead is refused with the keys to change."""
  from experiments.configs import plan as plan_configs
  from jepa_jax.eval import planning_eval
  from jepa_jax.eval.world_models import WorldModel
  from jepa_jax.planning import clip_norm
  cfg = plan_configs.get_config('debug')  # fine: horizon 3 x action_repeat 4 = 12 env steps
  cfg.hierarchy.update(enabled=True, horizon=4, action_repeat=6, subgoal_after=2)
  wm = WorldModel('point', lambda p, obs: obs, lambda p, z, a: z + a, {})
  plan, run, env_cfg, cl = planning_eval.build(cfg, wm, 'mppi', 'fixed')
  assert not cl.cold_restart  # the fine level restarts inside the planner, on the same subgoal
  z0, g = jnp.array([10.0, 20.0]), jnp.array([30.0, 20.0])
  a, info = jax.jit(plan)({}, z0, g, jax.random.key(0), jnp.zeros((cfg.planner.horizon, 2)))
  chex.assert_shape(a, (cfg.planner.horizon, 2))
  chex.assert_shape(info['high_plan'], (4, 2))
  # Macro actions held 6 steps on a point mass, each clipped to control.action_max_norm.
  clipped = clip_norm(info['high_plan'][:2], cfg.control.action_max_norm)
  np.testing.assert_allclose(info['subgoal'], z0 + 6.0 * clipped.sum(0), atol=1e-4)
  assert planning_eval.planner_label(cfg, 'mppi') == 'mppi+hier'
  cfg.hierarchy.subgoal_after = 3  # 18 env steps > 12
  with pytest.raises(ValueError, match='hierarchy.subgoal_after'):
    planning_eval.build(cfg, wm, 'mppi', 'fixed')
  cfg.hierarchy.update(subgoal_after=1, planner='dijkstra')
  with pytest.raises(ValueError, match='hierarchy.planner'):
    planning_eval.build(cfg, wm, 'mppi', 'fixed')


def test_ensemble_world_model_concatenates_members_and_sums_their_energies():
  """Members see the same observation and action and each moves its own slice of the
  concatenated latent; an L2-squared goal energy on it is the sum of the members' energies."""
  from jepa_jax.eval import learned_world_model as lwm
  from jepa_jax.planning import costs
  obs_shape = (4, 4, 2)
  grid = lambda o, d: jnp.broadcast_to(o.astype(jnp.float32).mean((-3, -2, -1)), (9, d))
  m1 = (lambda p, o: p * grid(o, 2), lambda p, z, a: z + p * a[0], 2.0)
  m2 = (lambda p, o: p * grid(o, 3), lambda p, z, a: z - p * a[1], 5.0)
  encode, step, params = lwm.ensemble([m1, m2], obs_shape)
  obs = jnp.full(obs_shape, 3, jnp.uint8)
  z = encode(params, obs)
  chex.assert_shape(z, (9, 5))
  a = jnp.array([0.5, 2.0])
  z1 = step(params, z, a)
  np.testing.assert_allclose(z1[:, :2], m1[1](2.0, m1[0](2.0, obs), a))
  np.testing.assert_allclose(z1[:, 2:], m2[1](5.0, m2[0](5.0, obs), a))
  energy = costs.goal_energy(metric='l2sq', reduction='final')
  traj, goal = jnp.stack([z, z1]), jnp.zeros((9, 5))
  np.testing.assert_allclose(energy(traj, None, goal),
                             energy(traj[..., :2], None, goal[:, :2])
                             + energy(traj[..., 2:], None, goal[:, 2:]), rtol=1e-6)
  m3 = (lambda p, o: jnp.zeros((4, 3)), m2[1], 1.0)
  with pytest.raises(ValueError, match='same encoder grid'):
    lwm.ensemble([m1, m3], obs_shape)
  with pytest.raises(ValueError, match='world_model.probe.frames'):
    lwm.load('runs/a,runs/b', tr.TwoRoomsConfig(), dict(frames=10, steps=1))
