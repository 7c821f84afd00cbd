"""The model-free motion / stillness scores (eval/motion_baseline.py): window errors by hand,
their windows in the surprise driver, and a vanishing ball read as less change."""

import numpy as np
import pytest

from jepa_jax.eval import motion_baseline, surprise

FRAME = (8, 8, 3)


def _clips(b, t, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (b, t, *FRAME), dtype=np.uint8)


@pytest.mark.parametrize("context", [1, 2, 3])
def test_window_errors_by_hand(context):
  clips = _clips(2, 4)
  x = clips.astype(np.float64) / 255
  # predicted frames context..3, each compared with the frame before it
  change = np.mean([np.abs(x[:, t] - x[:, t - 1]).mean((1, 2, 3)) for t in range(context, 4)],
                   axis=0)
  motion = motion_baseline.window_error_fn("motion")(None, clips, context)
  still = motion_baseline.window_error_fn("stillness")(None, clips, context)
  np.testing.assert_allclose(motion, change, rtol=1e-5)
  np.testing.assert_allclose(still, 1.0 - change, rtol=1e-5)


def test_a_vanishing_ball_is_less_motion_more_stillness():
  frames = np.zeros((2, 6, *FRAME), np.uint8)
  for t in range(6):  # a 2x2 ball moving right one pixel per frame
    frames[:, t, 3:5, t:t + 2] = 255
  frames[1, 4:] = 0  # in the twin it vanishes at frame 4
  models = motion_baseline.surprise_models(3, FRAME, 2)
  for kind, impossible_wins in (("motion", False), ("stillness", True)):
    scores, starts = surprise.window_scores(models[kind], frames, 1, (2,), 4)
    np.testing.assert_array_equal(starts, [0, 1, 2, 3])
    np.testing.assert_array_equal(scores[0, :2], scores[1, :2])  # shared prefix windows
    video, _ = surprise.aggregate(scores, "power", 64.0)
    # the vanishing frame itself changes as much as a move; after it nothing changes
    assert (video[1] > video[0]) == impossible_wins


def test_bad_kind_and_context_are_refused():
  with pytest.raises(ValueError, match="choose one of"):
    motion_baseline.window_error_fn("speed")
  with pytest.raises(ValueError, match="predicted frame"):
    motion_baseline.surprise_models(3, FRAME, 3)
  with pytest.raises(ValueError, match="context_frames=0"):
    motion_baseline.window_error_fn("motion")(None, _clips(1, 3), 0)
