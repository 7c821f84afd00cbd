"""Pixel-space baseline for surprise: predict the pixels of a window's later time slices from
its first C frames; surprise = mean squared pixel error on the predicted tubelets.

Same architecture family and size as the V-JEPA it is compared with (a ViT encoder over the
context tubelets and the narrow masked predictor), but the predictor outputs the raw tubelet
pixels instead of target-encoder features, and it is trained on exactly the past -> future
prediction the surprise uses, on the same possible videos (the pretraining train split). A
conv U-Net was tried first: XLA CPU convolutions ran at 4-21 s per batch of 32 (width 16-32),
far over the budget; the transformer is matmuls and costs less than one JEPA step.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa_jax.eval.surprise import token_split
from jepa_jax.nn.predictor import MaskedPredictor
from jepa_jax.nn.vit import ViTEncoder, make_encoder, patchify, to_unit_range
from jepa_jax.train.clip_training import run_steps


@dataclasses.dataclass(frozen=True)
class PixelModels:
  encoder: ViTEncoder
  predictor: MaskedPredictor
  patch_size: tuple[int, int, int]
  grid_shape: tuple[int, int, int]


def make_pixel_models(grid_shape, patch_size, size: str = "micro", width: int = 64,
                      depth: int = 2, num_heads: int = 4) -> PixelModels:
  patch_size, grid_shape = tuple(patch_size), tuple(grid_shape)
  out = int(np.prod(patch_size)) * 3
  predictor = MaskedPredictor(grid_shape=grid_shape, out_width=out, width=width, depth=depth,
                              num_heads=num_heads)
  return PixelModels(make_encoder(size, patch_size), predictor, patch_size, grid_shape)


def window_error_fn(models: PixelModels):
  """The surprise driver's interface: (params, clips uint8, context_frames static) -> (B,)."""

  def window_error(params, clips_BWHWC, context_frames: int):
    tubelet = models.patch_size[0]
    if context_frames % tubelet:
      raise ValueError(f"context_frames={context_frames} must be a multiple of {tubelet}")
    ctx, tgt = token_split(models.grid_shape, context_frames // tubelet)
    b = clips_BWHWC.shape[0]
    ctx_BC, tgt_BT = (jnp.broadcast_to(i, (b, len(i))) for i in (ctx, tgt))
    z = models.encoder.apply({"params": params["encoder"]}, clips_BWHWC, ctx_BC)
    pred_BTP = models.predictor.apply({"params": params["predictor"]}, z, ctx_BC, tgt_BT)
    pixels_BNP = patchify(to_unit_range(clips_BWHWC, jnp.float32), models.patch_size)
    return jnp.mean((pred_BTP.astype(jnp.float32) - pixels_BNP[:, tgt]) ** 2, axis=(1, 2))

  return window_error


def init_params(models: PixelModels, example_BWHWC, seed: int):
  ctx, tgt = token_split(models.grid_shape, 1)
  k1, k2 = jax.random.split(jax.random.key(seed))
  enc = models.encoder.init(k1, example_BWHWC, ctx[None])
  z = models.encoder.apply(enc, example_BWHWC, ctx[None])
  pred = models.predictor.init(k2, z, ctx[None], tgt[None])
  return {"encoder": enc["params"], "predictor": pred["params"]}


def train_pixel_predictor(source, window: int, patch_size, context_frames, steps: int,
                          batch_size: int, lr: float = 1e-3, seed: int = 0,
                          log_every: int = 50, verbose: bool = False, **model_kw):
  """Trains on random windows of `source` videos ({'frames': (T, H, W, 3) uint8}) with a context
  length drawn per step from `context_frames`. -> (models, params, history)."""
  example = source[0]["frames"][:window][None]
  grid = tuple(n // p for n, p in zip(example.shape[1:4], patch_size))
  models = make_pixel_models(grid, patch_size, **model_kw)
  params = init_params(models, example, seed)
  tx = optax.adamw(optax.warmup_cosine_decay_schedule(lr / 10, lr, min(50, steps // 10 + 1),
                                                      steps, lr / 100), weight_decay=0.04)
  opt_state = tx.init(params)
  error = window_error_fn(models)

  @functools.partial(jax.jit, static_argnums=3, donate_argnums=(0, 1))
  def jitted_step(params, opt_state, clips, ctx):
    loss, grads = jax.value_and_grad(lambda p: error(p, clips, ctx).mean())(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def step(params, opt_state, batch):
    params, opt_state, loss = jitted_step(params, opt_state, *batch)
    return params, opt_state, loss, {}

  rng = np.random.default_rng(seed)

  def sample_batch():
    """Random windows and a context length (static: one compilation per length)."""
    clips = []
    for j in rng.integers(len(source), size=batch_size):
      f = source[int(j)]["frames"]
      s = int(rng.integers(0, len(f) - window + 1))
      clips.append(f[s:s + window])
    return np.stack(clips), int(rng.choice(context_frames))

  params, history = run_steps(step, params, opt_state, sample_batch, steps, log_every,
                              "pixel baseline" if verbose else "")
  return models, params, history
