"""Score a user's own videos with a pretrained V-JEPA: load the frames from a file, check them
against the model, surprise per window and per video, save JSON and a picture.

    frames file (.npy array, or .npz with a `frames` array)  ->  uint8 (N, T, H, W, C)
    frame_step_surprise.surprise_at_steps(model, frames, ...)  ->  surprise curves, video scores
    write_results(out_dir, ...)                                ->  surprise.json, surprise_curves.png

The driver is `scripts/score_surprise.py`; the benchmark (experiments/intuitive_physics.py) uses
the same surprise function on generated twins.
"""

from __future__ import annotations

import json
import os

import numpy as np

from jepa_jax.eval import frame_step_surprise, surprise

RESULTS_FILE = "surprise.json"
PLOT_FILE = "surprise_curves.png"


def to_uint8_videos(array, source: str = "frames") -> np.ndarray:
  """(N, T, H, W, C) or one video (T, H, W, C); uint8, or float in [0, 1] (scaled by 255)."""
  a = np.asarray(array)
  if a.ndim == 4:
    a = a[None]
  if a.ndim != 5:
    raise ValueError(f"{source}: expected videos shaped (N, T, H, W, C) or one video (T, H, W, C), "
                     f"got shape {a.shape}")
  if a.dtype == np.uint8:
    return a
  if np.issubdtype(a.dtype, np.floating):
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if not (np.isfinite(a).all() and lo >= 0.0 and hi <= 1.0):
      raise ValueError(f"{source}: float frames must lie in [0, 1] (got min {lo:.3g}, max "
                       f"{hi:.3g}); scale them to [0, 1] or save them as uint8 0..255")
    return np.round(a * 255.0).astype(np.uint8)
  raise ValueError(f"{source}: frames must be uint8 (0..255) or float in [0, 1], got dtype "
                   f"{a.dtype}")


def load_videos(path: str, key: str = "frames", flag: str = "--videos") -> np.ndarray:
  """Frames from a .npy file or an .npz archive (array `key`, or its only array); errors name
  the `flag` that gave the path."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{flag}={path}: no such file (a .npy array or an .npz archive of "
                            "uint8 frames shaped (N, T, H, W, C))")
  if path.endswith(".npz"):
    with np.load(path) as z:
      names = list(z.files)
      if key in names:
        array = z[key]
      elif len(names) == 1:
        array = z[names[0]]
      else:
        raise ValueError(f"{flag}={path}: the archive holds {names}; name the frames array "
                         f"with --key (now {key!r})")
  elif path.endswith(".npy"):
    array = np.load(path)
  else:
    raise ValueError(f"{flag}={path}: expected a .npy or .npz file")
  return to_uint8_videos(array, f"{flag}={path}")


def score(model: surprise.SurpriseModel, frames_NTHWC, stride: int, context_frames,
          how: str = "max", batch_size: int = 32, progress: bool = False,
          power: float = surprise.DEFAULT_POWER, frame_steps=(1,), calibration_frames=None,
          quantile: float = frame_step_surprise.DEFAULT_QUANTILE) -> dict:
  """frame_step_surprise.surprise_at_steps; 'per_window' becomes the curve over window end frames
  ('window_end_frames'): at each, the largest window error ending there (with one frame step,
  the windows themselves)."""
  cal = None if calibration_frames is None else to_uint8_videos(calibration_frames)
  out = frame_step_surprise.surprise_at_steps(
      model, to_uint8_videos(frames_NTHWC), frame_steps, stride, context_frames, how, power, cal,
      quantile, batch_size, progress)
  out["per_window"] = out.pop("per_frame")
  return out


def check_writable(out_dir: str, overwrite: bool) -> None:
  """Earlier results are never replaced silently (call before the work, not after)."""
  path = os.path.join(out_dir, RESULTS_FILE)
  if not overwrite and os.path.exists(path):
    raise FileExistsError(f"{path} exists (an earlier scoring); choose another --out or pass "
                          "--overwrite")


def write_results(out_dir: str, result: dict, meta: dict, overwrite: bool = False,
                  plot_max: int = 12) -> dict:
  """surprise.json (meta + per video: score, per-window curve) and surprise_curves.png.
  Refuses to replace earlier results unless `overwrite`."""
  check_writable(out_dir, overwrite)
  os.makedirs(out_dir, exist_ok=True)
  paths = {"json": os.path.join(out_dir, RESULTS_FILE), "plot": os.path.join(out_dir, PLOT_FILE)}
  ends = [int(e) for e in result["window_end_frames"]]
  videos = [{"index": i, "score": float(result["video"][i]),
             "per_window": [float(v) for v in result["per_window"][i]]}
            for i in range(len(result["video"]))]
  with open(paths["json"], "w") as f:
    json.dump({**meta, "window_end_frames": ends, "videos": videos}, f, indent=1)
  plot_curves(paths["plot"], np.asarray(ends), np.asarray(result["per_window"]),
              np.asarray(result["video"]), plot_max,
              surprise.describe_aggregate(meta.get("aggregate", "max"),
                                          meta.get("power", surprise.DEFAULT_POWER)))
  return paths


def plot_curves(path: str, x_K, per_window_NK, video_N, plot_max: int, how: str) -> str:
  """The most surprising videos first, one panel each: surprise per window over time."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  order = np.argsort(-video_N)[:max(1, plot_max)]
  cols = min(len(order), 4)
  rows = -(-len(order) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False,
                           sharey=True)
  for ax, i in zip(axes.flat, order):
    ax.plot(x_K, per_window_NK[i], "o-", ms=3, color="tab:red")
    ax.set_title(f"video {i}: {how} {video_N[i]:.4g}", fontsize=8)
    ax.set_xlabel("window end frame", fontsize=7)
    ax.tick_params(labelsize=7)
  for ax in list(axes.flat)[len(order):]:
    ax.axis("off")
  axes.flat[0].set_ylabel("surprise", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
