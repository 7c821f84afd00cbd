"""Losses and collapse statistics against hand-computed numbers; EMA math; schedules; wd mask."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jepa_jax import losses, state

PRED = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
TARGET = np.array([[0.0, 0.0], [0.0, 8.0]], np.float32)   # diffs 1, 2, 3, -4


# --- Latent prediction losses ---------------------------------------------------------------------

def test_l1():
  assert float(losses.latent_prediction_loss(PRED, TARGET, "l1")) == 2.5   # (1+2+3+4)/4


def test_l2():
  assert float(losses.latent_prediction_loss(PRED, TARGET, "l2")) == 7.5   # (1+4+9+16)/4


@pytest.mark.parametrize("beta, expected", [
    # diffs 0.5 and -2: beta=1 -> 0.5*0.25/1 = 0.125 (quadratic) and 2-0.5 = 1.5 (linear)
    (1.0, (0.125 + 1.5) / 2),
    # beta=2 -> 0.5*0.25/2 = 0.0625 (quadratic); |-2| is not < 2, so linear: 2-1 = 1
    (2.0, (0.0625 + 1.0) / 2),
    # beta=0.25 -> both linear: 0.5-0.125 = 0.375 and 2-0.125 = 1.875
    (0.25, (0.375 + 1.875) / 2),
])
def test_smooth_l1_both_sides_of_beta(beta, expected):
  pred, target = np.array([0.5, 0.0], np.float32), np.array([0.0, 2.0], np.float32)
  assert float(losses.latent_prediction_loss(pred, target, "smooth_l1", beta=beta)) == expected


def test_loss_in_fp32_for_bf16_inputs_and_unknown_kind():
  out = losses.latent_prediction_loss(jnp.asarray(PRED, jnp.bfloat16),
                                      jnp.asarray(TARGET, jnp.bfloat16), "l1")
  assert out.dtype == jnp.float32 and float(out) == 2.5
  with pytest.raises(ValueError, match="unknown loss kind"):
    losses.latent_prediction_loss(PRED, TARGET, "cosine")


def test_layer_norm_no_affine():
  x = np.array([[1.0, 2.0, 3.0, 4.0], [-2.0, -2.0, -2.0, -2.0]], np.float32)
  out = np.asarray(losses.layer_norm_no_affine(x))
  # Row 0: mean 2.5, (population) var 1.25 -> (x - 2.5) / sqrt(1.25 + 1e-6).
  np.testing.assert_allclose(out[0], np.array([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(1.25 + 1e-6),
                             rtol=1e-6)
  np.testing.assert_array_equal(out[1], np.zeros(4))  # constant row -> 0, no division by zero


# --- VICReg terms, collapse statistics ------------------------------------------------------------

def test_variance_loss():
  z = np.array([[0.0, 0.0], [1.0, 0.0]], np.float32)
  # Unbiased var: dim 0 -> 0.5, dim 1 -> 0; std = sqrt(var + 1e-4); hinge at gamma = 1.
  expected = ((1 - math.sqrt(0.5 + 1e-4)) + (1 - math.sqrt(1e-4))) / 2
  assert float(losses.variance_loss(z)) == pytest.approx(expected, rel=1e-6)
  # std above gamma costs nothing; leading axes are flattened into samples.
  assert float(losses.variance_loss(np.array([[[0.0], [4.0]]], np.float32))) == 0.0
  assert float(losses.variance_loss(z, gamma=0.5)) == pytest.approx(
      (0.5 - math.sqrt(1e-4)) / 2, rel=1e-6)


def test_covariance_loss():
  z = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]], np.float32)
  # Centred [[-1,-2],[0,0],[1,2]] -> cov (n-1=2) [[1,2],[2,4]]; off-diagonal 2^2 * 2 / D=2 = 4.
  assert float(losses.covariance_loss(z)) == pytest.approx(4.0, rel=1e-6)
  decorrelated = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], np.float32)
  assert float(losses.covariance_loss(decorrelated)) == 0.0


def test_effective_rank_rank1_vs_isotropic():
  rank1 = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 6.0, 9.0], [0.0, 0.0, 0.0]],
                   np.float32)
  assert float(losses.effective_rank(rank1)) == pytest.approx(1.0, abs=1e-3)
  eye = np.concatenate([np.eye(3), -np.eye(3)]).astype(np.float32)   # centred, equal singulars
  assert float(losses.effective_rank(eye)) == pytest.approx(3.0, rel=1e-4)
  # Two equal directions out of three -> 2.
  two = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], np.float32)
  assert float(losses.effective_rank(two)) == pytest.approx(2.0, rel=1e-4)


def test_feature_std_and_collapse_stats():
  z = np.array([[0.0, 1.0, 3.0], [2.0, 1.0, -1.0]], np.float32)
  np.testing.assert_allclose(losses.feature_std(z), [1.0, 0.0, 2.0], rtol=1e-6)  # population std
  stats = losses.collapse_stats(z[None], "enc")
  assert set(stats) == {"enc/std_mean", "enc/std_min", "enc/effective_rank", "enc/content_std"}
  assert float(stats["enc/content_std"]) == 0.0   # one video: nothing varies across videos
  assert float(stats["enc/std_mean"]) == pytest.approx(1.0)
  assert float(stats["enc/std_min"]) == 0.0
  assert float(stats["enc/effective_rank"]) == pytest.approx(1.0, abs=1e-3)  # 2 rows: rank 1


def test_content_std_sees_position_only_features():
  # Two videos, two token positions. Position-only features: identical across videos.
  pos_only = np.array([[[1.0, -1.0], [-1.0, 1.0]]] * 2, np.float32)
  assert float(losses.feature_std(pos_only).mean()) == pytest.approx(1.0)  # looks healthy
  assert float(losses.content_std(pos_only)) == 0.0                         # but is content-free
  content = np.array([[[0.0, 2.0], [1.0, 1.0]], [[2.0, 0.0], [3.0, 1.0]]], np.float32)
  # Per (position, dim) population std over the 2 videos: |a - b| / 2 -> 1, 1, 1, 0.
  assert float(losses.content_std(content)) == pytest.approx(0.75)


def test_per_position_vc_loss_matches_per_position_terms():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(6, 3, 4)).astype(np.float32) * np.array([0.5, 1.0, 2.0])[None, :, None]
  var, cov = losses.per_position_vc_loss(z)
  want_var = np.mean([float(losses.variance_loss(z[:, n])) for n in range(3)])
  want_cov = np.mean([float(losses.covariance_loss(z[:, n])) for n in range(3)])
  assert float(var) == pytest.approx(want_var, rel=1e-5)
  assert float(cov) == pytest.approx(want_cov, rel=1e-5)
  # Position-only features (same in every video) pay the full variance hinge at every position.
  pos_only = np.broadcast_to(rng.normal(size=(1, 3, 4)), (6, 3, 4)).astype(np.float32)
  assert float(losses.per_position_vc_loss(pos_only)[0]) == pytest.approx(1 - 0.01, abs=1e-6)


def test_focal_token_loss_by_hand():
  # Two tokens of two features; L1 token errors 1 and 3 (mean 2): weights (1/2)^2, (3/2)^2.
  pred = np.array([[[1.0, -1.0], [3.0, 3.0]]], np.float32)
  target = np.zeros_like(pred)
  fit, plain = losses.focal_token_loss(pred, target, "l1", hard_weight=2.0)
  assert float(plain) == pytest.approx(2.0)
  assert float(fit) == pytest.approx((0.25 * 1 + 2.25 * 3) / 2)
  fit0, plain0 = losses.focal_token_loss(pred, target, "l1", hard_weight=0.0)
  assert float(fit0) == float(plain0) == float(losses.latent_prediction_loss(pred, target, "l1"))


def test_focal_token_loss_has_no_gradient_through_its_weights():
  rng = np.random.default_rng(4)
  pred = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
  target = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
  grad = jax.grad(lambda p: losses.focal_token_loss(p, target, "l2", 3.0)[0])(pred)
  err = np.mean((np.array(pred) - np.array(target))**2, -1)
  weight = (err / err.mean())**3
  # d/dp of mean_tokens(w * mean_features((p - t)^2)) with w held fixed.
  want = weight[..., None] * 2 * (np.array(pred) - np.array(target)) / (10 * 3)
  np.testing.assert_allclose(np.array(grad), want, rtol=1e-4, atol=1e-7)


def _masked_content_by_hand(z_BnD, idx_Bn, gamma=1.0, eps=1e-4):
  rows, pos = z_BnD.reshape(-1, z_BnD.shape[-1]).astype(np.float64), idx_Bn.reshape(-1)
  dev = rows.copy()
  for p in np.unique(pos):
    dev[pos == p] -= rows[pos == p].mean(0)
  dof = len(rows) - len(np.unique(pos))
  std = np.sqrt((dev**2).sum(0) / dof + eps)
  cov = dev.T @ dev / dof
  return np.mean(np.maximum(gamma - std, 0.0)), np.sum((cov - np.diag(np.diag(cov)))**2) / len(cov)


def test_masked_content_vc_loss_against_a_hand_computation():
  rng = np.random.default_rng(1)
  # 5 videos, 3 of 6 positions shown each (positions 4 and 5 by one video only, one never).
  idx = np.array([[0, 1, 2], [0, 1, 3], [1, 2, 3], [0, 2, 4], [1, 3, 5]], np.int32)
  z = rng.normal(size=(5, 3, 4)).astype(np.float32) * np.array([0.3, 1.0, 2.0, 0.5])
  var, cov = losses.masked_content_vc_loss(z, idx, 7)
  want_var, want_cov = _masked_content_by_hand(z, idx)
  assert float(var) == pytest.approx(want_var, rel=1e-5)
  assert float(cov) == pytest.approx(want_cov, rel=1e-4)


def test_masked_content_vc_loss_with_every_position_shown_is_the_centred_vicreg():
  rng = np.random.default_rng(2)
  z = rng.normal(size=(8, 3, 4)).astype(np.float32)
  idx = np.broadcast_to(np.arange(3, dtype=np.int32), (8, 3))
  centred = z - z.mean(0, keepdims=True)
  # Pooled over positions, unbiased with one mean per position: n - 1 -> 24 - 3 rows.
  std = np.sqrt((centred.reshape(-1, 4)**2).sum(0) / 21 + 1e-4)
  var, _ = losses.masked_content_vc_loss(z, idx, 3)
  assert float(var) == pytest.approx(np.mean(np.maximum(1 - std, 0)), rel=1e-5)


def test_masked_content_vc_loss_ignores_position_codes():
  rng = np.random.default_rng(3)
  idx = np.stack([rng.permutation(6)[:4] for _ in range(5)]).astype(np.int32)
  code_ND = rng.normal(size=(6, 4)).astype(np.float32) * 10.0  # what every video has at a position
  content = rng.normal(size=(5, 4, 4)).astype(np.float32)
  base = losses.masked_content_vc_loss(content, idx, 6)
  with_code = losses.masked_content_vc_loss(content + code_ND[idx], idx, 6)
  np.testing.assert_allclose(np.array(with_code), np.array(base), rtol=1e-4, atol=1e-6)
  # Position codes alone pay the full variance hinge and no covariance, while variance_loss,
  # pooled over tokens, is met by them.
  var, cov = losses.masked_content_vc_loss(code_ND[idx], idx, 6)
  assert float(var) == pytest.approx(1 - 0.01, abs=1e-4)
  assert float(cov) == pytest.approx(0, abs=1e-6)
  assert float(losses.variance_loss(code_ND[idx])) < 0.1
  # Tokens reordered within each video, with their positions: the same terms.
  perm = rng.permutation(4)
  reordered = losses.masked_content_vc_loss(content[:, perm], idx[:, perm], 6)
  np.testing.assert_allclose(np.array(reordered), np.array(base), rtol=1e-5)


# --- EMA ------------------------------------------------------------------------------------------

def test_ema_update_math():
  target = {"a": np.array([1.0, -2.0], np.float32), "b": {"c": np.float32(4.0)}}
  online = {"a": np.array([3.0, 2.0], np.float32), "b": {"c": np.float32(0.0)}}
  out = state.ema_update(target, online, 0.75)
  np.testing.assert_array_equal(out["a"], [1.5, -1.0])      # 0.75 t + 0.25 o
  assert float(out["b"]["c"]) == 3.0
  # m=1 keeps the target, m=0 copies the online params.
  np.testing.assert_array_equal(state.ema_update(target, online, 1.0)["a"], target["a"])
  np.testing.assert_array_equal(state.ema_update(target, online, 0.0)["a"], online["a"])
  # The target keeps its dtype when the online params are bf16.
  mixed = state.ema_update(target, jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), online),
                           0.5)
  assert mixed["a"].dtype == jnp.float32


# --- Schedules ------------------------------------------------------------------------------------

def _optim_cfg(**kw):
  c = dict(lr=1e-3, warmup_init_lr=1e-4, final_lr=1e-6, warmup_steps=10, weight_decay=0.04,
           final_weight_decay=0.4, b1=0.9, b2=0.999, grad_clip=0.0, ema_start=0.996, ema_end=1.0)
  c.update(kw)
  return ml_collections.ConfigDict(c)


def test_lr_schedule_warmup_then_cosine():
  lr = state.lr_schedule(_optim_cfg(), 100)
  assert float(lr(0)) == pytest.approx(1e-4, rel=1e-6)
  assert float(lr(5)) == pytest.approx(5.5e-4, rel=1e-5)       # linear warmup midpoint
  assert float(lr(10)) == pytest.approx(1e-3, rel=1e-6)        # peak at end of warmup
  assert float(lr(55)) == pytest.approx((1e-3 + 1e-6) / 2, rel=1e-5)  # cosine midpoint
  assert float(lr(100)) == pytest.approx(1e-6, rel=1e-4)
  values = np.array([float(lr(s)) for s in range(101)])
  assert np.all(np.diff(values[:11]) > 0) and np.all(np.diff(values[10:]) <= 0)


def test_lr_schedule_warmup_longer_than_run_is_clipped():
  lr = state.lr_schedule(_optim_cfg(warmup_steps=50), 6)
  assert float(lr(0)) == pytest.approx(1e-4) and float(lr(5)) == pytest.approx(1e-3, rel=1e-6)


def test_wd_and_ema_ramps():
  cfg = _optim_cfg()
  wd, ema = state.wd_schedule(cfg, 100), state.ema_momentum(cfg, 100)
  assert float(wd(0)) == pytest.approx(0.04) and float(wd(100)) == pytest.approx(0.4)
  assert float(wd(50)) == pytest.approx(0.22)                   # cosine midpoint
  assert float(ema(0)) == pytest.approx(0.996)
  assert float(ema(50)) == pytest.approx(0.998)                 # linear ramp
  assert float(ema(100)) == 1.0 and float(ema(250)) == 1.0      # clamped after the run


# --- Weight decay mask ----------------------------------------------------------------------------

PARAMS = {
    "patch_embed": {"kernel": np.ones((6, 4), np.float32), "bias": np.ones(4, np.float32)},
    "norm": {"scale": np.ones(4, np.float32), "bias": np.ones(4, np.float32)},
    "mask_token": np.ones(4, np.float32),
    # nn.scan-stacked block: (depth, ...) leaves; biases and LN scales become 2-D.
    "blocks": {"fc1": {"kernel": np.ones((2, 4, 8), np.float32),
                       "bias": np.ones((2, 8), np.float32)},
               "ln1": {"scale": np.ones((2, 4), np.float32), "bias": np.ones((2, 4), np.float32)}},
}
DECAYED = {"patch_embed/kernel", "blocks/fc1/kernel"}


def _flat(tree):
  return {"/".join(k.key for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_decay_mask_kernels_only():
  mask = _flat(state.decay_mask(PARAMS))
  assert {k for k, v in mask.items() if v} == DECAYED


def test_decay_mask_on_real_models(cfg):
  from jepa_jax.train import pretrain as jepa
  for scan in (False, True):
    cfg.model.scan = scan
    models = jepa.make_models(cfg)
    maskers = jepa.make_maskers(cfg, models.grid_shape)
    abstract = jax.eval_shape(lambda k: jepa.init_state(models, cfg, k, jepa.dummy_batch(
        cfg, maskers, 1), 10).params, jax.random.key(0))
    for name, decays in _flat(state.decay_mask(abstract)).items():
      assert decays == name.endswith("kernel"), (scan, name)


def test_adamw_decays_only_masked_params():
  cfg = _optim_cfg()
  tx = state.make_optimizer(cfg, 100)
  opt_state = tx.init(PARAMS)
  zero = jax.tree.map(np.zeros_like, PARAMS)
  updates, opt_state = tx.update(zero, opt_state, PARAMS)
  new = _flat(optax.apply_updates(PARAMS, updates))
  # Zero gradients: Adam's step is 0, only decoupled weight decay p -= lr * wd * p acts.
  for name, value in new.items():
    if name in DECAYED:
      np.testing.assert_allclose(value, 1.0 - 1e-4 * 0.04, rtol=1e-7)
    else:
      np.testing.assert_array_equal(value, 1.0)
  hp = state.current_hparams(opt_state)
  assert float(hp["lr"]) == pytest.approx(1e-4) and float(hp["wd"]) == pytest.approx(0.04)


def test_current_hparams_found_inside_clip_chain():
  tx = state.make_optimizer(_optim_cfg(grad_clip=1.0), 100)
  hp = state.current_hparams(tx.init(PARAMS))
  assert float(hp["lr"]) == pytest.approx(1e-4) and float(hp["wd"]) == pytest.approx(0.04)


def test_standardize_per_position_removes_what_videos_share():
  rng = np.random.default_rng(0)
  h = rng.normal(size=(16, 5, 4)).astype(np.float32)
  out = np.asarray(losses.standardize_per_position(h))
  np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std(0), 1.0, atol=1e-3)
  # A position code (the same offset and scale for every video at a position) changes nothing.
  code = rng.normal(size=(1, 5, 4)).astype(np.float32) * 10
  shifted = np.asarray(losses.standardize_per_position(h * 3.0 + code))
  np.testing.assert_allclose(shifted, out, atol=1e-4)
  # Hand-computed: two videos, one position, one feature -> -1, +1.
  np.testing.assert_allclose(losses.standardize_per_position(np.array([[[1.0]], [[3.0]]])),
                             [[[-1.0]], [[1.0]]], atol=1e-5)
