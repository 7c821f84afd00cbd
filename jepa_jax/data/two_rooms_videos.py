"""Two Rooms random walks as action-free videos for JEPA pretraining (stage 1 of V-JEPA 2-AC).

The two-stage world-model recipe pretrains its encoder with the foundation pipeline
(train/pretrain.py) on videos of the environment, without actions, then freezes it. This source
gives the pretraining pipeline the same walks the world model trains on (data/two_rooms_walks.py),
in the physics sources' element format so the pretraining probe reads the agent:

  {'frames': (T, H, W, 2) uint8 (agent, walls), 'pos': (T, 1, 2) agent centre px,
   'vel': (T, 1, 2) displacement to the next frame px/frame (the last frame repeats the one before),
   'radius': (1,) the agent's render sigma}

Element `i` of a split is walk `i` of that split's key: deterministic, shardable, resumable.
"""

import jax
import numpy as np

from jepa_jax.data import two_rooms_walks as walks
from jepa_jax.data.sources import SPLITS, element_rng


class TwoRoomsVideoSource:
  """grain random-access source of `num_videos` walks of `num_frames` frames."""

  def __init__(self, wcfg: walks.WalksConfig, num_frames: int, num_videos: int, seed: int = 0,
               split: str = "train"):
    if num_frames < 2:
      raise ValueError(f"data.physics.num_frames={num_frames}: Two Rooms videos need >= 2 frames")
    element_rng(seed, split, 0)  # validates the split name early
    self.wcfg, self.num_frames, self.num_videos = wcfg, num_frames, num_videos
    self.seed, self.split = seed, split
    # A stream per (seed, split): probe videos never coincide with training ones.
    self._key_data = np.asarray(jax.random.key_data(
        jax.random.fold_in(jax.random.key(seed), SPLITS[split])))

  def __len__(self):
    return self.num_videos

  def __getitem__(self, index: int) -> dict:
    key = jax.random.wrap_key_data(self._key_data)
    out = jax.device_get(walks.generate_walks(key, self.wcfg, 1, self.num_frames, int(index)))
    pos_T2 = out["state"][0].astype(np.float32)
    vel_T2 = np.diff(pos_T2, axis=0)
    vel_T2 = np.concatenate([vel_T2, vel_T2[-1:]], axis=0)
    return {"frames": out["obs"][0], "pos": pos_T2[:, None], "vel": vel_T2[:, None],
            "radius": np.array([self.wcfg.env.dot_sigma], np.float32)}

  def __repr__(self):
    return (f"TwoRoomsVideoSource({self.wcfg}, T={self.num_frames}, n={self.num_videos}, "
            f"seed={self.seed}, {self.split})")
