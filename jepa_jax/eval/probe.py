"""Probes on frozen encoder features: do the representations carry the scene's physics?

An attentive probe (learned queries cross-attending over the frozen tokens, then a linear head,
as in V-JEPA's evaluations) regresses ground-truth ball positions and velocities. Targets are
standardised on the probe's training split; R^2 and RMSE (in pixels) are measured on held-out
videos. The same probe on a random-init encoder is the reference a learned encoder must beat.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class AttentiveProbe(nn.Module):
  """Attention pooling with one learned query per head, then an MLP head.

  With a single query, q.(W_k x) = (W_k^T q).x: each head's query-key product is one learned
  vector, and the value projection can act after pooling. This is the same function class as
  cross-attention from a learned query (V-JEPA's attentive probe) but costs O(N D H) instead of
  O(N D^2) per example, which matters for 256-token inputs on a CPU.
  """
  out_dim: int
  num_heads: int = 4

  @nn.compact
  def __call__(self, tokens_BND):
    d = tokens_BND.shape[-1]
    x_BND = nn.LayerNorm(use_scale=False, use_bias=False, name="ln_in")(tokens_BND)
    w_HD = self.param("query_key", nn.initializers.normal(0.02), (self.num_heads, d))
    logits_BHN = jnp.einsum("bnd,hd->bhn", x_BND, w_HD) / jnp.sqrt(d)
    pooled_BHD = jnp.einsum("bhn,bnd->bhd", jax.nn.softmax(logits_BHN, axis=-1), x_BND)
    h = nn.Dense(d, name="value")(pooled_BHD).reshape(tokens_BND.shape[0], -1)
    h = nn.LayerNorm(name="ln_h")(h)
    h = nn.gelu(nn.Dense(4 * d, name="fc1")(h))
    return nn.Dense(self.out_dim, name="head")(h)


def extract_features(apply_fn, params, frames, batch_size: int = 64) -> np.ndarray:
  """Frozen features for all inputs, in jitted batches (last batch padded, then trimmed)."""
  fn = jax.jit(apply_fn)
  out = []
  for i in range(0, len(frames), batch_size):
    chunk = frames[i:i + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
    out.append(np.asarray(fn(params, chunk), np.float32)[:batch_size - pad])
  return np.concatenate(out)


def physics_targets(data: dict, frame: int | None):
  """(N, balls*2) position and velocity at `frame` (videos) or of the image itself."""
  pos, vel = data["pos"], data["vel"]
  if pos.ndim == 4:  # (N, T, balls, 2)
    if frame is None or not 0 <= frame < pos.shape[1]:
      raise ValueError(f"probe.frame={frame} outside the {pos.shape[1]} frames of the videos")
    pos, vel = pos[:, frame], vel[:, frame]
  return pos.reshape(len(pos), -1), vel.reshape(len(vel), -1)


def r2_score(y, y_hat) -> float:
  """Mean over output dimensions of 1 - SSE/SST (sklearn's 'uniform_average')."""
  sse = ((y - y_hat) ** 2).sum(0)
  sst = ((y - y.mean(0)) ** 2).sum(0)
  return float(np.mean(1 - sse / np.maximum(sst, 1e-12)))


def rmse(y, y_hat) -> float:
  return float(np.sqrt(np.mean((y - y_hat) ** 2)))


@dataclasses.dataclass
class ProbeResult:
  r2: dict           # group -> R^2 on held-out data
  rmse: dict         # group -> RMSE in the target's units (px, px/frame)
  predictions: dict  # group -> (y_true, y_pred) on held-out data


def fit_probe(feat_train, targets_train: dict, feat_test, targets_test: dict, *, steps: int,
              batch_size: int, lr: float, num_heads: int, seed: int = 0) -> ProbeResult:
  """Trains one attentive probe jointly on all target groups (e.g. pos and vel)."""
  groups = list(targets_train)
  y_tr = np.concatenate([targets_train[g] for g in groups], 1)
  y_te = np.concatenate([targets_test[g] for g in groups], 1)
  mu, sd = y_tr.mean(0), y_tr.std(0) + 1e-6
  probe = AttentiveProbe(out_dim=y_tr.shape[1], num_heads=num_heads)
  params = probe.init(jax.random.key(seed), jnp.asarray(feat_train[:1]))
  tx = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=1e-2)
  opt_state = tx.init(params)
  x_tr, z_tr = jnp.asarray(feat_train), jnp.asarray((y_tr - mu) / sd, jnp.float32)

  # Features are arguments, not closure constants: XLA would otherwise bake them into the program.
  @jax.jit
  def step(params, opt_state, x_all, z_all, idx):
    def loss_fn(p):
      return jnp.mean((probe.apply(p, x_all[idx]) - z_all[idx]) ** 2)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  batch = min(batch_size, len(feat_train))
  for _ in range(steps):
    params, opt_state, _ = step(params, opt_state, x_tr, z_tr,
                                rng.integers(0, len(feat_train), batch))
  pred = extract_features(probe.apply, params, feat_test, batch_size=256) * sd + mu
  result = ProbeResult({}, {}, {})
  start = 0
  for g in groups:
    width = targets_train[g].shape[1]
    y, y_hat = y_te[:, start:start + width], pred[:, start:start + width]
    result.r2[g], result.rmse[g] = r2_score(y, y_hat), rmse(y, y_hat)
    result.predictions[g] = (y, y_hat)
    start += width
  return result


def plot_probe(results: dict, out_png: str):
  """Predicted vs true, one column per target group, one row per encoder."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = list(results)
  groups = list(results[names[0]].predictions)
  fig, axes = plt.subplots(len(names), len(groups), figsize=(4 * len(groups), 3.6 * len(names)),
                           squeeze=False)
  for i, name in enumerate(names):
    for j, g in enumerate(groups):
      y, y_hat = results[name].predictions[g]
      ax = axes[i, j]
      ax.scatter(y.ravel(), y_hat.ravel(), s=2, alpha=0.3)
      lo, hi = float(y.min()), float(y.max())
      ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
      ax.set_title(f"{name}: {g}  R²={results[name].r2[g]:.3f}", fontsize=9)
      ax.set_xlabel("true")
      ax.set_ylabel("predicted")
  fig.tight_layout()
  fig.savefig(out_png, dpi=90)
  plt.close(fig)
  return out_png
