"""World-model modules: encoder/predictor shapes, frame causality, rollouts, stride and latents."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jepa_jax.nn import dynamics
from jepa_jax.nn.convnet import ConvEncoder, encode_frames, make_frame_encoder, space_to_depth
from jepa_jax.nn.heads import Expander, InverseDynamics, PositionProbe

B, T, N, D, A = 2, 5, 4, 6, 2


def _enc_cfg(**kw):
  base = dict(kind="simple", channels=(4, 4), space_to_depth=2, blocks_per_stage=1, out_dim=3,
              vector=False, vit_size="micro", patch_size=8)
  return ml_collections.ConfigDict({**base, **kw})


@pytest.mark.parametrize("kw,tokens", [
    (dict(), 16),                                     # 32x32 -s2d-> 16 -> 8 -> 4: 4x4 map
    (dict(vector=True, out_dim=5), 1),
    (dict(kind="impala", space_to_depth=1), 64),      # 32 -> 16 -> 8
])
def test_conv_encoder_shapes(kw, tokens):
  enc = make_frame_encoder(_enc_cfg(**kw))
  x = np.zeros((3, 32, 32, 2), np.uint8)
  params = enc.init(jax.random.key(0), x)
  z = enc.apply(params, x)
  chex.assert_shape(z, (3, tokens, kw.get("out_dim", 3)))
  z_clip = encode_frames(enc, params, np.zeros((2, 4, 32, 32, 2), np.uint8))
  chex.assert_shape(z_clip, (2, 4, tokens, kw.get("out_dim", 3)))


def test_vit_frame_encoder_option():
  enc = make_frame_encoder(_enc_cfg(kind="vit", patch_size=16, out_dim=8))
  x = np.zeros((1, 32, 32, 2), np.uint8)
  z = enc.apply(enc.init(jax.random.key(0), x), x)
  chex.assert_shape(z, (1, 4, 8))


def test_space_to_depth_is_a_permutation():
  x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
  y = np.asarray(space_to_depth(jnp.asarray(x), 2))
  assert y.shape == (2, 2, 2, 12)
  np.testing.assert_array_equal(np.sort(y.ravel()), np.sort(x.ravel()))
  np.testing.assert_array_equal(y[0, 0, 0, :3], x[0, 0, 0])
  np.testing.assert_array_equal(y[0, 0, 0, 3:6], x[0, 0, 1])


def test_bad_encoder_kind_names_the_key():
  with pytest.raises(ValueError, match="model.encoder.kind"):
    make_frame_encoder(_enc_cfg(kind="resnet"))


def _inputs(seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.normal(k1, (B, T, N, D)), jax.random.normal(k2, (B, T, A))


PREDICTORS = {
    "recurrent_residual": lambda: dynamics.RecurrentPredictor(A, hidden=16, cell="residual"),
    "recurrent_gru": lambda: dynamics.RecurrentPredictor(A, hidden=16, cell="gru"),
    "conv": lambda: dynamics.ConvPredictor(A, width=8, kernels=(3, 3, 1)),
    "transformer": lambda: dynamics.BlockCausalPredictor(A, width=16, depth=2, num_heads=2),
    "transformer_ctx2": lambda: dynamics.BlockCausalPredictor(A, width=16, depth=2, num_heads=2,
                                                              max_context=2),
}


def _init(pred, z, a):
  params = pred.init(jax.random.key(1), z, a)
  # Zero-initialised output layers make every predictor the identity at init: perturb them so
  # causality tests see real dependence on the inputs.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  return jax.tree.unflatten(tree, [l + 0.3 * jax.random.normal(k, l.shape)
                                   for l, k in zip(leaves, keys)])


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_predictor_shapes_and_step(name):
  pred = PREDICTORS[name]()
  z, a = _inputs()
  params = _init(pred, z, a)
  out = pred.apply(params, z, a)
  chex.assert_shape(out, (B, T, N, D))
  chex.assert_tree_all_finite(out)
  step = pred.apply(params, z[:, 0], a[:, 0], method="step")
  chex.assert_shape(step, (B, N, D))
  # Frame 0 sees only itself, so the one-frame step equals the teacher-forced output at t=0.
  np.testing.assert_allclose(step, out[:, 0], rtol=1e-5, atol=1e-5)
  unbatched = pred.apply(params, z[0, 0], a[0, 0], method="step")
  np.testing.assert_allclose(unbatched, out[0, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PREDICTORS))
@pytest.mark.parametrize("t", [0, 2])
def test_predictor_frame_causality(name, t):
  """Output at frame t must not change when frames or actions after t change."""
  pred = PREDICTORS[name]()
  z, a = _inputs()
  params = _init(pred, z, a)
  out = pred.apply(params, z, a)
  z2 = z.at[:, t + 1:].add(5.0)
  a2 = a.at[:, t + 1:].add(-3.0)
  out2 = pred.apply(params, z2, a2)
  np.testing.assert_allclose(out2[:, :t + 1], out[:, :t + 1], rtol=1e-5, atol=1e-5)
  assert not np.allclose(out2[:, t + 1:], out[:, t + 1:])  # later frames do react


def test_transformer_uses_history_and_respects_max_context():
  z, a = _inputs()
  full = dynamics.BlockCausalPredictor(A, width=16, depth=2, num_heads=2)
  params = _init(full, z, a)
  out = full.apply(params, z, a)
  out_past = full.apply(params, z.at[:, 0].add(5.0), a)
  assert not np.allclose(out_past[:, 3], out[:, 3])  # full context: frame 3 sees frame 0
  ctx2 = dynamics.BlockCausalPredictor(A, width=16, depth=2, num_heads=2, max_context=2)
  out = ctx2.apply(params, z, a)
  # Each of the 2 layers looks 1 frame back, so frame 3 sees frames 1..3 but not frame 0.
  out_past = ctx2.apply(params, z.at[:, 0].add(5.0), a.at[:, 0].add(1.0))
  np.testing.assert_allclose(out_past[:, 3:], out[:, 3:], rtol=1e-5, atol=1e-5)
  assert not np.allclose(out_past[:, 2], out[:, 2])


def test_transformer_markov_when_max_context_is_one():
  z, a = _inputs()
  pred = dynamics.BlockCausalPredictor(A, width=16, depth=1, num_heads=2, max_context=1)
  params = _init(pred, z, a)
  out = pred.apply(params, z, a)
  for t in range(T):
    np.testing.assert_allclose(pred.apply(params, z[:, t], a[:, t], method="step"), out[:, t],
                               rtol=1e-5, atol=1e-5)


def test_frame_causal_mask_hand_case():
  m = dynamics.frame_causal_mask(3, 2, max_context=2)
  expect = np.array([[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                     [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0],
                     [0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], bool)
  np.testing.assert_array_equal(m, expect)
  assert dynamics.frame_causal_mask(3, 1).sum() == 6  # lower triangle


@pytest.mark.parametrize("name", ["recurrent_residual", "conv", "transformer"])
def test_rollout_matches_manual_unroll_and_is_causal(name):
  pred = PREDICTORS[name]()
  z, a = _inputs()
  params = _init(pred, z, a)
  zs = dynamics.rollout(pred, params, z[:, 0], a)
  chex.assert_shape(zs, (B, T, N, D))
  # Manual autoregression: feed predictions back as frames.
  hist = [z[:, 0]]
  for k in range(T):
    frames = jnp.stack(hist + [jnp.zeros_like(z[:, 0])] * (T - len(hist)), 1)
    hist.append(pred.apply(params, frames, a)[:, k])
  np.testing.assert_allclose(zs, jnp.stack(hist[1:], 1), rtol=1e-4, atol=1e-4)
  zs2 = dynamics.rollout(pred, params, z[:, 0], a.at[:, 3:].add(2.0))
  np.testing.assert_allclose(zs2[:, :3], zs[:, :3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["recurrent", "conv", "transformer"])
def test_stride_and_latent_variable(kind):
  cfg = ml_collections.ConfigDict(dict(kind=kind, hidden=16, depth=1, cell="residual", stride=2,
                                       latent_dim=3, width=16, num_heads=2, max_context=0,
                                       kernels=(3, 1)))
  pred = dynamics.make_predictor(cfg, A)
  z, a = _inputs()
  a_chunks = dynamics.chunk_actions(jnp.zeros((B, 4, A)), 2)
  chex.assert_shape(a_chunks, (B, 2, 4))
  lat = jnp.ones((B, 2, 3))
  params = _init(pred, z[:, :2], a_chunks)
  out = pred.apply(params, z[:, :2], a_chunks, lat)
  chex.assert_shape(out, (B, 2, N, D))
  assert not np.allclose(out, pred.apply(params, z[:, :2], a_chunks))  # latent matters
  with pytest.raises(ValueError, match="stride"):
    pred.apply(params, z[:, :2], jnp.zeros((B, 2, A)))
  with pytest.raises(ValueError, match="stride"):
    dynamics.chunk_actions(jnp.zeros((B, 3, A)), 2)


def test_conv_predictor_is_local_and_translation_equivariant():
  """Two 3x3 layers see 2 cells around each cell (1x1 layers add nothing): a change at cell
  (5, 5) of a 12x12 grid moves the output only within that window, and the same bump two cells
  further on moves the output by the same amount, two cells further on (same weights
  everywhere, away from the zero-padded border)."""
  g, d = 12, 3
  pred = dynamics.ConvPredictor(A, width=8, kernels=(3, 1, 3))
  z = jnp.zeros((1, g * g, d))
  a = jnp.array([[0.7, -0.4]])
  params = _init(pred, z, a)
  base = pred.apply(params, z, a, method="step").reshape(g, g, d)

  def response(y, x):
    bump = z.reshape(1, g, g, d).at[0, y, x].set(1.0).reshape(1, g * g, d)
    out = pred.apply(params, bump, a, method="step").reshape(g, g, d)
    return np.asarray(out - base)

  r1, r2 = response(5, 5), response(5, 7)
  moved = np.abs(r1).sum(-1) > 1e-6
  ys, xs = np.nonzero(moved)
  assert (ys.min(), ys.max(), xs.min(), xs.max()) == (3, 7, 3, 7)
  np.testing.assert_allclose(r2[3:8, 5:10], r1[3:8, 3:8], rtol=1e-5, atol=1e-6)


def test_conv_predictor_needs_a_square_grid():
  pred = dynamics.ConvPredictor(A, width=4, kernels=(3,))
  with pytest.raises(ValueError, match="square token grid"):
    pred.init(jax.random.key(0), jnp.zeros((1, 6, D)), jnp.zeros((1, A)))
  with pytest.raises(ValueError, match="predictor.kernels"):
    dynamics.ConvPredictor(A, kernels=(2,)).init(jax.random.key(0), jnp.zeros((1, 4, D)),
                                                 jnp.zeros((1, A)))


def test_heads_shapes():
  z = jnp.ones((B, N, D))
  for mod, args, shape in [(Expander((8,), 12), (z,), (B, 12)),
                           (InverseDynamics(4, (8,)), (z, z), (B, 4)),
                           (PositionProbe((8,)), (z,), (B, 2))]:
    out = mod.apply(mod.init(jax.random.key(0), *args), *args)
    chex.assert_shape(out, shape)


def test_conv_encoder_rejects_bad_size():
  enc = ConvEncoder(channels=(4,), space_to_depth=3)
  with pytest.raises(ValueError, match="space_to_depth"):
    enc.init(jax.random.key(0), np.zeros((1, 32, 32, 2), np.uint8))
