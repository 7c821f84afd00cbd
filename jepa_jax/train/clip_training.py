"""Pieces shared by the small single-device video trainers (the frame JEPA, train/frame_jepa.py,
and the pixel-space baselines, eval/pixel_baseline.py and eval/frame_pixel_baseline.py): random
clips cut from procedural videos, their optimiser, and a host loop that logs with an ETA.
The sharded pretraining has its own loop (train/loop.py): checkpoints, meshes, grain."""

import time

import numpy as np
import optax


def sample_clips(source, rng: np.random.Generator, batch_size: int, clip_len: int,
                 clips_per_video: int) -> np.ndarray:
  """batch_size random clips of clip_len consecutive frames, clips_per_video from each video
  drawn (generating a procedural video costs more than cutting several clips from it)."""
  clips = []
  while len(clips) < batch_size:
    frames = source[int(rng.integers(len(source)))]["frames"]
    if len(frames) < clip_len:
      raise ValueError(f"videos of {len(frames)} frames are shorter than the training clips "
                       f"of {clip_len} frames: use fewer context, rollout or windows per clip "
                       "(frame.context, frame.rollout, frame.windows_per_clip)")
    for s in rng.integers(0, len(frames) - clip_len + 1, clips_per_video):
      clips.append(frames[s:s + clip_len])
  return np.stack(clips[:batch_size])


def make_optimizer(lr: float, steps: int):
  """AdamW, linear warmup (50 steps or a tenth of the run) then cosine decay to lr / 100."""
  warmup = min(50, max(steps // 10, 1))
  return optax.adamw(optax.warmup_cosine_decay_schedule(
      lr / 10, lr, warmup, max(steps, warmup + 1), lr / 100), weight_decay=0.01)


def run_steps(step, params, opt_state, sample_batch, steps: int, log_every: int = 50,
              label: str = ""):
  """steps x step(params, opt_state, batch) -> (params, opt_state, loss, metrics); every
  log_every steps a history row (and, with a label, a progress line with an ETA).
  -> (params, history)."""
  history, t0 = [], time.time()
  for i in range(steps):
    params, opt_state, loss, metrics = step(params, opt_state, sample_batch())
    if (i + 1) % log_every == 0 or i + 1 == steps:
      history.append({"step": i + 1, "loss": float(loss), "seconds": time.time() - t0,
                      **{k: float(v) for k, v in metrics.items()}})
      if label:
        eta = history[-1]["seconds"] / (i + 1) * (steps - i - 1)
        extra = "".join(f", {k} {float(v):.4g}" for k, v in metrics.items())
        print(f"{label} step {i + 1}/{steps}: loss {float(loss):.4g}{extra}, "
              f"{history[-1]['seconds']:.0f} s, ETA {eta / 60:.1f} min", flush=True)
  return params, history
