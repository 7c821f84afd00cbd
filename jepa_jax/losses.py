"""Latent prediction losses, anti-collapse regularisers and collapse diagnostics (pure jnp)."""

import jax
import jax.numpy as jnp


def elementwise_prediction_loss(pred, target, kind: str = "l1", beta: float = 1.0):
  """Per element: 'l1' (V-JEPA), 'smooth_l1' (I-JEPA, Huber with `beta`), 'l2'."""
  diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
  if kind == "l1":
    return jnp.abs(diff)
  if kind == "smooth_l1":
    a = jnp.abs(diff)
    return jnp.where(a < beta, 0.5 * diff**2 / beta, a - 0.5 * beta)
  if kind == "l2":
    return diff**2
  raise ValueError(f"unknown loss kind {kind!r}; choose 'l1', 'smooth_l1' or 'l2' (config loss.kind)")


def latent_prediction_loss(pred, target, kind: str = "l1", beta: float = 1.0):
  """Mean over all elements of elementwise_prediction_loss."""
  return jnp.mean(elementwise_prediction_loss(pred, target, kind, beta))


def check_hard_weight(hard_weight: float, key: str):
  """The focal exponent (focal_token_loss, the frame JEPA's loss) must be >= 0; `key` names the
  config key in the error."""
  if not hard_weight >= 0:
    raise ValueError(f"{key}={hard_weight}: 0 (the plain mean of token errors) or a positive "
                     "exponent")


def focal_mean(err, hard_weight: float = 0.0, axis=None):
  """-> (weighted mean, plain mean) of per-token errors `err`. Each error is weighted by (it /
  the mean error over `axis`, None: all)^hard_weight, without gradient through the weight, as a
  focal loss does: rare hard tokens (moving objects among a static background, contacts) get
  more of the gradient. The weights are not renormalised, so their mean (>= 1) also scales the
  term against the others; hard_weight (>= 0) 0 is the plain mean."""
  plain = jnp.mean(err)
  if not hard_weight:
    return plain, plain
  ref = jnp.mean(err, axis=axis, keepdims=True)
  weight = jax.lax.stop_gradient((err / jnp.maximum(ref, 1e-12)) ** hard_weight)
  return jnp.mean(weight * err), plain


def focal_token_loss(pred_BND, target_BND, kind: str = "l1", hard_weight: float = 0.0):
  """-> (weighted loss, plain mean): focal_mean of the token errors (mean over features),
  relative to the mean token error of the batch."""
  return focal_mean(elementwise_prediction_loss(pred_BND, target_BND, kind).mean(-1), hard_weight)


# How targets are normalised (config.loss.target_norm): 'layer' = layer_norm_no_affine per token
# (I-JEPA/V-JEPA); 'position_batch' = standardize_per_position over the batch.
TARGET_NORMS = ("layer", "position_batch")


def standardize_per_position(h_BND, eps: float = 1e-6):
  """Standardise each (token position, feature) over the batch. What every video shares at a
  position — the position code a ViT carries from its embeddings — is removed, so a predictor
  can no longer lower its loss by reproducing positions; only content is left to predict."""
  h = h_BND.astype(jnp.float32)
  return standardize_with(h, h.mean(0, keepdims=True), h.var(0, keepdims=True), eps)


def standardize_with(h_BND, mean_1ND, var_1ND, eps: float = 1e-6):
  """(h - mean) / sqrt(var + eps): the per-position standardisation with given statistics
  (the batch's in training; statistics of training videos when scoring one video at a time)."""
  return (h_BND.astype(jnp.float32) - mean_1ND) * jax.lax.rsqrt(var_1ND + eps)


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
  n = z.shape[0]
  z = z - z.mean(0)
  return off_diagonal_penalty(z.T @ z / (n - 1))


def off_diagonal_penalty(cov_DD):
  """VICReg's covariance penalty of a (D, D) covariance matrix: squared off-diagonal entries
  summed, / D."""
  off = cov_DD - jnp.diag(jnp.diag(cov_DD))
  return jnp.sum(off**2) / cov_DD.shape[0]


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


def content_std(z_BND):
  """Std across the batch at each token position, averaged over positions and dims.

  Features that encode only where a token is (its position embedding) are perfectly predictable
  from the mask tokens; they have a healthy std over all tokens (feature_std) but no variation
  across videos at a fixed position. This is the collapse that statistic misses.
  """
  return jnp.std(z_BND.astype(jnp.float32), axis=0).mean()


def collapse_stats(z, prefix: str = "target"):
  std = feature_std(z)
  stats = {f"{prefix}/std_mean": std.mean(), f"{prefix}/std_min": std.min(),
           f"{prefix}/effective_rank": effective_rank(z)}
  if z.ndim == 3:
    stats[f"{prefix}/content_std"] = content_std(z)
  return stats


def per_position_vc_loss(z_BND):
  """VICReg variance + covariance across the batch, separately at each of N token positions,
  averaged over positions: (var, cov). Every position must vary with the video's content, so a
  position-only (content-free) encoding is penalised."""
  z_NBD = jnp.swapaxes(z_BND, 0, 1)
  var_N = jax.vmap(variance_loss)(z_NBD)
  cov_N = jax.vmap(covariance_loss)(z_NBD)
  return var_N.mean(), cov_N.mean()


def masked_content_vc_loss(z_BnD, idx_Bn, num_positions: int, gamma: float = 1.0,
                           eps: float = 1e-4):
  """VICReg variance + covariance of token content when each video shows its own subset of
  token positions (the context of tube masks): every token minus the mean of the batch's tokens
  at its position, then both terms over all those deviations pooled. -> (var, cov).

  With the per-position means removed, a position code (what every video has at a position)
  contributes nothing, so only features that vary with the video can meet the variance hinge;
  the pooled covariance keeps those features decorrelated, which holds the effective rank up.
  Degrees of freedom: the number of tokens minus the number of positions shown (one mean each),
  the unbiased pooled within-position estimate, like variance_loss's ddof=1."""
  d = z_BnD.shape[-1]
  rows = z_BnD.reshape(-1, d).astype(jnp.float32)
  pos = idx_Bn.reshape(-1)
  count_N = jnp.zeros((num_positions,), jnp.float32).at[pos].add(1.0)
  mean_ND = jnp.zeros((num_positions, d), jnp.float32).at[pos].add(rows)
  mean_ND = mean_ND / jnp.maximum(count_N, 1.0)[:, None]
  dev = rows - mean_ND[pos]
  dof = jnp.maximum(rows.shape[0] - jnp.sum(count_N > 0), 1)
  std = jnp.sqrt(jnp.sum(dev**2, axis=0) / dof + eps)
  return jnp.mean(jax.nn.relu(gamma - std)), off_diagonal_penalty(dev.T @ dev / dof)


# ----------------------------------------------------------------------------- world models

def multistep_prediction_loss(pred_BH, target_BH, kind: str = "l2"):
  """Latent prediction over a rollout: (mean loss, per-horizon loss (H,)).

  pred/target are (B, H, ...) with pred[:, k] the prediction k+1 steps ahead (or a teacher-forced
  one); each horizon is averaged over batch and features, the total over horizons.
  """
  per_step_H = jax.vmap(lambda p, t: latent_prediction_loss(p, t, kind), in_axes=(1, 1))(
      pred_BH, target_BH)
  return per_step_H.mean(), per_step_H


def temporal_smoothness_loss(z_BT):
  """Mean squared change between consecutive latents, (B, T, ...) -> scalar (PLDM's time
  similarity term): favours slowly varying features such as the agent's position."""
  d = z_BT[:, 1:].astype(jnp.float32) - z_BT[:, :-1].astype(jnp.float32)
  return jnp.mean(jnp.sum(d.reshape(*d.shape[:2], -1) ** 2, -1))


def inverse_dynamics_loss(action_pred, action_true):
  """Mean squared error of actions predicted from (z_t, z_{t+1}); keeps action-relevant
  information in the latent (PLDM / EB-JEPA)."""
  return jnp.mean((action_pred.astype(jnp.float32) - action_true.astype(jnp.float32)) ** 2)


def epps_pulley(x_NM, t_max: float = 5.0, num_points: int = 17):
  """Epps–Pulley statistic of each column of x_NM against N(0, 1), shape (M,).

  EP = N * ∫ |φ_N(t) − φ(t)|² w(t) dt with empirical characteristic function
  φ_N(t) = mean_n exp(i t x_n), φ(t) = w(t) = exp(−t²/2), trapezoid rule on `num_points`
  equally spaced knots over [−t_max, t_max] (LeJEPA's SIGReg settings: 5, 17).
  |φ_N − φ|² = (mean cos(t x) − φ)² + (mean sin(t x))².
  """
  n = x_NM.shape[0]
  t_P = jnp.linspace(-t_max, t_max, num_points)
  phi_P = jnp.exp(-0.5 * t_P**2)
  xt_NMP = x_NM.astype(jnp.float32)[..., None] * t_P
  err_MP = (jnp.cos(xt_NMP).mean(0) - phi_P) ** 2 + jnp.sin(xt_NMP).mean(0) ** 2
  return n * jnp.trapezoid(err_MP * phi_P, t_P, axis=-1)


def sigreg_loss(z, key, num_slices: int = 256, t_max: float = 5.0, num_points: int = 17):
  """SIGReg (LeJEPA): mean Epps–Pulley statistic of z (rows = samples, flattened features)
  projected on `num_slices` random unit directions; pushes z towards an isotropic Gaussian.
  Pass a fresh key every step (e.g. fold_in(seed_key, step)) so directions vary."""
  z = _flatten_rows(z)
  a_DM = jax.random.normal(key, (z.shape[1], num_slices), jnp.float32)
  a_DM = a_DM / jnp.linalg.norm(a_DM, axis=0, keepdims=True)
  return jnp.mean(epps_pulley(z @ a_DM, t_max, num_points))
