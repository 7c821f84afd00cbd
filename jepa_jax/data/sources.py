"""grain random-access sources over procedural physics videos and images.

Element `i` is a pure function of (seed, split, i): any process can produce any element, so the
data is shardable by index and resumable from a grain iterator state without storage.
"""

import numpy as np

from jepa_jax.data.physics import PhysicsConfig, make_video

# Disjoint RNG streams per split: held-out probe/test videos never coincide with training ones.
# calibration: possible videos that set a score's scale (eval/frame_step_surprise.py).
SPLITS = {"train": 0, "probe_train": 1, "probe_test": 2, "eval": 3, "calibration": 4}


def element_rng(seed: int, split: str, index: int) -> np.random.Generator:
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
  return np.random.default_rng([seed, SPLITS[split], index])


class PhysicsVideoSource:
  """Videos {'frames': (T,H,W,3) uint8, 'pos'/'vel': (T,N,2) float32, 'radius': (N,)}."""

  def __init__(self, cfg: PhysicsConfig, num_videos: int, seed: int = 0, split: str = "train"):
    self.cfg = cfg.validate()
    self.num_videos, self.seed, self.split = num_videos, seed, split
    element_rng(seed, split, 0)  # validates the split name early

  def __len__(self):
    return self.num_videos

  def __getitem__(self, index: int) -> dict:
    return make_video(element_rng(self.seed, self.split, int(index)), self.cfg)

  def __repr__(self):
    return f"PhysicsVideoSource({self.cfg}, n={self.num_videos}, seed={self.seed}, {self.split})"


class PhysicsImageSource(PhysicsVideoSource):
  """Single frames (H,W,3) of the same videos (I-JEPA); frame chosen per element."""

  def __getitem__(self, index: int) -> dict:
    video = super().__getitem__(index)
    t = int(element_rng(self.seed, self.split, int(index)).integers(self.cfg.num_frames))
    return {"frames": video["frames"][t], "pos": video["pos"][t], "vel": video["vel"][t],
            "radius": video["radius"]}


def materialize(source, count: int, start: int = 0) -> dict:
  """Stacks `count` elements into arrays (for probes and evaluation sets)."""
  items = [source[i] for i in range(start, start + count)]
  return {k: np.stack([it[k] for it in items]) for k in items[0]}
