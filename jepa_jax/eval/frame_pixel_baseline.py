"""Pixel-space baseline for the frame JEPA: predict the next frame's pixels from the last K.

The frame JEPA (train/frame_jepa.py) predicts the next frame's latents from K frames; this model
makes the same prediction in pixel space, trained on the same possible videos with the same
clip sampler and optimiser: the comparison the JEPA argument rests on. Surprise of a window:
mean squared pixel error ([-1, 1] range) over its predicted frames, each predicted from the last
K frames, predictions fed back (pixels can be fed back as they are).

    frames t-K+1..t (B, K, H, W, C) --space-to-depth 2--> (H/2, W/2, 4KC) --dilated residual
    convs--> (H/2, W/2, 4C) --depth-to-space--> a residual added to frame t
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa_jax.nn.convnet import space_to_depth
from jepa_jax.nn.vit import to_unit_range
from jepa_jax.train import clip_training


def depth_to_space(x_BHWC, k: int):
  """Inverse of convnet.space_to_depth."""
  b, h, w, c = x_BHWC.shape
  x = x_BHWC.reshape(b, h, w, k, k, c // (k * k)).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * k, w * k, c // (k * k))


class NextFramePixels(nn.Module):
  """(B, K, H, W, C) frames (uint8, or floats in [-1, 1]) -> (B, H, W, C) next frame in [-1, 1]
  (unclipped). The receptive field (about 2 * sum(dilations) + 5 cells of 2 px) covers a ball's
  travel between frames plus its size, as the frame JEPA's predictor's does."""
  width: int = 64
  dilations: tuple[int, ...] = (1, 2, 4, 8, 1)

  @nn.compact
  def __call__(self, frames_BKHWC):
    x = to_unit_range(frames_BKHWC, jnp.float32)
    b, k, h, w, c = x.shape
    last = x[:, -1]
    x = space_to_depth(x.transpose(0, 2, 3, 1, 4).reshape(b, h, w, k * c), 2)
    x = nn.relu(nn.Conv(self.width, (3, 3), name="inp")(x))
    for i, dil in enumerate(self.dilations):
      y = nn.Conv(self.width, (1, 1), name=f"mix{i}")(nn.relu(x))
      x = x + nn.Conv(self.width, (3, 3), kernel_dilation=dil, name=f"conv{i}")(nn.relu(y))
    return last + depth_to_space(nn.Conv(4 * c, (3, 3), name="out")(nn.relu(x)), 2)


def rollout(model: NextFramePixels, params, context_BKHWC, steps: int):
  """-> (B, steps, H, W, C) predicted frames in [-1, 1], each from the last K frames."""
  k = context_BKHWC.shape[1]
  frames = to_unit_range(context_BKHWC, jnp.float32)
  preds = []
  for _ in range(steps):
    preds.append(model.apply({"params": params}, frames[:, -k:]))
    frames = jnp.concatenate([frames, preds[-1][:, None]], axis=1)
  return jnp.stack(preds, axis=1)


def window_error_fn(model: NextFramePixels, context: int):
  """The surprise driver's interface: (params, clips_BWHWC uint8, context_frames static) -> (B,)."""

  def window_error(params, clips_BWHWC, context_frames: int):
    w = clips_BWHWC.shape[1]
    if not context <= context_frames < w:
      raise ValueError(f"context_frames={context_frames}: the pixel predictor needs at least its "
                       f"{context} context frames and one frame to predict in a window of {w}")
    pred = rollout(model, params, clips_BWHWC[:, context_frames - context:context_frames],
                   w - context_frames)
    target = to_unit_range(clips_BWHWC[:, context_frames:], jnp.float32)
    return jnp.mean((pred - target) ** 2, axis=(1, 2, 3, 4))

  return window_error


def train_frame_pixels(source, *, context: int, steps: int, batch_size: int, lr: float,
                       width: int = 64, clips_per_video: int = 4, seed: int = 0,
                       log_every: int = 50, verbose: bool = False):
  """Next-frame pixel regression (MSE) on clips of context + 1 frames of `source` videos.
  -> (model, params, history)."""
  if context < 1:
    raise ValueError(f"context={context}: the predictor needs at least 1 frame")
  model = NextFramePixels(width)
  frame_shape = source[0]["frames"].shape[1:]
  params = model.init(jax.random.key(seed), jnp.zeros((1, context, *frame_shape), jnp.uint8))
  params = params["params"]
  tx = clip_training.make_optimizer(lr, steps)
  error = window_error_fn(model, context)

  def step(params, opt_state, clips):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(error(p, clips, context)))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, {}

  rng = np.random.default_rng(seed)
  params, history = clip_training.run_steps(
      jax.jit(step, donate_argnums=(0, 1)), params, tx.init(params),
      lambda: clip_training.sample_clips(source, rng, batch_size, context + 1, clips_per_video),
      steps, log_every, "frame pixel baseline" if verbose else "")
  return model, params, history
