"""Fixed sin-cos position embeddings for 1-D, 2-D and 3-D token grids (numpy, computed once)."""

import numpy as np


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
  """(N,) positions -> (N, dim) embedding: half sines, half cosines (MAE/I-JEPA convention)."""
  if dim % 2:
    raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
  omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
  angles_ND = positions.reshape(-1)[:, None].astype(np.float64) * omega[None]
  return np.concatenate([np.sin(angles_ND), np.cos(angles_ND)], axis=1)


def sincos_grid(dim: int, grid_shape: tuple[int, ...]) -> np.ndarray:
  """Row-major token grid (2-D: H,W or 3-D: T,H,W) -> (prod(grid_shape), dim) float32.

  2-D splits the channels equally between rows and columns. 3-D gives time half the channels
  and a quarter to each spatial axis, as V-JEPA does, so spatial frequencies match the 2-D case
  at dim/2.
  """
  if len(grid_shape) == 2:
    if dim % 4:
      raise ValueError(f"2-D sin-cos embedding needs width % 4 == 0, got width={dim}")
    dims = (dim // 2, dim // 2)
  elif len(grid_shape) == 3:
    if dim % 8:
      raise ValueError(f"3-D sin-cos embedding needs width % 8 == 0, got width={dim}")
    dims = (dim // 2, dim // 4, dim // 4)
  else:
    raise ValueError(f"grid_shape must have 2 or 3 axes, got {grid_shape}")
  coords = np.meshgrid(*[np.arange(n) for n in grid_shape], indexing="ij")
  parts = [sincos_1d(d, c.reshape(-1)) for d, c in zip(dims, coords)]
  return np.concatenate(parts, axis=1).astype(np.float32)
