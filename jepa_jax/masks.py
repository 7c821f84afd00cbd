"""Multi-block masks for 2-D (I-JEPA) and 3-D (V-JEPA) token grids, with static token counts.

A masked view is a pair of int32 index vectors into the row-major token grid: `ctx_idx` (what
the context encoder sees) and `tgt_idx` (what the predictor must predict). They are disjoint.

Why static counts: the union of random blocks has a random size, but a jitted step must see
the same shapes every time. Each masker calibrates, once and deterministically, the 10% quantile
of the target-union size and of the available-context size over 2000 draws; a draw whose union
or context is smaller is rejected and redrawn, and larger ones are randomly subsampled down to
the static count (I-JEPA itself trims every mask in a batch to the smallest one). Context is
always a subset of "not target", so nothing the predictor must produce is visible to it.
"""

import dataclasses

import numpy as np

_CALIBRATION_DRAWS = 2000
_CALIBRATION_QUANTILE = 0.10
_MAX_TRIES = 200


@dataclasses.dataclass(frozen=True)
class MaskSpec:
  """One masked view.

  num_blocks target blocks, each covering `spatial_scale` of the H'xW' token plane with aspect
  ratio h/w in `aspect`, spanning `temporal_scale` of the time axis (3-D grids; 1.0 = tubes).
  context_scale None: context = complement of the targets (V-JEPA). Otherwise one square block
  of that area fraction, spanning all time, minus the targets (I-JEPA).
  context_frames (3-D only): predict the future. The context is every token of the first
  round(context_frames * T') time slices; targets are the blocks restricted to the later slices,
  or all of the later slices when num_blocks == 0. This view asks the predictor to extrapolate
  motion, which rewards features that carry where things are and how they move (the surprise
  evaluation uses the same past -> future prediction).
  """
  num_blocks: int
  spatial_scale: tuple[float, float]
  aspect: tuple[float, float] = (0.75, 1.5)
  temporal_scale: tuple[float, float] = (1.0, 1.0)
  context_scale: tuple[float, float] | None = None
  context_frames: float | None = None


def _context_slices(spec: MaskSpec, grid_shape) -> int:
  if len(grid_shape) != 3:
    raise ValueError(f"masks: context_frames needs a 3-D (T, H, W) token grid, got {grid_shape}")
  t = grid_shape[0]
  c = int(round(spec.context_frames * t))
  if not 1 <= c < t:
    raise ValueError(f"masks: context_frames={spec.context_frames} gives {c} of {t} time slices "
                     "as context; choose a fraction that leaves at least one slice on each side")
  return c


# Published recipes.
IJEPA_SPEC = MaskSpec(num_blocks=4, spatial_scale=(0.15, 0.2), aspect=(0.75, 1.5),
                      context_scale=(0.85, 1.0))
VJEPA_SHORT_SPEC = MaskSpec(num_blocks=8, spatial_scale=(0.15, 0.15))
VJEPA_LONG_SPEC = MaskSpec(num_blocks=2, spatial_scale=(0.7, 0.7))


def _block_extent(rng, height, width, scale, aspect):
  area = rng.uniform(*scale) * height * width
  ratio = rng.uniform(*aspect)
  h = int(np.clip(round(np.sqrt(area * ratio)), 1, height))
  w = int(np.clip(round(np.sqrt(area / ratio)), 1, width))
  return h, w


def sample_block(rng: np.random.Generator, grid_shape, scale, aspect, temporal_scale=(1.0, 1.0)):
  """Boolean grid with one block set (spatial block, extended over a span of time for 3-D)."""
  mask = np.zeros(grid_shape, bool)
  height, width = grid_shape[-2:]
  h, w = _block_extent(rng, height, width, scale, aspect)
  top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
  if len(grid_shape) == 3:
    t_len = int(np.clip(round(rng.uniform(*temporal_scale) * grid_shape[0]), 1, grid_shape[0]))
    t0 = rng.integers(0, grid_shape[0] - t_len + 1)
    mask[t0:t0 + t_len, top:top + h, left:left + w] = True
  else:
    mask[top:top + h, left:left + w] = True
  return mask


def sample_masks(rng: np.random.Generator, grid_shape, spec: MaskSpec):
  """Unconstrained draw: (target union, available context) as boolean grids."""
  target = np.zeros(grid_shape, bool)
  for _ in range(spec.num_blocks):
    target |= sample_block(rng, grid_shape, spec.spatial_scale, spec.aspect, spec.temporal_scale)
  if spec.context_frames is not None:
    c = _context_slices(spec, grid_shape)
    target = target if spec.num_blocks else np.ones(grid_shape, bool)
    target[:c] = False
    context = np.zeros(grid_shape, bool)
    context[:c] = True
  elif spec.context_scale is None:
    context = ~target
  else:
    context = sample_block(rng, grid_shape, spec.context_scale, (1.0, 1.0))
    context &= ~target
  return target, context


class MultiBlockMasker:
  """Draws (ctx_idx, tgt_idx) with fixed lengths (n_ctx, n_tgt) for one grid and spec."""

  def __init__(self, grid_shape, spec: MaskSpec):
    if len(grid_shape) not in (2, 3):
      raise ValueError(f"grid_shape must be (H, W) or (T, H, W), got {grid_shape}")
    self.grid_shape = tuple(int(g) for g in grid_shape)
    self.spec = spec
    if spec.context_frames is not None:
      _context_slices(spec, self.grid_shape)
    rng = np.random.default_rng(0)  # calibration is part of the spec, not of the data seed
    sizes = np.array([[m.sum() for m in sample_masks(rng, self.grid_shape, spec)]
                      for _ in range(_CALIBRATION_DRAWS)])
    self.n_tgt = int(np.quantile(sizes[:, 0], _CALIBRATION_QUANTILE))
    self.n_ctx = int(np.quantile(sizes[:, 1], _CALIBRATION_QUANTILE))
    if self.n_tgt < 1 or self.n_ctx < 1:
      raise ValueError(
          f"mask spec {spec} leaves {self.n_ctx} context / {self.n_tgt} target tokens on token "
          f"grid {self.grid_shape}; use a larger grid (smaller model.patch_size) or smaller "
          "block scales / fewer blocks in the masks config")

  def __call__(self, rng: np.random.Generator):
    for _ in range(_MAX_TRIES):
      target, context = sample_masks(rng, self.grid_shape, self.spec)
      tgt = np.flatnonzero(target)
      ctx = np.flatnonzero(context)
      if len(tgt) >= self.n_tgt and len(ctx) >= self.n_ctx:
        tgt = np.sort(rng.choice(tgt, self.n_tgt, replace=False))
        ctx = np.sort(rng.choice(ctx, self.n_ctx, replace=False))
        return ctx.astype(np.int32), tgt.astype(np.int32)
    raise RuntimeError(f"could not draw a mask meeting static counts for {self.spec}")
