"""The rollout position probe reads a small agent signal under a large constant token code."""

import jax
import numpy as np

from jepa_jax.eval.rollout_probe import fit_position_probe


def _latents(n, rng, code):
  """(n, 16, 8) tokens: a constant per-token code (as a ViT's position embedding) plus a small
  Gaussian bump over the 4x4 token grid at the agent's position."""
  pos = rng.uniform(5.0, 59.0, (n, 2))
  centres = (np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing='xy'), -1).reshape(16, 2)
             * 16.0 + 8.0)
  bump = np.exp(-np.sum((pos[:, None] - centres[None]) ** 2, -1) / (2 * 12.0 ** 2))  # (n, 16)
  z = code[None] + 0.05 * bump[..., None] * np.linspace(1.0, 2.0, 8)
  return z.astype(np.float32), pos.astype(np.float32)


def test_standardised_probe_reads_small_signal_and_pure_equals_call():
  rng = np.random.default_rng(0)
  code = 10.0 * rng.standard_normal((16, 8))
  z_tr, p_tr = _latents(2048, rng, code)
  z_te, p_te = _latents(256, rng, code)
  probe = fit_position_probe(z_tr, p_tr, hidden=(64, 64), steps=600, lr=3e-3, standardize=True)
  err = np.linalg.norm(probe(z_te) - p_te, axis=-1).mean()
  spread = np.linalg.norm(p_te - p_tr.mean(0), axis=-1).mean()  # predicting the mean position
  assert err < 0.2 * spread, (err, spread)
  np.testing.assert_allclose(np.asarray(jax.jit(probe.pure())(z_te[:7])), probe(z_te[:7]),
                             rtol=1e-5, atol=1e-4)
  assert probe.z_mean.shape == (16, 8) and probe.z_std.shape == (16, 8)
