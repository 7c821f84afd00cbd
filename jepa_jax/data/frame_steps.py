"""Videos at several frame steps (time scales) for the frame models.

A model that predicts the next frame of every k-th frame sees each step move a ball k times as
far, and gravity add k^2 times the speed: at k = 2 a float or an upward fall stands out where at
k = 1 it hides under the frame-to-frame noise (BUILD_NOTES session 30). `FrameStepSource` mixes
the steps in one training stream; the surprise side is eval/frame_step_surprise.py.

Element i is at step steps[i % n] (n steps): frames phase, phase + k, ... of a video k times as
long from that step's source, phase = (i // n) % k, so every phase of the longer videos is seen
and a random batch holds the steps in equal shares on average. Deterministic per index, like
the sources it wraps.
"""

from __future__ import annotations

from typing import Callable


def _whole(k) -> int:
  value = int(k.strip()) if isinstance(k, str) else int(k)
  if not isinstance(k, str) and value != k:
    raise ValueError(k)
  return value


def check_frame_steps(frame_steps, key: str = "frame.frame_steps") -> tuple[int, ...]:
  """A non-empty tuple of distinct positive ints (ints or their strings), in the order given."""
  try:
    steps = tuple(_whole(k) for k in frame_steps)
  except (TypeError, ValueError):
    steps = ()
  if not steps or any(k < 1 for k in steps) or len(set(steps)) != len(steps):
    raise ValueError(f"{key}={frame_steps!r}: the frame steps must be distinct positive integers "
                     "(1: every frame; 2: every other frame), e.g. (1,) or (1, 2)")
  return steps


class FrameStepSource:
  """{'frames': (T, H, W, C), 'frame_step': k}: every k-th frame of `make_source(k)`'s videos,
  which must hold T * k frames; T = `num_frames`."""

  def __init__(self, make_source: Callable[[int], object], num_frames: int, frame_steps):
    self.frame_steps = check_frame_steps(frame_steps)
    self.num_frames = num_frames
    self.sources = {k: make_source(k) for k in self.frame_steps}
    self.length = min(len(s) for s in self.sources.values())

  def __len__(self):
    return self.length

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    n = len(self.frame_steps)
    k = self.frame_steps[index % n]
    frames = self.sources[k][index]["frames"]
    if len(frames) < self.num_frames * k:
      raise ValueError(f"frame step {k}: the source's videos hold {len(frames)} frames, fewer than "
                       f"{self.num_frames} x {k}; make_source({k}) must return videos of "
                       f"{self.num_frames * k} frames")
    phase = (index // n) % k
    return {"frames": frames[phase::k][:self.num_frames], "frame_step": k}

  def __repr__(self):
    return f"FrameStepSource(steps={self.frame_steps}, T={self.num_frames}, n={self.length})"
