"""Goal-conditioned distance: head shapes, hindsight goal sampling, the TD/expectile loss by hand,
a fit on a corridor whose distances are known, save -> load, walks grouped by layout, the
planning cost term, and the debug experiment end to end on a debug world model."""

import json
import math
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.data import two_rooms_walks as walks
from jepa_jax.envs import two_rooms
from jepa_jax.nn.heads import GoalDistance
from jepa_jax.planning import costs
from jepa_jax.train import goal_distance as gd


@pytest.mark.parametrize('shape,latent_ndim,lead', [
    ((16, 4), 2, ()), ((3, 16, 4), 2, (3,)), ((5, 4), 2, ()),  # tokens: a grid, or not square
    ((6,), 1, ()), ((5, 6), 1, (5,))])  # vectors
def test_head_shapes_and_nonnegative(shape, latent_ndim, lead):
  z = jax.random.normal(jax.random.key(0), shape)
  g = jax.random.normal(jax.random.key(1), shape)
  head = GoalDistance(channels=(4, 8), hidden=(8,), latent_ndim=latent_ndim)
  params = head.init(jax.random.key(2), z, g)
  d = head.apply(params, z, g)
  chex.assert_shape(d, lead)
  assert np.all(np.asarray(d) >= 0)


def _indexed_latents(L, G, T):
  """z[l, g, t] = (l, g, t) as floats, so a sampled latent names where it came from."""
  l, g, t = np.meshgrid(np.arange(L), np.arange(G), np.arange(T), indexing='ij')
  return jnp.asarray(np.stack([l, g, t], -1), jnp.float32)


def test_goal_sampling_invariants():
  cfg = gd.DistanceConfig(goal_self=0.2, goal_same_walk=0.4)
  z = _indexed_latents(5, 4, 9)
  s, s_next, goal, is_self, ahead = jax.jit(
      lambda k: gd.sample_batch(k, z, 4000, cfg))(jax.random.key(0))
  s, s_next, goal, is_self, ahead = map(np.asarray, (s, s_next, goal, is_self, ahead))
  np.testing.assert_array_equal(s_next, s + [0, 0, 1])  # the next state of the same walk
  assert np.all(s[:, 2] <= 7)
  np.testing.assert_array_equal(goal[:, 0], s[:, 0])  # goals always share the layout
  np.testing.assert_array_equal(goal[is_self], s[is_self])
  same = ahead > 0
  np.testing.assert_array_equal(goal[same, 1], s[same, 1])  # the same walk, later
  np.testing.assert_array_equal(goal[same, 2] - s[same, 2], ahead[same])
  assert np.all(ahead[~same] == -1) and not np.any(same & is_self)
  np.testing.assert_allclose([is_self.mean(), same.mean()], [0.2, 0.4], atol=0.03)
  other = ~same & ~is_self
  assert other.sum() > 1000 and np.all(goal[other, 1] != s[other, 1])  # another walk


class _Table:
  """A 'module' whose distance is a table lookup d(s, g) = params[s, g] (scalar latents)."""

  def apply(self, params, s, g):
    return params[s.astype(jnp.int32), g.astype(jnp.int32)]


def test_td_loss_by_hand():
  cfg = gd.DistanceConfig(discount=0.9, expectile=0.25)
  params = jnp.array([[0.0, 2.0, 5.0], [1.0, 0.0, 3.0], [4.0, 4.0, 0.0]])
  target = params + 1.0
  s, s_next, goal = jnp.array([0, 0, 1]), jnp.array([1, 1, 2]), jnp.array([2, 0, 2])
  is_self = jnp.array([False, True, False])
  ahead = jnp.array([-1, -1, 1])
  loss, _ = gd.td_loss(_Table(), params, target, (s, s_next, goal, is_self, ahead), cfg)
  # row 0: y = 1 + 0.9 * target[1, 2] = 1 + 0.9 * 4 = 4.6, d = 5 -> u = -0.4, weight 0.75
  # row 1: the goal is the state: y = 0, d = params[0, 0] = 0 -> u = 0
  # row 2: TD y = 1 + 0.9 * target[2, 2] = 1.9, walked 1 step -> y = min(1.9, 1) = 1,
  #        d = params[1, 2] = 3 -> u = -2, weight 0.75
  want = (0.75 * 0.16 + 0.0 + 0.75 * 4.0) / 3
  assert float(loss) == pytest.approx(want, rel=1e-6)


def test_spearman_gives_ties_their_mean_rank():
  assert gd.spearman([0, 0, 1, 2], [0, 1, 2, 3]) == pytest.approx(
      np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1])
  assert gd.spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)


def test_steps_from_discounted_inverts_the_discounted_count():
  n = jnp.array([0.0, 1.0, 7.0, 50.0])
  d = (1 - 0.97 ** n) / (1 - 0.97)
  np.testing.assert_allclose(gd.steps_from_discounted(d, 0.97), n, atol=1e-3)


def test_fit_learns_corridor_distances():
  """A corridor of 12 cells, one-hot latents; walks step right one cell per step. Within one
  layout several walks start at different cells, so TD stitches them: d(i, j) ~ j - i."""
  cells, T = 12, 6
  starts = np.arange(0, cells - T + 1)  # 7 walks, one per start cell
  pos_GT = starts[:, None] + np.arange(T)[None, :]
  z = jnp.asarray(np.eye(cells, dtype=np.float32)[pos_GT][None])  # (1, G, T, cells)
  cfg = gd.DistanceConfig(channels=(), hidden=(64, 64), steps=1500, batch_size=128, lr=3e-3,
                          discount=0.95, expectile=0.3, polyak=0.05, goal_same_walk=0.5)
  module, params, history = gd.fit(z, cfg, log_every=500)
  assert len(history) == 3 and history[-1]['step'] == 1500
  eye = jnp.eye(cells)
  i, j = np.triu_indices(cells - 1, k=1)  # forward pairs; the last cell is never a state
  d = np.asarray(gd.steps_from_discounted(module.apply(params, eye[i], eye[j]), cfg.discount))
  # Forward distances: ordered like the truth, and close to it where walks cover them.
  assert gd.spearman(d, j - i) > 0.95
  i, j = np.triu_indices(cells - 1, k=0)
  d = np.asarray(gd.steps_from_discounted(module.apply(params, eye[i], eye[j]), cfg.discount))
  near = (j - i) <= 4
  np.testing.assert_allclose(d[near], (j - i)[near], atol=0.8)


def test_save_load_roundtrip_and_missing_dir(tmp_path):
  cfg = gd.DistanceConfig(channels=(4,), hidden=(8,))
  module = gd.make_module(cfg, 2)
  z = jax.random.normal(jax.random.key(0), (2, 16, 4))
  params = module.init(jax.random.key(1), z[0], z[1])
  gd.save(str(tmp_path / 'd'), cfg, params, dict(latent_shape=[16, 4], world_model_workdir='x'))
  fn, meta = gd.load(str(tmp_path / 'd'))
  assert meta['world_model_workdir'] == 'x' and meta['config']['channels'] == [4]
  np.testing.assert_allclose(fn(z[0], z[1]),
                             gd.steps_from_discounted(module.apply(params, z[0], z[1]),
                                                      cfg.discount), rtol=1e-6)
  with pytest.raises(FileNotFoundError, match='experiments.goal_distance'):
    gd.load(str(tmp_path / 'nothing'))


@pytest.mark.parametrize('key,value', [('discount', 1.0), ('expectile', 0.0), ('polyak', 0.0),
                                       ('goal_self', 0.7), ('steps', 0)])
def test_bad_config_names_the_key(key, value):
  kw = {key: value}
  if key == 'goal_self':
    kw['goal_same_walk'] = 0.5
  with pytest.raises(ValueError, match=key):
    gd.DistanceConfig(**kw)


def test_unknown_config_key_is_named():
  with pytest.raises(ValueError, match=r"unknown keys \['expectle'\]"):
    gd.DistanceConfig.from_dict({'expectle': 0.2})


def test_geodesic_px():
  env = two_rooms.TwoRoomsConfig(size=64)
  lay = np.array([[31.5, 32.0]] * 3)
  a = np.array([[10.0, 32.0], [10.0, 10.0], [20.0, 32.0]])
  b = np.array([[50.0, 32.0], [20.0, 10.0], [40.0, 32.0]])
  got = gd.geodesic_px(a, b, lay, env)
  np.testing.assert_allclose(got, [40.0, 10.0, 20.0], atol=1e-6)
  # Around the wall: from (20, 10) to (43, 10) via the door gap's nearest point (31.5, 29).
  far = gd.geodesic_px(np.array([[20.0, 10.0]]), np.array([[43.0, 10.0]]), lay[:1], env)
  assert far[0] == pytest.approx(2 * math.hypot(11.5, 32 - 3 - 10), rel=1e-6)


def test_geodesic_agreement_of_the_true_path_length_and_its_scale():
  """A 'distance' that is twice the true path length (latents carry position and layout):
  rank correlation 1 overall and across rooms, 2 units per px."""
  env = two_rooms.TwoRoomsConfig(size=64)
  rng = np.random.default_rng(0)
  L, G, T = 4, 3, 20
  lay_LG2 = np.broadcast_to(np.stack([rng.uniform(25, 38, L), rng.uniform(20, 44, L)], -1)[:, None],
                            (L, G, 2))
  pos = rng.uniform(4, 60, (L, G, T, 2))
  z = np.concatenate([pos, np.broadcast_to(lay_LG2[:, :, None], (L, G, T, 2))], -1)
  true2 = lambda a, b: 2 * gd.geodesic_px(np.asarray(a)[:, :2], np.asarray(b)[:, :2],
                                          np.asarray(a)[:, 2:], env)
  a = gd.geodesic_agreement(true2, z, pos, lay_LG2, env, pairs=500)
  assert a['spearman'] == pytest.approx(1.0) and a['spearman_cross_room'] == pytest.approx(1.0)
  assert a['units_per_px'] == pytest.approx(2.0) and 0.2 < a['cross_room_share'] < 0.8


def test_walks_in_layouts_share_a_layout_and_do_not_depend_on_chunking():
  cfg = walks.WalksConfig(env=two_rooms.TwoRoomsConfig(size=64, fixed_layout=False))
  a = walks.generate_walks_in_layouts(jax.random.key(3), cfg, 3, 2, 5, chunk=2)
  b = walks.generate_walks_in_layouts(jax.random.key(3), cfg, 3, 2, 5, chunk=1)
  chex.assert_shape(a['obs'], (3, 2, 5, 64, 64, 2))
  chex.assert_shape(a['act'], (3, 2, 4, 2))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  np.testing.assert_array_equal(a['layout'][:, 0], a['layout'][:, 1])
  assert len({tuple(x) for x in a['layout'][:, 0]}) > 1  # layouts differ between groups
  assert not np.array_equal(a['state'][:, 0], a['state'][:, 1])  # walks differ within one
  with pytest.raises(ValueError, match='walks_per_layout'):
    walks.generate_walks_in_layouts(jax.random.key(3), cfg, 3, 0, 5)


def test_learned_goal_distance_cost_final_and_sum():
  dist = lambda z, g: jnp.sum(jnp.abs(z - g))
  z_traj = jnp.array([[0.0], [1.0], [3.0], [2.0]])
  g = jnp.array([2.0])
  a = jnp.zeros((3, 2))
  assert float(costs.learned_goal_distance(dist)(z_traj, a, g)) == pytest.approx(0.0)
  assert float(costs.learned_goal_distance(dist, 'sum')(z_traj, a, g)) == pytest.approx(2.0)
  with pytest.raises(ValueError, match='reduction'):
    costs.learned_goal_distance(dist, 'mean')
  # floor: only the part above it is charged; distances 1, 1, 0 over the plan
  assert float(costs.learned_goal_distance(dist, 'sum', floor=0.5)(z_traj, a, g)) == pytest.approx(1.0)
  assert float(costs.learned_goal_distance(dist, 'final', floor=0.5)(z_traj + 3, a, g)) == pytest.approx(2.5)
  with pytest.raises(ValueError, match='floor'):
    costs.learned_goal_distance(dist, floor=-1.0)


def test_debug_experiment_then_planning_with_the_distance(tmp_path):
  """A debug world model, the goal_distance debug experiment on it, then a debug planning
  evaluation whose cost includes the distance; a distance fitted on another model is refused.

  Runs in a child process without the session's persistent compilation cache: when its debug
  world-model train step (8-device all-reduces) was cached, test_world_model_train later loaded
  that executable and deadlocked in XLA's CPU collective rendezvous (the session aborted; passes
  with the cache off)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = ('import runpy, sys; runpy.run_path(sys.argv[1])["_end_to_end"](sys.argv[2])')
  env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE='false')
  proc = subprocess.run([sys.executable, '-c', code, os.path.abspath(__file__), str(tmp_path)],
                        cwd=root, capture_output=True, text=True, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'end to end ok' in proc.stdout


def _end_to_end(tmp):
  import pathlib
  tmp_path = pathlib.Path(tmp)
  from jepa_jax.train import goal_distance_job as exp
  from experiments.configs import goal_distance as gd_configs
  from experiments.configs import plan as plan_configs
  from jepa_jax.eval import planning_eval as E
  from jepa_jax.eval.world_models import load_world_model
  wm_dir, dist_dir = str(tmp_path / 'wm'), str(tmp_path / 'dist')
  subprocess.run([sys.executable, '-m', 'experiments.world_model',
                  '--config=experiments/configs/world_model.py:debug',
                  '--config.probe.enabled=False', f'--workdir={wm_dir}'], check=True,
                 capture_output=True)

  dc = gd_configs.get_config('debug')
  dc.world_model_workdir = wm_dir
  meta = exp.run(dc, dist_dir)
  for f in ('goal_distance.json', 'curves.png', 'maps.png'):
    assert os.path.exists(os.path.join(dist_dir, f)), f
  saved = json.load(open(os.path.join(dist_dir, 'goal_distance.json')))
  assert saved['held_out'] == json.loads(json.dumps(meta['held_out']))
  assert set(saved['held_out']) >= {'learned distance (steps)', 'latent L2'}
  with pytest.raises(FileExistsError, match='--overwrite'):
    exp.run(dc, dist_dir)
  bad = gd_configs.get_config('debug')
  bad.world_model_workdir = wm_dir
  bad.data.update(cross_wall_rate=0.9, wall_push_rate=0.5)
  with pytest.raises(ValueError, match='config.data.cross_wall_rate'):
    exp.run(bad, str(tmp_path / 'bad'))
  assert not os.path.exists(tmp_path / 'bad' / 'goal_distance.json')

  pc = plan_configs.get_config('debug')
  pc.episodes, pc.chunk = 2, 2
  pc.world_model.update(kind='learned', workdir=wm_dir)
  pc.cost.distance.update(workdir=dist_dir, weight=1.0)
  wm = load_world_model(pc.world_model, E.env_config(pc, 'random'))
  r = E.evaluate(pc, wm, 'mppi', 'random', progress=False)
  assert r.n == 2 and np.all(np.isfinite(r.final_dist_N))
  # The plan cost includes the distance term: it changes with the weight.
  distance_fn, _ = gd.load(dist_dir)
  z = wm.encode(wm.params, two_rooms.render(two_rooms.reset(jax.random.key(0), E.env_config(
      pc, 'random')), E.env_config(pc, 'random')))
  z_traj, a_HA = jnp.stack([z, z + 0.1]), jnp.zeros((1, 2))
  base = E.cost_fn(pc, None)(z_traj, a_HA, z)
  with_d = E.cost_fn(pc, None, E.distance_term(pc))(z_traj, a_HA, z)
  assert float(with_d - base) == pytest.approx(float(distance_fn(z + 0.1, z)), rel=1e-5)
  pc.cost.distance.floor = 0.5  # only the distance above the floor is charged
  with_floor = E.cost_fn(pc, None, E.distance_term(pc))(z_traj, a_HA, z)
  assert float(with_floor - base) == pytest.approx(
      max(float(distance_fn(z + 0.1, z)) - 0.5, 0.0), rel=1e-5, abs=1e-6)
  pc.cost.distance.floor = -1.0
  with pytest.raises(ValueError, match='cost.distance.floor'):
    E.distance_term(pc)
  pc.cost.distance.floor = 0.0

  # The quasimetric objective end to end: fitted, saved with its pictures, planned with.
  qc = gd_configs.get_config('debug')
  qc.world_model_workdir = wm_dir
  qc.distance.update(objective='qrl', components=4, component_dim=3)
  qrl_dir = str(tmp_path / 'dist_qrl')
  qmeta = exp.run(qc, qrl_dir)
  assert 'violation' in qmeta['history'][-1] and os.path.exists(os.path.join(qrl_dir, 'maps.png'))
  qrl_fn, saved_q = gd.load(qrl_dir)
  assert saved_q['config']['objective'] == 'qrl'
  pc.cost.distance.workdir = qrl_dir
  with_q = E.cost_fn(pc, None, E.distance_term(pc))(z_traj, a_HA, z)
  assert float(with_q - base) == pytest.approx(float(qrl_fn(z + 0.1, z)), rel=1e-5)
  r = E.evaluate(pc, wm, 'mppi', 'random', progress=False)
  assert r.n == 2 and np.all(np.isfinite(r.final_dist_N))
  pc.cost.distance.workdir = dist_dir

  pc.world_model.workdir = str(tmp_path / 'another_wm')
  with pytest.raises(ValueError, match='fitted on the latents'):
    E.distance_term(pc)
  pc.cost.distance.workdir = ''
  with pytest.raises(ValueError, match='cost.distance.workdir'):
    E.distance_term(pc)
  print('end to end ok')


@pytest.mark.parametrize('preset', ['debug', 'cpu_default', 'cpu_qrl'])
def test_presets_give_valid_distance_configs(preset):
  from experiments.configs import goal_distance as gd_configs
  c = gd_configs.get_config(preset)
  cfg = gd.DistanceConfig.from_dict(c.distance)
  assert cfg.steps > 0 and c.data.length >= 2
  assert c.data.cross_wall_rate + c.data.wall_push_rate <= 1.0


def test_unknown_goal_distance_preset_names_the_choices():
  from experiments.configs import goal_distance as gd_configs
  with pytest.raises(ValueError, match="'debug', 'cpu_default' or 'cpu_qrl'"):
    gd_configs.get_config('nope')
