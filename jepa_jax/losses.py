"""Latent prediction losses, anti-collapse regularisers and collapse diagnostics (pure jnp)."""

import jax
import jax.numpy as jnp


def latent_prediction_loss(pred, target, kind: str = "l1", beta: float = 1.0):
  """Mean over all elements. 'l1' (V-JEPA), 'smooth_l1' (I-JEPA, Huber with `beta`), 'l2'."""
  diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
  if kind == "l1":
    return jnp.mean(jnp.abs(diff))
  if kind == "smooth_l1":
    a = jnp.abs(diff)
    return jnp.mean(jnp.where(a < beta, 0.5 * diff**2 / beta, a - 0.5 * beta))
  if kind == "l2":
    return jnp.mean(diff**2)
  raise ValueError(f"unknown loss kind {kind!r}; choose 'l1', 'smooth_l1' or 'l2' (config loss.kind)")


def layer_norm_no_affine(x, eps: float = 1e-6):
  """Targets are layer-normed without learned scale/shift (F.layer_norm in I-JEPA/V-JEPA)."""
  x = x.astype(jnp.float32)
  mean = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps)


def _flatten_rows(z):
  return z.reshape(-1, z.shape[-1]).astype(jnp.float32)


def variance_loss(z, gamma: float = 1.0, eps: float = 1e-4):
  """VICReg variance term: mean over dims of relu(gamma - std_d), unbiased variance as in VICReg
  (torch's x.var(dim=0)) and as covariance_loss below."""
  std = jnp.sqrt(_flatten_rows(z).var(0, ddof=1) + eps)
  return jnp.mean(jax.nn.relu(gamma - std))


def covariance_loss(z):
  """VICReg covariance term: sum of squared off-diagonal covariances / D."""
  z = _flatten_rows(z)
  n, d = z.shape
  z = z - z.mean(0)
  cov = z.T @ z / (n - 1)
  off = cov - jnp.diag(jnp.diag(cov))
  return jnp.sum(off**2) / d


def feature_std(z):
  """Per-dimension std across samples; collapse shows as this going to 0."""
  return jnp.std(_flatten_rows(z), axis=0)


def effective_rank(z, eps: float = 1e-7, max_rows: int = 2048):
  """RankMe (Garrido et al. 2023): exp(entropy of normalised singular values) of the centred
  feature matrix. Ranges 1 (fully collapsed) .. min(N, D). Uses the first `max_rows` rows so
  the SVD stays small (and gathers little) at pod-scale batches."""
  z = _flatten_rows(z)[:max_rows]
  s = jnp.linalg.svd(z - z.mean(0), compute_uv=False)
  p = s / (s.sum() + eps) + eps
  return jnp.exp(-jnp.sum(p * jnp.log(p)))


def collapse_stats(z, prefix: str = "target"):
  std = feature_std(z)
  return {f"{prefix}/std_mean": std.mean(), f"{prefix}/std_min": std.min(),
          f"{prefix}/effective_rank": effective_rank(z)}
