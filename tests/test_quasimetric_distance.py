"""The quasimetric goal distance (objective 'qrl'): the interval-union length by hand and against
a brute force, quasimetric laws of the head at any parameters, the QRL batch and loss by hand, a
corridor fit that composes steps into walks no recorded walk took, save -> load, config errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.nn.quasimetric import QuasimetricDistance, interval_union_length, iqe
from jepa_jax.train import goal_distance as gd


def _union_brute(x, y):
  """Exact union length of the intervals [x_j, y_j] (x_j < y_j) by merging sorted intervals."""
  spans = sorted((a, b) for a, b in zip(x, y) if b > a)
  total, cur = 0.0, None
  for a, b in spans:
    if cur is None or a > cur[1]:
      total += 0.0 if cur is None else cur[1] - cur[0]
      cur = [a, b]
    else:
      cur[1] = max(cur[1], b)
  return total + (0.0 if cur is None else cur[1] - cur[0])


def test_interval_union_length_by_hand():
  x = jnp.array([[0., 1., 5.],     # [0, 2] and [1, 3] overlap -> [0, 3]; [5, 4] is empty
                 [0., 4., 1.],     # [0, 1] and [1, 2] touch -> [0, 2]; [4, 6] apart -> 4
                 [0., 1., 2.],     # nested: [0, 10] holds the others -> 10
                 [3., 3., 3.]])    # all empty -> 0
  y = jnp.array([[2., 3., 4.], [1., 6., 2.], [10., 2., 3.], [1., 2., 3.]])
  np.testing.assert_allclose(interval_union_length(x, y), [3., 4., 10., 0.], atol=1e-6)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_interval_union_length_matches_brute_force(seed):
  rng = np.random.default_rng(seed)
  x, y = rng.normal(size=(50, 7)), rng.normal(size=(50, 7))
  got = np.asarray(interval_union_length(jnp.asarray(x), jnp.asarray(y)))
  np.testing.assert_allclose(got, [_union_brute(a, b) for a, b in zip(x, y)], atol=1e-5)


def test_interval_union_length_with_shared_endpoints_and_its_gradient():
  """Tied and touching endpoints (values on a 0.5 grid) against the brute force; the gradient is
  -1 at the union's left ends, +1 at its right ends and 0 at covered inner ends."""
  rng = np.random.default_rng(3)
  x, y = np.round(rng.normal(size=(200, 5)) * 2) / 2, np.round(rng.normal(size=(200, 5)) * 2) / 2
  got = np.asarray(interval_union_length(jnp.asarray(x), jnp.asarray(y)))
  np.testing.assert_allclose(got, [_union_brute(a, b) for a, b in zip(x, y)], atol=1e-6)
  # [0, 2] u [1, 3] u [5, 6]: ends 0 and 5 open the union, 3 and 6 close it, 1 and 2 are inside
  gx, gy = jax.grad(lambda a, b: interval_union_length(a, b), argnums=(0, 1))(
      jnp.array([0., 1., 5.]), jnp.array([2., 3., 6.]))
  np.testing.assert_allclose(gx, [-1., 0., -1.])
  np.testing.assert_allclose(gy, [0., 1., 1.])


def test_iqe_broadcasts_one_latent_against_many():
  x = jnp.zeros((2, 3))
  y = jax.random.normal(jax.random.key(0), (4, 2, 3))
  np.testing.assert_allclose(iqe(x, y, 0.5), jnp.stack([iqe(x, v, 0.5) for v in y]), rtol=1e-6)
  np.testing.assert_allclose(iqe(y, x, 0.5), jnp.stack([iqe(v, x, 0.5) for v in y]), rtol=1e-6)


def test_iqe_mixes_max_and_mean_of_components():
  x = jnp.zeros((2, 1))
  y = jnp.array([[1.], [3.]])  # components: 1 and 3
  assert float(iqe(x, y, 1.0)) == pytest.approx(3.0)
  assert float(iqe(x, y, 0.0)) == pytest.approx(2.0)
  assert float(iqe(x, y, 0.25)) == pytest.approx(0.25 * 3 + 0.75 * 2)


@pytest.mark.parametrize('shape,latent_ndim', [((16, 4), 2), ((6,), 1)])
def test_head_is_a_quasimetric_at_any_parameters(shape, latent_ndim):
  head = QuasimetricDistance(channels=(4, 8), hidden=(16,), components=6, component_dim=4,
                             latent_ndim=latent_ndim)
  z = jax.random.normal(jax.random.key(0), (3, 64) + shape)
  params = head.init(jax.random.key(1), z[0, 0], z[1, 0])
  d = jax.jit(lambda a, b: head.apply(params, a, b))
  a, b, c = z
  chex.assert_shape(d(a, b), (64,))
  np.testing.assert_allclose(d(a, a), 0.0, atol=1e-6)
  assert np.all(np.asarray(d(a, b)) >= 0)
  assert np.all(np.asarray(d(a, c)) <= np.asarray(d(a, b) + d(b, c)) + 1e-5)
  assert not np.allclose(d(a, b), d(b, a))  # free to be asymmetric
  grads = jax.grad(lambda p: jnp.sum(head.apply(p, a, b)))(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def _indexed_latents(L, G, T):
  l, g, t = np.meshgrid(np.arange(L), np.arange(G), np.arange(T), indexing='ij')
  return jnp.asarray(np.stack([l, g, t], -1), jnp.float32)


@pytest.mark.parametrize('reversible', [True, False])
def test_qrl_batch_pairs_share_a_layout_and_steps_are_recorded(reversible):
  cfg = gd.DistanceConfig(objective='qrl', reversible=reversible)
  z = _indexed_latents(5, 4, 9)
  state, goal, after, reversed_B = map(np.asarray, jax.jit(
      lambda k: gd.sample_qrl_batch(k, z, 4000, cfg))(jax.random.key(0)))
  np.testing.assert_array_equal(goal[:, 0], state[:, 0])  # same layout
  assert len(np.unique(goal[:, 1])) == 4 and goal[:, 2].max() == 8  # any walk, any frame
  np.testing.assert_array_equal(after[:, :2], state[:, :2])  # one walk
  np.testing.assert_array_equal(after[:, 2], state[:, 2] + 1)  # its next frame
  assert state[:, 2].max() == 7  # the state is the step's first frame
  here, there = map(np.asarray, gd.recorded_step(jnp.asarray(state), jnp.asarray(after),
                                                 jnp.asarray(reversed_B)))
  step = there[:, 2] - here[:, 2]
  np.testing.assert_array_equal(step, np.where(reversed_B, -1.0, 1.0))
  if reversible:
    assert abs(np.mean(step)) < 0.05
  else:
    assert not reversed_B.any()


class _Table:
  """A table-lookup 'module' d(s, g) = table[s, g] on scalar latents, split like
  QuasimetricDistance (the embedding is the latent itself); counts the embedded latents."""
  embedded = 0

  def apply(self, table, *args, method=None):
    if method == 'embed_latents':
      _Table.embedded += args[0].shape[0]
      return args[0]
    s, g = args
    return table[s.astype(jnp.int32), g.astype(jnp.int32)]


def test_qrl_loss_by_hand():
  table = jnp.array([[0., 150., 2.5], [1., 0., 0.5], [300., 0., 0.]])
  cfg = gd.DistanceConfig(objective='qrl', qrl_margin=200.0, qrl_softness=0.05)
  # (state, goal) pairs (0, 1), (2, 0): d = 150, 300. Recorded steps: state 0 -> after 2, and
  # state 2 with after 1 reversed, 1 -> 2: d = 2.5, 0.5.
  batch = (jnp.array([0., 2.]), jnp.array([1., 0.]), jnp.array([2., 1.]),
           jnp.array([False, True]))
  _Table.embedded = 0
  loss, (violation, m) = gd.qrl_loss(_Table(), table, jnp.float32(0.0), batch, cfg)
  assert _Table.embedded == 3 * 2  # state, goal and after, once each
  sp = lambda x: np.log1p(np.exp(x))
  push = np.mean([sp(0.05 * 50) / 0.05, sp(0.05 * -100) / 0.05])
  assert float(m['step_d_mean']) == pytest.approx((2.5 + 0.5) / 2)
  assert float(violation) == pytest.approx((1.5 ** 2 + 0.0) / 2)
  assert float(loss) == pytest.approx(push + np.log(2) * 1.125, rel=1e-5)
  assert float(m['dual']) == pytest.approx(np.log(2))


def test_head_split_call_equals_call():
  head = QuasimetricDistance(channels=(4,), hidden=(8,), components=4, component_dim=3)
  z = jax.random.normal(jax.random.key(0), (2, 5, 16, 4))
  params = head.init(jax.random.key(1), z[0], z[1])
  e = [head.apply(params, x, method='embed_latents') for x in z]
  assert e[0].shape == (5, 4, 3)
  np.testing.assert_allclose(head.apply(params, *e, method='from_embeddings'),
                             head.apply(params, z[0], z[1]), rtol=1e-6)


def test_qrl_fit_composes_steps_into_walks_no_walk_took():
  """A corridor of 12 cells, one-hot latents, reversible walks of 4 cells: no recorded walk
  joins cells more than 3 apart, yet the quasimetric's triangle inequality composes them, so
  d(i, j) ~ |j - i| over the whole corridor."""
  cells, T = 12, 4
  starts = np.arange(0, cells - T + 1)
  pos_GT = starts[:, None] + np.arange(T)[None, :]
  z = jnp.asarray(np.eye(cells, dtype=np.float32)[pos_GT][None])  # (1, G, T, cells)
  cfg = gd.DistanceConfig(objective='qrl', channels=(), hidden=(64,), components=8,
                          component_dim=4, steps=2000, batch_size=128, lr=3e-3, qrl_margin=30.0,
                          qrl_softness=0.5, qrl_dual_lr=0.05, qrl_tolerance=0.02)
  module, params, history = gd.fit(z, cfg, log_every=1000)
  assert len(history) == 2 and {'violation', 'dual', 'step_d_mean'} <= set(history[-1])
  eye = jnp.eye(cells)
  i, j = np.meshgrid(np.arange(cells), np.arange(cells), indexing='ij')
  i, j = i.ravel(), j.ravel()
  d = np.asarray(gd.to_steps(cfg, module.apply(params, eye[i], eye[j])))
  far = np.abs(j - i) > T - 1  # pairs no walk joins
  assert gd.spearman(d[far], np.abs(j - i)[far]) > 0.9
  # In steps: a recorded step ends a little above 1 (the constraint is a finite penalty), so
  # composed distances run somewhat long, by the same factor everywhere.
  ratio = d[far] / np.abs(j - i)[far]
  assert 0.8 < np.mean(ratio) < 1.3 and np.ptp(ratio) < 0.4, ratio
  np.testing.assert_allclose(d[i == j], 0.0, atol=1e-5)


def test_qrl_save_load_gives_steps(tmp_path):
  cfg = gd.DistanceConfig(objective='qrl', channels=(4,), hidden=(8,), components=4,
                          component_dim=3)
  module = gd.make_module(cfg, 2)
  assert isinstance(module, QuasimetricDistance)
  z = jax.random.normal(jax.random.key(0), (2, 16, 4))
  params = module.init(jax.random.key(1), z[0], z[1])
  gd.save(str(tmp_path / 'd'), cfg, params, dict(latent_shape=[16, 4], world_model_workdir='x'))
  fn, meta = gd.load(str(tmp_path / 'd'))
  assert meta['config']['objective'] == 'qrl'
  np.testing.assert_allclose(fn(z[0], z[1]), module.apply(params, z[0], z[1]), rtol=1e-6)


@pytest.mark.parametrize('key,value', [('objective', 'mc'), ('qrl_margin', 0.0),
                                       ('qrl_softness', 0.0), ('qrl_tolerance', -1.0),
                                       ('qrl_dual_lr', 0.0), ('components', 0),
                                       ('component_dim', 0)])
def test_bad_qrl_config_names_the_key(key, value):
  with pytest.raises(ValueError, match=key):
    gd.DistanceConfig(**{key: value})
