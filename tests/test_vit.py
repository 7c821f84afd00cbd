"""ViT encoder (images and videos), patchify order, sin-cos embeddings, scan/remat, predictor."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.nn import pos_embed
from jepa_jax.nn.predictor import MaskedPredictor
from jepa_jax.nn.vit import VIT_SIZES, ViTEncoder, make_encoder, patchify, token_grid, vit_size

WIDTH = 32  # divisible by 8, as the 3-D sin-cos embedding needs


def _encoder(patch_size, depth=2, **kw):
  return ViTEncoder(patch_size=patch_size, width=WIDTH, depth=depth, num_heads=2, **kw)


def _init(module, *args):
  # Jitted init/apply: one XLA compile is much cheaper than eager op-by-op on a busy CPU.
  return jax.jit(module.init)(jax.random.key(0), *args)


def _images(b=2, h=16, w=16):
  return jax.random.uniform(jax.random.key(1), (b, h, w, 3), minval=-1.0, maxval=1.0)


def _videos(b=2, t=4, h=16, w=16):
  return jax.random.uniform(jax.random.key(2), (b, t, h, w, 3), minval=-1.0, maxval=1.0)


# --- Shapes ---------------------------------------------------------------------------------------

def test_image_encoder_shape_BND():
  enc = _encoder((8, 8))
  x_BHWC = _images(h=16, w=24)
  z_BND = jax.jit(enc.apply)(_init(enc, x_BHWC), x_BHWC)
  assert z_BND.shape == (2, 2 * 3, WIDTH)
  assert np.all(np.isfinite(z_BND))


def test_video_encoder_shape_BND():
  enc = _encoder((2, 8, 8))
  x_BTHWC = _videos(t=4, h=16, w=16)
  assert jax.jit(enc.apply)(_init(enc, x_BTHWC), x_BTHWC).shape == (2, 2 * 2 * 2, WIDTH)


def test_uint8_pixels_map_to_unit_range():
  # uint8 frames are scaled to [-1, 1]: 0 -> -1 and 255 -> +1 give the same output as floats.
  enc = _encoder((8, 8), depth=1)
  x_u8 = np.array(jax.random.randint(jax.random.key(3), (2, 16, 16, 3), 0, 256), np.uint8)
  params, apply = _init(enc, x_u8), jax.jit(enc.apply)
  z_u8 = apply(params, x_u8)
  z_f = apply(params, x_u8.astype(np.float32) * (2 / 255) - 1)
  np.testing.assert_allclose(z_u8, z_f, atol=1e-5)


def test_keep_idx_gathers_the_kept_tokens_BKD():
  # depth=0: no attention mixing, so the context-encoder output at kept tokens must equal the
  # full output gathered at those indices (catches off-by-one or wrong-axis gathers).
  enc = _encoder((2, 8, 8), depth=0)
  x = _videos()
  keep_BK = np.array([[0, 3, 7], [6, 1, 2]], np.int32)
  params, apply = _init(enc, x, keep_BK), jax.jit(enc.apply)
  full_BND = apply(params, x)
  kept_BKD = apply(params, x, keep_BK)
  assert kept_BKD.shape == (2, 3, WIDTH)
  np.testing.assert_allclose(kept_BKD, np.take_along_axis(np.asarray(full_BND),
                                                          keep_BK[..., None], axis=1), atol=1e-6)
  # With blocks, the kept tokens only attend to each other: different from the full pass.
  enc2 = _encoder((2, 8, 8), depth=1)
  p2, apply2 = _init(enc2, x), jax.jit(enc2.apply)
  assert not np.allclose(apply2(p2, x, keep_BK),
                         np.take_along_axis(np.asarray(apply2(p2, x)), keep_BK[..., None], 1),
                         atol=1e-4)


# --- Patchify order (golden) ----------------------------------------------------------------------

def test_patchify_image_row_major_golden():
  b, h, w, c, p = 2, 12, 16, 3, 4
  x = np.arange(b * h * w * c, dtype=np.float32).reshape(b, h, w, c)
  tokens = np.asarray(patchify(jnp.asarray(x), (p, p)))
  gh, gw = h // p, w // p
  assert tokens.shape == (b, gh * gw, p * p * c)
  for k in range(gh * gw):
    i, j = divmod(k, gw)  # token k is grid cell (k // gw, k % gw)
    np.testing.assert_array_equal(tokens[:, k], x[:, i * p:(i + 1) * p, j * p:(j + 1) * p]
                                  .reshape(b, -1))


def test_patchify_video_row_major_golden():
  b, t, h, w, c = 1, 4, 8, 12, 2
  pt, p = 2, 4
  x = np.arange(b * t * h * w * c, dtype=np.float32).reshape(b, t, h, w, c)
  tokens = np.asarray(patchify(jnp.asarray(x), (pt, p, p)))
  gt, gh, gw = t // pt, h // p, w // p
  assert tokens.shape == (b, gt * gh * gw, pt * p * p * c)
  for k in range(gt * gh * gw):
    ti, rest = divmod(k, gh * gw)
    i, j = divmod(rest, gw)
    cell = x[:, ti * pt:(ti + 1) * pt, i * p:(i + 1) * p, j * p:(j + 1) * p]
    np.testing.assert_array_equal(tokens[:, k], cell.reshape(b, -1))


# --- Sin-cos embeddings ---------------------------------------------------------------------------

def test_sincos_2d_shape_and_structure():
  emb = pos_embed.sincos_grid(16, (3, 5))
  assert emb.shape == (15, 16) and emb.dtype == np.float32
  assert np.all(np.abs(emb) <= 1.0)
  # Position (0, 0): sines 0, cosines 1 in both halves.
  np.testing.assert_array_equal(emb[0], np.tile(np.r_[np.zeros(4), np.ones(4)], 2))
  grid = emb.reshape(3, 5, 16)
  # First half encodes the row only, second half the column only.
  assert np.allclose(grid[:, :1, :8], grid[:, :, :8])
  assert np.allclose(grid[:1, :, 8:], grid[:, :, 8:])
  assert len({r.tobytes() for r in emb}) == 15  # every token distinct


def test_sincos_3d_shape_and_structure():
  emb = pos_embed.sincos_grid(32, (2, 3, 4))
  assert emb.shape == (24, 32)
  grid = emb.reshape(2, 3, 4, 32)
  # Time gets dim/2 channels, each spatial axis dim/4.
  assert np.allclose(grid[:, :1, :1, :16], grid[..., :16])      # time part: depends on t only
  assert np.allclose(grid[:1, :, :1, 16:24], grid[..., 16:24])  # row part
  assert np.allclose(grid[:1, :1, :, 24:], grid[..., 24:])      # column part
  assert not np.allclose(grid[0, ..., :16], grid[1, ..., :16])
  # Spatial frequencies of the 3-D embedding match the 2-D one at half the width.
  np.testing.assert_allclose(grid[0, ..., 16:].reshape(12, 16), pos_embed.sincos_grid(16, (3, 4)),
                             atol=1e-7)


@pytest.mark.parametrize("dim, grid, match", [
    (18, (2, 2), "width % 4"),
    (20, (2, 2, 2), "width % 8"),
    (16, (4,), "2 or 3 axes"),
])
def test_sincos_width_errors(dim, grid, match):
  with pytest.raises(ValueError, match=match):
    pos_embed.sincos_grid(dim, grid)


def test_sincos_1d_odd_dim_raises():
  with pytest.raises(ValueError, match="even"):
    pos_embed.sincos_1d(7, np.arange(3))


# --- scan / remat / dtype -------------------------------------------------------------------------

def _stack_blocks(params, depth):
  """Plain-stack params {block_i: tree} -> scanned params {blocks: tree stacked on axis 0}."""
  p = jax.tree.map(lambda a: a, params)  # copy of the nesting
  tr = p["params"]["transformer"]
  blocks = [tr.pop(f"block_{i}") for i in range(depth)]
  tr["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
  return p


DEPTH = 3


def _out_and_grad(module, x):
  # Output and d(sum out^2)/d params in one compile; remat only changes what the backward
  # pass stores, scan only how the blocks are compiled, so both must agree with the plain stack.
  loss = lambda p: jnp.sum(module.apply(p, x) ** 2)
  return jax.jit(lambda p: (module.apply(p, x), jax.grad(loss)(p)))


@pytest.fixture(scope="module")
def plain_stack():
  x = _videos(b=1)
  plain = _encoder((2, 8, 8), depth=DEPTH)
  params = _init(plain, x)
  return x, params, *_out_and_grad(plain, x)(params)


@pytest.mark.parametrize("scan, remat", [(True, False), (False, True), (True, True)])
def test_scan_and_remat_match_plain_stack(plain_stack, scan, remat):
  depth = DEPTH
  x, params, out_plain, g_plain = plain_stack
  other = _encoder((2, 8, 8), depth=depth, scan=scan, remat=remat)
  other_params = _stack_blocks(params, depth) if scan else params
  # Same parameter tree structure as the variant's own init (re-stacking is the right mapping).
  assert (jax.tree.structure(jax.eval_shape(other.init, jax.random.key(0), x))
          == jax.tree.structure(other_params))
  out_other, g_other = _out_and_grad(other, x)(other_params)
  np.testing.assert_allclose(out_other, out_plain, rtol=1e-5, atol=1e-5)
  if scan:
    g_plain = _stack_blocks(g_plain, depth)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               g_other, g_plain)


def test_bf16_compute_keeps_fp32_params():
  enc = _encoder((8, 8), dtype=jnp.bfloat16)
  x = _images()
  params = _init(enc, x)
  assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  z = jax.jit(enc.apply)(params, x)
  assert z.dtype == jnp.bfloat16
  z32 = jax.jit(_encoder((8, 8)).apply)(params, x)
  np.testing.assert_allclose(z.astype(np.float32), z32, atol=0.1)  # same function, bf16 rounding


# --- Sizes and errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, width, depth, heads", [
    ("tiny", 192, 12, 3), ("small", 384, 12, 6), ("base", 768, 12, 12),
    ("large", 1024, 24, 16), ("huge", 1280, 32, 16), ("giant", 1408, 40, 16),
])
def test_published_sizes(name, width, depth, heads):
  s = vit_size(name)
  assert (s.width, s.depth, s.num_heads) == (width, depth, heads)
  enc = make_encoder(name, (16, 16))
  assert (enc.width, enc.depth, enc.num_heads) == (width, depth, heads)


def test_giant_mlp_ratio_and_unknown_size():
  assert VIT_SIZES["giant"].mlp_ratio * 1408 == pytest.approx(6144)  # ViT-g/14 MLP width
  with pytest.raises(ValueError, match="unknown ViT size"):
    vit_size("enormous")


@pytest.mark.parametrize("shape, patch, match", [
    ((16, 16), (5, 5), "not divisible"),
    ((4, 16, 16), (3, 8, 8), "not divisible"),
    ((16, 16), (2, 8, 8), r"\(p, p\) for images"),
    ((4, 16, 16), (8, 8), r"\(t, p, p\) for videos"),
])
def test_bad_patch_sizes_raise(shape, patch, match):
  with pytest.raises(ValueError, match=match):
    token_grid(shape, patch)
  enc = _encoder(patch)
  with pytest.raises(ValueError, match=match):
    enc.init(jax.random.key(0), jnp.zeros((1, *shape, 3)))


def test_heads_must_divide_width():
  enc = ViTEncoder(patch_size=(8, 8), width=WIDTH, depth=1, num_heads=3)
  with pytest.raises(ValueError, match="num_heads"):
    enc.init(jax.random.key(0), _images())


# --- Predictor ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor_setup():
  grid = (2, 4, 4)
  pred = MaskedPredictor(grid_shape=grid, out_width=48, width=32, depth=2, num_heads=2)
  z_ctx_BCD = jax.random.normal(jax.random.key(4), (2, 5, 48))
  ctx_BC = np.array([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]], np.int32)
  tgt_BT = np.array([[20, 21, 30], [5, 6, 7]], np.int32)
  params = _init(pred, z_ctx_BCD, ctx_BC, tgt_BT)
  apply = jax.jit(pred.apply)
  return apply, params, z_ctx_BCD, ctx_BC, tgt_BT


def test_predictor_shape_BTD(predictor_setup):
  apply, params, z_ctx, ctx, tgt = predictor_setup
  out_BTD = apply(params, z_ctx, ctx, tgt)
  assert out_BTD.shape == (2, 3, 48)  # (B, n_tgt, encoder width)
  assert params["params"]["mask_token"].shape == (32,)


def test_predictions_depend_on_target_positions(predictor_setup):
  apply, params, z_ctx, ctx, tgt = predictor_setup
  out = np.asarray(apply(params, z_ctx, ctx, tgt))
  # Moving one target changes that slot's prediction.
  moved = tgt.copy()
  moved[:, 0] = [25, 8]
  out_moved = np.asarray(apply(params, z_ctx, ctx, moved))
  assert np.all(np.abs(out_moved[:, 0] - out[:, 0]).max(-1) > 1e-3)
  # Targets are tagged only by position: permuting target slots permutes predictions.
  perm = [2, 0, 1]
  np.testing.assert_allclose(apply(params, z_ctx, ctx, tgt[:, perm]), out[:, perm], atol=1e-5)
  # Two slots at the same position get the same prediction.
  dup = np.array([[20, 20, 30], [5, 5, 7]], np.int32)
  out_dup = np.asarray(apply(params, z_ctx, ctx, dup))
  np.testing.assert_allclose(out_dup[:, 0], out_dup[:, 1], atol=1e-5)


def test_predictions_depend_on_context(predictor_setup):
  apply, params, z_ctx, ctx, tgt = predictor_setup
  out = apply(params, z_ctx, ctx, tgt)
  assert not np.allclose(apply(params, z_ctx * 2.0, ctx, tgt), out, atol=1e-3)
  assert not np.allclose(apply(params, z_ctx, ctx + 1, tgt), out, atol=1e-3)
