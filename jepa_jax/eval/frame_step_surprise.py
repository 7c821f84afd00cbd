"""Surprise at several frame steps (time scales), on one common scale.

    video (T frames) -> for each frame step k and phase p: the frames p, p + k, ...
                     -> surprise.window_scores on each of them (windows of the model's W frames)
                     -> each window's error / its step's `quantile` on calibration videos
                     -> one set of windows per video: aggregate (power mean) as usual

A frame model trained at steps 1 and 2 (data/frame_steps.py) predicts a frame 2 frames ahead
worse than 1 ahead, so its errors at step 2 are larger everywhere; dividing each step's errors
by their high quantile on possible videos (the 99th percentile by default) puts an error that
is unusual at either time scale on the same footing before the windows are pooled
(BUILD_NOTES session 30: a violation of gravity shows at step 2, a colour change at step 1).
With one step nothing is rescaled: the scores are surprise.window_scores' own.

Window positions are kept in the video's own frame numbers: `first` (its first frame), `end`
(its last, predicted frame) and `step`; the curve over time (`per_frame`) is the largest
rescaled error among the windows that end at each frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jepa_jax.data.frame_steps import check_frame_steps
from jepa_jax.eval import surprise

DEFAULT_QUANTILE = 0.99


@dataclasses.dataclass(frozen=True)
class Windows:
  """Where each of the K scored windows lies in the video: all (K,) int arrays."""
  step: np.ndarray   # its frame step k
  first: np.ndarray  # its first frame
  end: np.ndarray    # its last (predicted) frame

  def context_end(self, context_frames: int) -> np.ndarray:
    """The last context frame of each window with `context_frames` context frames."""
    return self.first + (context_frames - 1) * self.step


def check_step_frames(num_frames: int, window: int, frame_steps) -> tuple[int, ...]:
  steps = check_frame_steps(frame_steps)
  short = [k for k in steps if -(-num_frames // k) < window]
  if short:
    need = window * max(short) - max(short) + 1
    raise ValueError(f"videos of {num_frames} frames hold fewer than one window ({window} frames) "
                     f"at frame step {max(short)}: give videos of at least {need} frames, or drop "
                     f"frame step(s) {short} (frame.frame_steps / --frame_steps)")
  return steps


def window_scores(model: surprise.SurpriseModel, frames_NTHWC, frame_steps, stride: int,
                  context_frames, batch_size: int = 32, progress: bool = False):
  """-> (scores_NKC float32, Windows): surprise.window_scores of every phase of every step
  (`stride`: window starts apart, in frames of that step), concatenated along the windows."""
  frames_NTHWC = surprise.check_frames(frames_NTHWC, model)
  num_frames = frames_NTHWC.shape[1]
  steps = check_step_frames(num_frames, model.window, frame_steps)
  scores, step, first, end = [], [], [], []
  for k in steps:
    for phase in range(k):
      view = frames_NTHWC[:, phase::k]
      if view.shape[1] < model.window:  # a late phase of a short video: no whole window
        continue
      s_NKC, starts = surprise.window_scores(model, view, stride, context_frames, batch_size,
                                             progress)
      scores.append(s_NKC)
      step.append(np.full(len(starts), k))
      first.append(phase + starts * k)
      end.append(phase + (starts + model.window - 1) * k)
  windows = Windows(*(np.concatenate(a).astype(np.int64) for a in (step, first, end)))
  return np.concatenate(scores, 1), windows


def check_quantile(quantile: float) -> float:
  if not 0.0 < quantile <= 1.0:
    raise ValueError(f"calibration quantile {quantile}: the share of calibration windows below "
                     "the step's scale, in (0, 1], e.g. 0.99 (frame.calibration_quantile / "
                     "--calibration_quantile)")
  return float(quantile)


def step_scales(scores_NKC, windows: Windows, quantile: float = DEFAULT_QUANTILE) -> dict:
  """{step: the `quantile` of its windows' errors (min over context lengths)}, on videos that
  should not surprise (possible ones); every step must have windows there."""
  check_quantile(quantile)
  per_window_NK = np.asarray(scores_NKC).min(-1)
  out = {}
  for k in dict.fromkeys(windows.step.tolist()):
    q = float(np.quantile(per_window_NK[:, windows.step == k], quantile))
    if not q > 0:
      raise ValueError(f"frame step {k}: the calibration windows' {quantile} quantile is {q}; the "
                       "calibration videos must give positive errors at every step")
    out[int(k)] = q
  return out


def rescale(scores_NKC, windows: Windows, scales: dict):
  """Each window's errors divided by its step's scale."""
  missing = sorted(set(windows.step.tolist()) - set(scales))
  if missing:
    raise ValueError(f"no calibration scale for frame step(s) {missing} (scales: {scales})")
  div_K = np.array([scales[int(k)] for k in windows.step], np.float64)
  return (np.asarray(scores_NKC, np.float64) / div_K[None, :, None]).astype(np.float32)


def per_frame(per_window_NK, windows: Windows):
  """-> (end frames E, (N, E)): the largest window error among the windows ending at each frame
  (with one step and stride 1, the per-window curve itself)."""
  ends = np.unique(windows.end)
  x = np.asarray(per_window_NK)
  curve = np.stack([x[:, windows.end == e].max(1) for e in ends], 1)
  return ends, curve


def calibrated_scores(model: surprise.SurpriseModel, frames_NTHWC, frame_steps, stride: int,
                      context_frames, calibration_frames=None,
                      quantile: float = DEFAULT_QUANTILE, batch_size: int = 32,
                      progress: bool = False):
  """-> (scores_NKC, Windows, {step: scale}): window_scores, each step's errors divided by their
  `quantile` on `calibration_frames` (possible videos (N', T', H, W, C) of the same kind; needed
  with several steps). With one step the scores are left as they are (scale 1)."""
  steps = check_frame_steps(frame_steps)
  if len(steps) > 1 and calibration_frames is None:
    raise ValueError(f"frame steps {steps}: scoring at several steps needs calibration videos "
                     "(possible videos of the same kind) to put the steps on one scale")
  check_quantile(quantile)
  scores, windows = window_scores(model, frames_NTHWC, steps, stride, context_frames, batch_size,
                                  progress)
  if len(steps) == 1:
    return scores, windows, {steps[0]: 1.0}
  cal, cal_windows = window_scores(model, calibration_frames, steps, stride, context_frames,
                                   batch_size, progress)
  scales = step_scales(cal, cal_windows, quantile)
  return rescale(scores, windows, scales), windows, scales


def surprise_at_steps(model: surprise.SurpriseModel, frames_NTHWC, frame_steps, stride: int,
                      context_frames, how: str = "power", power: float = surprise.DEFAULT_POWER,
                      calibration_frames=None, quantile: float = DEFAULT_QUANTILE,
                      batch_size: int = 32, progress: bool = False) -> dict:
  """One call: {'video': (N,), 'per_window': (N, K), 'per_context': (N, K, C) (rescaled),
  'windows': Windows, 'scales': {step: scale}, 'window_end_frames': (E,), 'per_frame': (N, E)}."""
  surprise.check_aggregate(how)
  scores, windows, scales = calibrated_scores(model, frames_NTHWC, frame_steps, stride,
                                              context_frames, calibration_frames, quantile,
                                              batch_size, progress)
  video, per_window = surprise.aggregate(scores, how, power)
  ends, curve = per_frame(per_window, windows)
  return {"video": video, "per_window": per_window, "per_context": scores, "windows": windows,
          "scales": scales, "window_end_frames": ends, "per_frame": curve}
