"""The frame-level pixel baseline (eval/frame_pixel_baseline.py): layout, the residual on the
last frame, the window error with fed-back predictions, and that training lowers the loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.data import physics as ph
from jepa_jax.eval import frame_pixel_baseline as fpb
from jepa_jax.nn.convnet import space_to_depth

FRAME = (16, 16, 3)


def _clips(b, t, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (b, t, *FRAME), dtype=np.uint8)


def _unit(x):
  return x.astype(np.float32) * (2 / 255) - 1


def test_depth_to_space_inverts_space_to_depth():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 6, 3)), jnp.float32)
  chex.assert_trees_all_equal(fpb.depth_to_space(space_to_depth(x, 2), 2), x)


def test_zero_output_layer_predicts_the_last_frame_and_errors_by_hand():
  model = fpb.NextFramePixels(width=8)
  params = model.init(jax.random.key(0), _clips(1, 2))["params"]
  params = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.zeros_like(v) if path[0].key == "out" else v, params)
  clips = _clips(3, 5, 1)
  chex.assert_shape(model.apply({"params": params}, clips[:, :2]), (3, *FRAME))
  # Context 3 of a 5-frame window: the last context frame (2) is predicted for 3, and, fed
  # back, for 4 as well.
  err = fpb.window_error_fn(model, context=2)(params, clips, 3)
  x = _unit(clips)
  mse = lambda a, b: ((a - b) ** 2).mean((1, 2, 3))
  want = (mse(x[:, 2], x[:, 3]) + mse(x[:, 2], x[:, 4])) / 2
  np.testing.assert_allclose(err, want, rtol=1e-5)


def test_rollout_feeds_predictions_back():
  model = fpb.NextFramePixels(width=8)
  params = model.init(jax.random.key(1), _clips(1, 2))["params"]
  clips = _clips(2, 2, 2)
  out = fpb.rollout(model, params, clips, 2)
  first = model.apply({"params": params}, clips)
  second = model.apply({"params": params}, jnp.stack([_unit(clips[:, 1]), first], 1))
  np.testing.assert_allclose(out, jnp.stack([first, second], 1), rtol=1e-5, atol=1e-6)


def test_training_lowers_the_pixel_loss():
  cfg = ph.PhysicsConfig(num_frames=6, size=16, radius=(1.5, 2.5), min_radius_gap=0.5,
                         speed=(0.5, 1.0), gravity=0.1, floor_height=2, occluder_width=(2, 3))
  source = [ph.make_video(np.random.default_rng(i), cfg) for i in range(8)]
  _, _, history = fpb.train_frame_pixels(source, context=2, steps=40, batch_size=8, lr=3e-3,
                                         width=8, log_every=10)
  assert history[-1]["loss"] < 0.8 * history[0]["loss"], history
