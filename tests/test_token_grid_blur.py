"""Blurred token-map goal energy (costs.token_grid_blur, cost.pyramid in planning_eval.cost_fn)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jepa_jax.planning import costs as C


def _one_hot_map(h, w, cell, c=3):
  """Tokens (h*w, c): a 'local encoder' latent, background 0, the agent's cell (1, 2, 3)."""
  z = np.zeros((h * w, c), np.float32)
  z[cell[0] * w + cell[1]] = np.arange(1, c + 1)
  return jnp.asarray(z)


def test_blur_by_hand_on_a_three_cell_row():
  # 1 x 3 grid, sigma 1: weights exp(-d^2/2) over d = 0, 1, 2, renormalised per output cell.
  e, e4 = np.exp(-0.5), np.exp(-2.0)
  z = jnp.asarray([[0.0], [3.0], [0.0]])
  got = np.asarray(C.token_grid_blur(1.0, grid_hw=(1, 3))(z))[:, 0]
  want = [3 * e / (1 + e + e4), 3 / (1 + 2 * e), 3 * e / (1 + e + e4)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_blur_keeps_constants_and_is_linear():
  blur = C.token_grid_blur(1.5)  # 4 x 4 square grid inferred from 16 tokens
  const = jnp.full((16, 2), 7.0)
  np.testing.assert_allclose(blur(const), const, rtol=1e-6)
  a, b = jax.random.normal(jax.random.key(0), (2, 16, 2))
  np.testing.assert_allclose(blur(2 * a - b), 2 * blur(a) - blur(b), rtol=1e-5, atol=1e-5)


def test_blurred_distance_keeps_growing_where_the_raw_one_is_flat():
  """Raw |z - g| is the same for every offset >= 1 cell; blurred, it grows with the offset."""
  h = w = 8
  goal = _one_hot_map(h, w, (3, 0))
  dist = lambda f, k: float(jnp.linalg.norm(f(_one_hot_map(h, w, (3, k))) - f(goal)))
  raw = [dist(lambda z: z, k) for k in range(1, 7)]
  np.testing.assert_allclose(raw, raw[0], rtol=1e-6)
  blurred = [dist(C.token_grid_blur(2.0), k) for k in range(0, 7)]
  assert blurred[0] == 0.0 and np.all(np.diff(blurred) > 0), blurred


def test_blur_errors_name_the_fix():
  with pytest.raises(ValueError, match='sigma must be > 0'):
    C.token_grid_blur(0.0)
  with pytest.raises(ValueError, match='grid_hw'):
    C.token_grid_blur(1.0)(jnp.zeros((12, 2)))  # 12 tokens: not a square grid
  with pytest.raises(ValueError, match='cost.pyramid.sigmas'):
    C.token_grid_blur(1.0)(jnp.zeros((16,)))


def _cfg(**cost):
  from experiments.configs import plan as plan_configs
  cfg = plan_configs.get_config('debug')
  cfg.cost = ml_collections.ConfigDict(dict(metric='l2', reduction='sum', discount=1.0,
                                            average=False, final_weight=2.0, action_weight=0.0,
                                            **cost))
  return cfg


def test_cost_fn_adds_one_goal_energy_per_blur_level_by_hand():
  from jepa_jax.eval import planning_eval
  z_traj = jnp.stack([_one_hot_map(4, 4, (0, k)) for k in (0, 1, 3)])  # z0 is not scored
  goal = _one_hot_map(4, 4, (0, 0))
  a_HA = jnp.ones((2, 2))
  cfg = _cfg(pyramid=dict(sigmas=(1.0, 2.0), weights=(3.0, 0.5)))
  got = float(planning_eval.cost_fn(cfg)(z_traj, a_HA, goal))

  def energy(f):  # sum over steps + final_weight * final, l2 metric
    d = [float(jnp.linalg.norm(f(z_traj[t]) - f(goal))) for t in (1, 2)]
    return d[0] + d[1] + 2.0 * d[1]

  want = (energy(lambda z: z) + 3.0 * energy(C.token_grid_blur(1.0))
          + 0.5 * energy(C.token_grid_blur(2.0)))
  assert got == pytest.approx(want, rel=1e-5)
  no_pyramid = float(planning_eval.cost_fn(_cfg(pyramid=dict(sigmas=(), weights=())))(
      z_traj, a_HA, goal))
  assert no_pyramid == pytest.approx(energy(lambda z: z), rel=1e-6)


def test_cost_fn_pyramid_errors():
  from jepa_jax.eval import planning_eval
  with pytest.raises(ValueError, match='same length'):
    planning_eval.cost_fn(_cfg(pyramid=dict(sigmas=(1.0, 2.0), weights=(1.0,))))
  with pytest.raises(ValueError, match='position-probe'):
    planning_eval.cost_fn(_cfg(pyramid=dict(sigmas=(1.0,), weights=(1.0,))), project=lambda z: z)
