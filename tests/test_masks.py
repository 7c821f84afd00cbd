"""Multi-block masks: static counts, disjointness, determinism, block geometry, tubes, errors."""

import functools
import math

import numpy as np
import pytest

from jepa_jax import masks as M

CASES = [
    ("ijepa", (8, 8), M.IJEPA_SPEC),
    ("ijepa", (14, 14), M.IJEPA_SPEC),
    ("vjepa_short", (4, 8, 8), M.VJEPA_SHORT_SPEC),
    ("vjepa_long", (4, 8, 8), M.VJEPA_LONG_SPEC),
    ("vjepa_short", (8, 14, 14), M.VJEPA_SHORT_SPEC),
    ("vjepa_long", (8, 14, 14), M.VJEPA_LONG_SPEC),
    ("future_all", (4, 8, 8), M.MaskSpec(0, (0.15, 0.15), context_frames=0.5)),
    ("future_blocks", (8, 14, 14), M.MaskSpec(4, (0.15, 0.15), context_frames=0.25)),
]
IDS = [f"{name}-{'x'.join(map(str, g))}" for name, g, _ in CASES]
DRAWS = 40


@functools.lru_cache(maxsize=None)
def _masker(grid, spec):
  return M.MultiBlockMasker(grid, spec)  # calibration takes ~0.5 s: build each once


@pytest.mark.parametrize("name, grid, spec", CASES, ids=IDS)
def test_static_counts_disjoint_sorted_in_range(name, grid, spec):
  del name
  masker = _masker(grid, spec)
  n_tokens = math.prod(grid)
  assert 1 <= masker.n_ctx and 1 <= masker.n_tgt and masker.n_ctx + masker.n_tgt <= n_tokens
  rng = np.random.default_rng(123)
  for _ in range(DRAWS):
    ctx, tgt = masker(rng)
    assert ctx.dtype == np.int32 and tgt.dtype == np.int32
    assert ctx.shape == (masker.n_ctx,) and tgt.shape == (masker.n_tgt,)   # static shapes
    for idx in (ctx, tgt):
      assert np.all(np.diff(idx) > 0)                       # sorted and unique
      assert idx[0] >= 0 and idx[-1] < n_tokens
    assert np.intersect1d(ctx, tgt).size == 0               # nothing to predict is visible


@pytest.mark.parametrize("name, grid, spec", CASES, ids=IDS)
def test_deterministic_from_seed(name, grid, spec):
  if name == "future_all":
    pytest.skip("past -> all of the future has a single possible mask")
  masker = _masker(grid, spec)

  def draws(seed, n=5):
    rng = np.random.default_rng(seed)
    return [np.concatenate(masker(rng)) for _ in range(n)]

  # Same seed -> identical sequence of masks; different seed -> different masks.
  assert all(np.array_equal(x, y) for x, y in zip(draws(3), draws(3)))
  assert not any(np.array_equal(x, y) for x, y in zip(draws(3), draws(4)))
  # Successive draws from one generator differ (the rng advances).
  seq = draws(5)
  assert not np.array_equal(seq[0], seq[1])


def test_static_counts_are_part_of_the_spec():
  # Calibration uses its own fixed rng: every process / restart gets the same static shapes,
  # whatever data rng was used before.
  np.random.seed(99)  # the global numpy rng must not matter either
  a, b = M.MultiBlockMasker((8, 8), M.IJEPA_SPEC), _masker((8, 8), M.IJEPA_SPEC)
  assert (a.n_ctx, a.n_tgt) == (b.n_ctx, b.n_tgt)


def _area_bounds(shape_hw, scale, aspect):
  """Bounds on h*w for one block: h, w are rounded from sqrt(a*r), sqrt(a/r) (+-0.5 each)."""
  height, width = shape_hw
  area = lambda s: s * height * width
  spread = lambda a: 0.5 * max(math.sqrt(a * r) + math.sqrt(a / r) for r in aspect)
  lo = area(scale[0]) - spread(area(scale[0])) + 0.25
  hi = area(scale[1]) + spread(area(scale[1])) + 0.25
  return max(lo, 1), min(hi, height * width)


@pytest.mark.parametrize("grid, scale, aspect", [
    ((14, 14), (0.15, 0.2), (0.75, 1.5)),    # I-JEPA target
    ((14, 14), (0.85, 1.0), (1.0, 1.0)),     # I-JEPA context
    ((16, 16), (0.15, 0.15), (0.75, 1.5)),   # V-JEPA short range
    ((16, 16), (0.7, 0.7), (0.75, 1.5)),     # V-JEPA long range
    ((4, 16, 16), (0.15, 0.15), (0.75, 1.5)),
])
def test_sample_block_area_and_shape(grid, scale, aspect):
  rng = np.random.default_rng(0)
  lo, hi = _area_bounds(grid[-2:], scale, aspect)
  areas = []
  for _ in range(200):
    block = M.sample_block(rng, grid, scale, aspect)
    plane = block[0] if block.ndim == 3 else block
    if block.ndim == 3:  # temporal_scale (1, 1): the block is a tube over all time
      assert all(np.array_equal(block[t], plane) for t in range(grid[0]))
    rows, cols = np.flatnonzero(plane.any(1)), np.flatnonzero(plane.any(0))
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert plane.sum() == h * w                               # one solid rectangle
    assert lo <= h * w <= hi, (h, w, lo, hi)
    areas.append(h * w)
  # The mean is near the middle of the scale range (not stuck at a bound).
  mid = 0.5 * (scale[0] + scale[1]) * grid[-1] * grid[-2]
  assert abs(np.mean(areas) - mid) <= 0.15 * mid


def test_sample_block_temporal_extent():
  rng = np.random.default_rng(1)
  for _ in range(50):
    block = M.sample_block(rng, (8, 10, 10), (0.2, 0.2), (1.0, 1.0), temporal_scale=(0.5, 0.5))
    in_time = np.flatnonzero(block.any((1, 2)))
    assert len(in_time) == 4 and np.all(np.diff(in_time) == 1)  # contiguous half of the clip


@pytest.mark.parametrize("spec", [M.VJEPA_SHORT_SPEC, M.VJEPA_LONG_SPEC], ids=["short", "long"])
def test_vjepa_targets_are_tubes_and_context_is_the_rest(spec):
  rng = np.random.default_rng(2)
  for _ in range(30):
    target, context = M.sample_masks(rng, (8, 14, 14), spec)
    # Each target spatial location is masked in every time slice.
    assert all(np.array_equal(target[t], target[0]) for t in range(8))
    np.testing.assert_array_equal(context, ~target)


def test_ijepa_context_is_one_block_minus_targets():
  rng = np.random.default_rng(3)
  lo, hi = _area_bounds((14, 14), M.IJEPA_SPEC.context_scale, (1.0, 1.0))
  for _ in range(50):
    target, context = M.sample_masks(rng, (14, 14), M.IJEPA_SPEC)
    assert not (context & target).any()
    rows, cols = np.flatnonzero(context.any(1)), np.flatnonzero(context.any(0))
    box = np.zeros_like(context)
    box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    # The bounding box lies inside the context block, so every non-target cell of it is context.
    np.testing.assert_array_equal(context, box & ~target)
    assert box.sum() <= hi
    # Context block is big (85-100%), targets are 4 blocks of 15-20%: context is a large chunk.
    assert context.sum() >= lo - target.sum()


def test_masker_context_inside_block_for_ijepa():
  masker = _masker((14, 14), M.IJEPA_SPEC)
  rng = np.random.default_rng(4)
  for _ in range(20):
    ctx, tgt = masker(rng)
    # Targets fill 4 blocks; the I-JEPA target union is ~50% of the tokens, context the rest.
    assert masker.n_tgt >= 0.3 * 196 and masker.n_ctx >= 0.2 * 196
    assert np.intersect1d(ctx, tgt).size == 0


def test_aggressive_spec_on_tiny_grid_raises():
  too_big = M.MaskSpec(num_blocks=4, spatial_scale=(0.9, 1.0))  # targets cover everything
  with pytest.raises(ValueError, match="larger grid"):
    M.MultiBlockMasker((2, 2), too_big)
  with pytest.raises(ValueError, match="larger grid"):
    M.MultiBlockMasker((1, 2, 2), M.VJEPA_LONG_SPEC)


def test_debug_batch_masks(debug_models, debug_batch):
  # The shared fixture batch: per-example masks stacked into static (B, n) index arrays.
  models, maskers = debug_models
  assert models.grid_shape == (2, 4, 4)
  (view,) = debug_batch["masks"]
  assert view["ctx"].shape == (8, maskers[0].n_ctx) and view["tgt"].shape == (8, maskers[0].n_tgt)
  for ctx, tgt in zip(view["ctx"], view["tgt"]):
    assert np.intersect1d(ctx, tgt).size == 0 and tgt.max() < 32
  assert len({t.tobytes() for t in view["tgt"]}) > 1   # one mask per example, not one per batch


def test_bad_grid_rank_raises():
  with pytest.raises(ValueError, match=r"\(H, W\) or \(T, H, W\)"):
    M.MultiBlockMasker((16,), M.IJEPA_SPEC)


@pytest.mark.parametrize("num_blocks", [0, 4])
def test_future_view_context_is_the_past_targets_the_future(num_blocks):
  grid = (4, 8, 8)
  spec = M.MaskSpec(num_blocks, (0.15, 0.15), context_frames=0.5)
  masker = _masker(grid, spec)
  past = np.arange(2 * 64)                     # tokens of time slices 0 and 1 (row-major)
  assert masker.n_ctx == len(past)
  if num_blocks == 0:
    assert masker.n_tgt == 2 * 64              # everything after the context
  rng = np.random.default_rng(5)
  for _ in range(20):
    ctx, tgt = masker(rng)
    np.testing.assert_array_equal(ctx, past)
    assert tgt.min() >= len(past)


@pytest.mark.parametrize("grid, frac", [((8, 8), 0.5), ((4, 8, 8), 0.1), ((4, 8, 8), 1.0)])
def test_future_view_bad_fraction_or_grid_is_a_clear_error(grid, frac):
  with pytest.raises(ValueError, match="context_frames"):
    M.MultiBlockMasker(grid, M.MaskSpec(0, (0.15, 0.15), context_frames=frac))
