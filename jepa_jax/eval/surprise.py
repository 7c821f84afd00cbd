"""Surprise (violation of expectation) as prediction error over sliding windows of a video.

    video (T frames) -> windows [s, s + W) for s = 0, stride, ...   (W = the model's clip length)
    per window and context length C: predict frames [s + C, s + W) from [s, s + C) -> error
    per window: min over the context lengths; per video: mean, max or power mean over windows

A model enters as `window_error(params, clips_BWHWC, context_frames) -> (B,)` (context_frames
static), so the V-JEPA latent error, a random-init encoder and a pixel predictor share one
driver. For V-JEPA (`latent_window_error`) the context is every token of the first
C / tubelet time slices, the targets are all the other tokens, and the error is the L1 between
the predictor's output and the layer-normed target-encoder features of the whole window, as in
the pretraining loss.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jepa_jax import losses

AGGREGATES = ("mean", "max", "power")
DEFAULT_POWER = 64.0  # the power mean's exponent; see `aggregate`


@dataclasses.dataclass(frozen=True)
class SurpriseModel:
  window_error: Callable            # (params, clips_BWHWC uint8, context_frames) -> (B,)
  params: Any
  window: int                       # frames per window (the encoder's clip length)
  frame_shape: tuple[int, int, int]  # (H, W, C) the model expects
  tubelet: int = 1                  # context lengths must be multiples of this


def token_split(grid_shape, context_slices: int):
  """Row-major token indices of the first `context_slices` time slices and of the rest."""
  t, h, w = grid_shape
  if not 1 <= context_slices < t:
    raise ValueError(f"context of {context_slices} time slices out of range for a token grid "
                     f"with {t} slices: need 1 <= slices < {t}")
  n_ctx = context_slices * h * w
  return np.arange(n_ctx, dtype=np.int32), np.arange(n_ctx, t * h * w, dtype=np.int32)


def latent_window_error(encode_context, predict, encode_target, grid_shape, tubelet: int):
  """JEPA window error from three functions (params passed through):
    encode_context(params, clips, ctx_idx_BC) -> z_ctx_BCD
    predict(params, z_ctx_BCD, ctx_idx_BC, tgt_idx_BT) -> pred_BTD
    encode_target(params, clips) -> z_BND (the regression targets, already layer-normed)."""

  def window_error(params, clips_BWHWC, context_frames: int):
    if context_frames % tubelet:
      raise ValueError(f"context_frames={context_frames} must be a multiple of the tubelet "
                       f"length {tubelet} (whole token time slices)")
    ctx, tgt = token_split(grid_shape, context_frames // tubelet)
    b = clips_BWHWC.shape[0]
    ctx_BC = jnp.broadcast_to(ctx, (b, len(ctx)))
    tgt_BT = jnp.broadcast_to(tgt, (b, len(tgt)))
    pred_BTD = predict(params, encode_context(params, clips_BWHWC, ctx_BC), ctx_BC, tgt_BT)
    target_BTD = encode_target(params, clips_BWHWC)[:, tgt]
    err = jnp.abs(pred_BTD.astype(jnp.float32) - target_BTD.astype(jnp.float32))
    return err.mean(axis=(1, 2))

  return window_error


def jepa_window_error(models, grid_shape, tubelet: int, target_norm: str = "layer"):
  """For params {'encoder', 'predictor', 'target_encoder'} of a V-JEPA (train/pretrain.py).
  target_norm as in its pretraining: 'layer', or 'position_batch', whose per-position statistics
  of training videos come in params['target_stats'] {'mean', 'var'} (eval/pretrained.py)."""
  if target_norm not in losses.TARGET_NORMS:
    raise ValueError(f"target_norm={target_norm!r}: choose one of {losses.TARGET_NORMS}")
  enc, pred = models.encoder, models.predictor

  def encode_target(p, x):
    h = enc.apply({"params": p["target_encoder"]}, x)
    if target_norm == "layer":
      return losses.layer_norm_no_affine(h)
    return losses.standardize_with(h, p["target_stats"]["mean"], p["target_stats"]["var"])

  return latent_window_error(
      lambda p, x, i: enc.apply({"params": p["encoder"]}, x, i),
      lambda p, z, c, t: pred.apply({"params": p["predictor"]}, z, c, t),
      encode_target, grid_shape, tubelet)


def window_starts(num_frames: int, window: int, stride: int) -> np.ndarray:
  if stride < 1:
    raise ValueError(f"stride must be >= 1, got {stride}")
  if num_frames < window:
    raise ValueError(f"videos of {num_frames} frames are shorter than the window of {window}")
  return np.arange(0, num_frames - window + 1, stride)


def check_frames(frames_NTHWC, model: SurpriseModel):
  expected = f"(N, T, {', '.join(map(str, model.frame_shape))}) uint8 with T >= {model.window}"
  frames_NTHWC = np.asarray(frames_NTHWC)
  if frames_NTHWC.ndim != 5:
    raise ValueError(f"frames must be {expected}; got shape {frames_NTHWC.shape}")
  if frames_NTHWC.dtype != np.uint8:
    raise ValueError(f"frames must be {expected}; got dtype {frames_NTHWC.dtype}")
  got, want = tuple(frames_NTHWC.shape[2:]), tuple(model.frame_shape)
  if got != want:
    raise ValueError(f"frames must be {expected}; got shape {frames_NTHWC.shape}: the frames are "
                     f"{got} (H, W, C) but the model was pretrained on {want}: resize the frames "
                     f"to {want[0]}x{want[1]} with {want[2]} channels, or pretrain a model at this "
                     "size (config.data.physics.size)")
  if frames_NTHWC.shape[1] < model.window:
    raise ValueError(f"frames must be {expected}; got {frames_NTHWC.shape[1]} frames; the model "
                     f"predicts windows of {model.window} frames (its pretraining clip length), "
                     f"so each video needs at least {model.window}")
  return frames_NTHWC


def check_context_frames(context_frames, model: SurpriseModel) -> tuple[int, ...]:
  context_frames = tuple(int(c) for c in context_frames)
  if not context_frames:
    raise ValueError("give at least one context length")
  for c in context_frames:
    if not 0 < c < model.window or c % model.tubelet:
      raise ValueError(f"context length {c} must be a multiple of {model.tubelet} in "
                       f"(0, {model.window})")
  return context_frames


@functools.cache
def _jitted(window_error):
  return jax.jit(window_error, static_argnums=2)


def window_scores(model: SurpriseModel, frames_NTHWC, stride: int, context_frames,
                  batch_size: int = 32, progress: bool = False):
  """-> (scores_NKC float32, starts_K): the error of every window k and context length c.
  Windows are scored in fixed-size batches (the last one padded), so one compile per context."""
  frames_NTHWC = check_frames(frames_NTHWC, model)
  context_frames = check_context_frames(context_frames, model)
  n, t = frames_NTHWC.shape[:2]
  starts = window_starts(t, model.window, stride)
  pairs = [(i, s) for i in range(n) for s in starts]
  fn = _jitted(model.window_error)
  out = np.zeros((len(pairs), len(context_frames)), np.float32)
  batches = range(0, len(pairs), batch_size)
  for b0 in tqdm(batches, desc="surprise", unit="batch", disable=not progress):
    chunk = pairs[b0:b0 + batch_size]
    idx = chunk + [chunk[-1]] * (batch_size - len(chunk))
    clips = np.stack([frames_NTHWC[i, s:s + model.window] for i, s in idx])
    for j, c in enumerate(context_frames):
      out[b0:b0 + len(chunk), j] = np.asarray(fn(model.params, clips, c))[:len(chunk)]
  return out.reshape(n, len(starts), len(context_frames)), starts


def aggregate(scores_NKC, how: str = "max", power: float = DEFAULT_POWER):
  """Min over context lengths per window (the best-informed prediction), then over windows ->
  (N,): 'mean', 'max', or 'power', the power mean (mean_k e_k^p)^(1/p) with p = `power`.
  Also returns the per-window curve (N, K).

  The power mean lies between the mean (p = 1) and the max (p -> inf) and is scale-free (errors
  in any unit, one p). Unlike the max, every window counts, so two videos that share their
  first frames (a matched pair: identical windows, identical error) are told apart by the
  windows where they differ even when the largest error lies in the shared part; the max ties
  them (BUILD_NOTES session 15). In float64 a window below about 0.56 of the video's max adds
  nothing at p = 64, so twins that differ only there still tie. The default here stays 'max';
  the experiment and scripts/score_surprise.py configure 'power'."""
  check_aggregate(how)
  per_window_NK = np.asarray(scores_NKC).min(-1)
  if how == "max":
    return per_window_NK.max(-1), per_window_NK
  if how == "mean":
    return per_window_NK.mean(-1), per_window_NK
  return power_mean(per_window_NK, power), per_window_NK


def describe_aggregate(how: str, power: float = DEFAULT_POWER) -> str:
  return f"power mean (p = {power:g})" if how == "power" else how


def check_aggregate(how: str) -> str:
  if how not in AGGREGATES:
    raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}: set "
                     "surprise.aggregate (experiment) or --aggregate (scripts/score_surprise.py)")
  return how


def check_power(p: float) -> float:
  if not p >= 1:
    raise ValueError(f"the power mean's exponent must be >= 1 (1: the mean), got {p}; set "
                     "surprise.power (experiment) or --power (scripts/score_surprise.py)")
  return float(p)


def power_mean(x_NK, p: float):
  """(mean_k x_k^p)^(1/p) per row, in float64 (a small difference between windows must survive
  the p-th power) and relative to the row's max (no overflow for large p). Needs x >= 0."""
  check_power(p)
  x = np.asarray(x_NK, np.float64)
  if (x < 0).any():
    raise ValueError("aggregate='power' needs non-negative window errors; this model's window "
                     f"error reached {x.min():.4g}: score it with --aggregate=mean or max "
                     "(scripts/score_surprise.py)")
  top = x.max(-1, keepdims=True)
  rel = np.divide(x, top, out=np.zeros_like(x), where=top > 0)
  return top[..., 0] * np.mean(rel ** p, -1) ** (1.0 / p)


def surprise(model: SurpriseModel, frames_NTHWC, stride: int, context_frames,
             how: str = "max", batch_size: int = 32, progress: bool = False,
             power: float = DEFAULT_POWER) -> dict:
  """One call: {'video': (N,), 'per_window': (N, K), 'per_context': (N, K, C), 'starts': (K,)}."""
  scores, starts = window_scores(model, frames_NTHWC, stride, context_frames, batch_size, progress)
  video, per_window = aggregate(scores, how, power)
  return {"video": video, "per_window": per_window, "per_context": scores, "starts": starts}
