"""World-model loss terms against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import losses


def test_multistep_prediction_loss_hand_value():
  pred = np.zeros((2, 3, 2), np.float32)
  target = np.zeros((2, 3, 2), np.float32)
  target[:, 0] = 1.0          # horizon 1: every element off by 1 -> mse 1
  target[0, 2, 0] = 2.0       # horizon 3: one of 4 elements off by 2 -> mse 4/4 = 1
  target[1, 2, 1] = 2.0       # ... and another -> mse 8/4 = 2
  total, per_h = losses.multistep_prediction_loss(jnp.asarray(pred), jnp.asarray(target))
  np.testing.assert_allclose(per_h, [1.0, 0.0, 2.0], rtol=1e-6)
  np.testing.assert_allclose(total, 1.0, rtol=1e-6)
  total_l1, per_h_l1 = losses.multistep_prediction_loss(jnp.asarray(pred), jnp.asarray(target),
                                                        "l1")
  np.testing.assert_allclose(per_h_l1, [1.0, 0.0, 1.0], rtol=1e-6)


def test_temporal_smoothness_hand_value():
  z = np.array([[[0.0, 0.0], [1.0, 2.0], [1.0, 2.0]]], np.float32)  # (B=1, T=3, F=2)
  # steps: (1, 2) -> 1 + 4 = 5 ; (0, 0) -> 0 ; mean over the 2 transitions = 2.5
  np.testing.assert_allclose(losses.temporal_smoothness_loss(jnp.asarray(z)), 2.5, rtol=1e-6)


def test_inverse_dynamics_hand_value():
  pred = jnp.array([[1.0, 0.0], [0.0, 0.0]])
  true = jnp.array([[0.0, 0.0], [0.0, 2.0]])
  np.testing.assert_allclose(losses.inverse_dynamics_loss(pred, true), (1 + 4) / 4, rtol=1e-6)


def test_vicreg_terms_hand_values():
  z = jnp.array([[0.0, 0.0], [2.0, 2.0]])  # unbiased var per dim = 2, std = sqrt(2) > 1
  np.testing.assert_allclose(losses.variance_loss(z, eps=0.0), 0.0, atol=1e-7)
  z_small = jnp.array([[0.0, 0.0], [1.0, 0.0]])  # std (0.7071, 0) -> hinge (0.2929, 1)
  np.testing.assert_allclose(losses.variance_loss(z_small, eps=0.0),
                             ((1 - np.sqrt(0.5)) + 1.0) / 2, rtol=1e-5)
  # cov = [[2, 2], [2, 2]]: off-diagonal squares 4 + 4, divided by D = 2 -> 4
  np.testing.assert_allclose(losses.covariance_loss(z), 4.0, rtol=1e-6)


def _epps_pulley_by_hand(x, t_max=5.0, n_pts=17):
  """Complex empirical characteristic function and an explicit trapezoid sum."""
  t = np.linspace(-t_max, t_max, n_pts)
  ecf = np.exp(1j * np.outer(x, t)).mean(0)
  phi = np.exp(-t**2 / 2)
  f = np.abs(ecf - phi) ** 2 * phi
  dt = t[1] - t[0]
  return len(x) * dt * (f.sum() - 0.5 * (f[0] + f[-1]))


def test_epps_pulley_tiny_case():
  x = np.array([[0.0, 1.0], [0.5, -1.0], [-2.0, 0.3]], np.float32)  # (N=3, M=2)
  got = np.asarray(losses.epps_pulley(jnp.asarray(x)))
  want = [_epps_pulley_by_hand(x[:, m].astype(np.float64)) for m in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # One sample at 0: |1 - phi|^2 phi integrated, times N = 1.
  t = np.linspace(-5, 5, 17)
  f = (1 - np.exp(-t**2 / 2)) ** 2 * np.exp(-t**2 / 2)
  np.testing.assert_allclose(losses.epps_pulley(jnp.zeros((1, 1))), np.trapezoid(f, t),
                             rtol=1e-5)


def test_sigreg_uses_unit_projections_and_detects_collapse():
  key = jax.random.key(0)
  z = jax.random.normal(jax.random.key(1), (2048, 8))
  # By hand with the same directions.
  a = np.asarray(jax.random.normal(key, (8, 4)))
  a = a / np.linalg.norm(a, axis=0, keepdims=True)
  proj = np.asarray(z) @ a
  want = np.mean([_epps_pulley_by_hand(proj[:, m].astype(np.float64)) for m in range(4)])
  np.testing.assert_allclose(losses.sigreg_loss(z, key, num_slices=4), want, rtol=1e-4)
  gauss = float(losses.sigreg_loss(z, key))
  collapsed = float(losses.sigreg_loss(jnp.zeros_like(z) + 0.01 * z, key))
  assert gauss < 1.0 < collapsed  # N(0, I) scores O(1); a collapsed batch scores O(N)


@pytest.mark.parametrize("fn", [lambda z: losses.sigreg_loss(z, jax.random.key(0), 8),
                                losses.temporal_smoothness_loss])
def test_losses_have_finite_gradients(fn):
  z = jax.random.normal(jax.random.key(3), (4, 3, 5))
  g = jax.grad(lambda z: fn(z))(z)
  assert np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)).sum() > 0
