"""Probes on frozen encoder features: do the representations carry the scene's physics?

Two probes regress ground-truth ball positions and velocities; R^2 and RMSE (in pixels) are
measured on held-out videos, and the same probe on a random-init encoder is the reference a
learned encoder must beat.

* linear: ridge regression on the whole frozen token map (tokens x width, flattened), solved in
  closed form in its dual (kernel) form, the ridge strength chosen by k-fold cross-validation on
  the training split. Deterministic; it reads *where* in the map something is, which is how a
  token map stores a small object's position.
* attentive: multi-head attention pooling over the tokens, then an MLP head (V-JEPA's probe
  family). Trained by SGD on features standardised with training-split statistics (mean per
  token position, scale per channel: the role of MAE's affine-free BatchNorm before its probe),
  so the constant background and position code vanish and an object's tokens stand out. A
  small MLP scores every token (one logit per head, shared hidden layer); each head pools the
  standardised tokens together with the token's grid coordinates: *which* tokens the encoder
  marks as "the big ball" says where it is.
  Measured (BUILD_NOTES, session 4): the earlier form (LayerNorm'd raw tokens, linear key, 2000
  videos) stayed at R^2 ~ 0 even where ridge read 0.97; this one reads ball position at 0.91 from
  a random-init ViT-micro (32x32 videos, 8000 training videos). It needs that many: with 2000 it
  overfits.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm


class AttentiveProbe(nn.Module):
  """Attention pooling with per-token MLP scores, then an MLP head.

  tokens_BND: standardised token features (standardize_tokens). grid: the token grid (e.g.
  (T', H', W')), flattened in the same order as the tokens; its coordinates in [-1, 1] join the
  pooled values. None: no coordinates (position must then be in the features themselves).
  score_coords: the coordinates also enter the scores, so a head can choose tokens by where and
  *when* they are (standardisation removed the position code from the features; V-JEPA's probe
  queries see it through the position embedding). Without it a head pools an object over all
  time slices, which keeps its mean position and loses its motion.
  """
  out_dim: int
  num_heads: int = 8
  hidden: int = 128
  grid: tuple | None = None
  score_coords: bool = False

  @nn.compact
  def __call__(self, tokens_BND):
    b, n, _ = tokens_BND.shape
    values_BNV = tokens_BND
    if self.grid is not None:
      coords_NG = token_coordinates(self.grid)
      if len(coords_NG) != n:
        raise ValueError(f"probe grid {tuple(self.grid)} has {len(coords_NG)} tokens, the "
                         f"features have {n}")
      coords_BNG = jnp.broadcast_to(jnp.asarray(coords_NG, tokens_BND.dtype),
                                    (b,) + coords_NG.shape)
      values_BNV = jnp.concatenate([tokens_BND, coords_BNG], -1)
    if self.score_coords and self.grid is None:
      raise ValueError("probe.score_coords needs the token grid (grid=None given)")
    score_in = values_BNV if self.score_coords else tokens_BND
    # A nonlinear score per token breaks the uniform-softmax saddle a linear key sits in.
    h_BNF = nn.gelu(nn.Dense(self.hidden, name="score_hidden")(score_in))
    logits_BNH = nn.Dense(self.num_heads, name="score")(h_BNF)
    weights_BHN = jax.nn.softmax(jnp.swapaxes(logits_BNH, 1, 2), axis=-1)
    pooled = jnp.einsum("bhn,bnv->bhv", weights_BHN, values_BNV).reshape(b, -1)
    h = nn.gelu(nn.Dense(4 * self.hidden, name="fc1")(pooled))
    return nn.Dense(self.out_dim, name="head")(h)


def token_coordinates(grid) -> np.ndarray:
  """(prod(grid), len(grid)) coordinates in [-1, 1], row-major like the encoder's tokens."""
  axes = [np.linspace(-1.0, 1.0, g) if g > 1 else np.zeros(1) for g in grid]
  return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(grid)).astype(np.float32)


def standardize_tokens(feat_train, *others):
  """Centre per token position and scale per channel with the training split's statistics.
  Returns the standardised training features followed by each of `others`."""
  x = np.asarray(feat_train, np.float32)
  mu_ND = x.mean(0)
  sd_D = (x - mu_ND).reshape(-1, x.shape[-1]).std(0) + 1e-6
  return tuple((np.asarray(f, np.float32) - mu_ND) / sd_D for f in (x,) + others)


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
              batch_size: int, lr: float, num_heads: int, hidden: int = 128,
              grid: tuple | None = None, score_coords: bool = False,
              weight_decay: float = 0.05, seed: int = 0,
              desc: str | None = None) -> ProbeResult:
  """Trains one attentive probe jointly on all target groups (e.g. pos and vel).
  desc: shows a progress bar (with ETA) under that name."""
  groups = list(targets_train)
  y_tr = np.concatenate([targets_train[g] for g in groups], 1)
  y_te = np.concatenate([targets_test[g] for g in groups], 1)
  mu, sd = y_tr.mean(0), y_tr.std(0) + 1e-6
  x_tr, x_te = standardize_tokens(feat_train, feat_test)
  probe = AttentiveProbe(out_dim=y_tr.shape[1], num_heads=num_heads, hidden=hidden, grid=grid,
                         score_coords=score_coords)
  params = probe.init(jax.random.key(seed), jnp.asarray(x_tr[:1]))
  warmup = min(100, max(steps // 10, 1))
  tx = optax.adamw(optax.warmup_cosine_decay_schedule(lr / 10, lr, warmup, max(steps, warmup + 1)),
                   weight_decay=weight_decay)
  opt_state = tx.init(params)
  z_tr = ((y_tr - mu) / sd).astype(np.float32)

  # Features stay in host memory; each step sends only its batch to the device.
  @jax.jit
  def step(params, opt_state, x_BND, z_BO):
    def loss_fn(p):
      return jnp.mean((probe.apply(p, x_BND) - z_BO) ** 2)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  batch = min(batch_size, len(feat_train))
  for _ in tqdm(range(steps), desc=desc, disable=desc is None, mininterval=5, leave=False):
    idx = rng.integers(0, len(feat_train), batch)
    params, opt_state, _ = step(params, opt_state, x_tr[idx], z_tr[idx])
  pred = extract_features(probe.apply, params, x_te, batch_size=256) * sd + mu
  return _grouped_result(groups, targets_train, y_te, pred)


def _flat(feat) -> np.ndarray:
  return np.asarray(feat, np.float32).reshape(len(feat), -1)


def ridge_cv_lambda(k_train, z_train, rel_lambdas, folds: int, seed: int) -> float:
  """The ridge strength (absolute) with the least k-fold validation MSE of standardised targets.
  `rel_lambdas` are multiples of the mean kernel diagonal (scale-free across encoders)."""
  n = len(k_train)
  scale = float(np.mean(np.diag(k_train)))
  fold_of = np.random.default_rng(seed).permutation(n) % folds
  best, best_err = None, np.inf
  for rel in rel_lambdas:
    lam, err = rel * scale, 0.0
    for f in range(folds):
      tr, va = fold_of != f, fold_of == f
      alpha = np.linalg.solve(k_train[np.ix_(tr, tr)] + lam * np.eye(tr.sum()), z_train[tr])
      err += np.sum((k_train[np.ix_(va, tr)] @ alpha - z_train[va]) ** 2)
    if err < best_err:
      best, best_err = lam, err
  return best


def fit_linear_probe(feat_train, targets_train: dict, feat_test, targets_test: dict, *,
                     rel_lambdas=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), folds: int = 5,
                     seed: int = 0) -> ProbeResult:
  """Ridge on the flattened token map, one strength for all target groups (chosen by CV)."""
  groups = list(targets_train)
  y_tr = np.concatenate([targets_train[g] for g in groups], 1).astype(np.float64)
  y_te = np.concatenate([targets_test[g] for g in groups], 1)
  mu_y, sd_y = y_tr.mean(0), y_tr.std(0) + 1e-6
  x_tr, x_te = _flat(feat_train), _flat(feat_test)
  mu_x = x_tr.mean(0)
  x_tr, x_te = x_tr - mu_x, x_te - mu_x
  k_tr = (x_tr @ x_tr.T).astype(np.float64)  # dual form: N x N, cheap for N ~ 1e3, 1e4+ features
  z_tr = (y_tr - mu_y) / sd_y
  lam = ridge_cv_lambda(k_tr, z_tr, rel_lambdas, folds, seed)
  alpha = np.linalg.solve(k_tr + lam * np.eye(len(k_tr)), z_tr)
  pred = (x_te @ x_tr.T).astype(np.float64) @ alpha * sd_y + mu_y
  return _grouped_result(groups, targets_train, y_te, pred.astype(np.float32))


def _grouped_result(groups, targets_train, y_te, pred) -> ProbeResult:
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
