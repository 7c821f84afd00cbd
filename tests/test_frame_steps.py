"""Frame steps (time scales): the mixed-step training source (data/frame_steps.py) and surprise
at several steps on one scale (eval/frame_step_surprise.py), checked by hand on a stub model."""

import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.data import frame_steps as fsd
from jepa_jax.eval import frame_step_surprise as fss
from jepa_jax.eval import surprise as sp


class _Counting:
  """Video i of n_frames frames: frame t holds the value 100 * (i % 2) + t."""

  def __init__(self, n_frames: int, length: int = 10):
    self.n_frames, self.length = n_frames, length

  def __len__(self):
    return self.length

  def __getitem__(self, i):
    t = np.arange(self.n_frames)
    return {"frames": (100 * (i % 2) + t)[:, None, None, None].astype(np.uint8)}


def test_source_mixes_steps_and_phases_deterministically():
  src = fsd.FrameStepSource(lambda k: _Counting(4 * k), 4, (1, 2))
  assert len(src) == 10
  values = [src[i]["frames"][:, 0, 0, 0].tolist() for i in range(6)]
  assert [src[i]["frame_step"] for i in range(6)] == [1, 2, 1, 2, 1, 2]
  assert values[0] == [0, 1, 2, 3] and values[2] == [0, 1, 2, 3]      # step 1: the video itself
  assert values[1] == [100, 102, 104, 106]                            # step 2, phase 0
  assert values[3] == [101, 103, 105, 107]                            # step 2, phase 1
  assert values[5] == [100, 102, 104, 106]                            # phases cycle
  np.testing.assert_array_equal(src[3]["frames"], src[3]["frames"])
  # One step: the wrapped source's videos, element for element.
  one = fsd.FrameStepSource(lambda k: _Counting(4 * k), 4, (1,))
  for i in range(4):
    np.testing.assert_array_equal(one[i]["frames"], _Counting(4)[i]["frames"])


def test_source_and_steps_are_checked():
  short = fsd.FrameStepSource(lambda k: _Counting(4), 4, (1, 2))
  with pytest.raises(ValueError, match=r"4 frames, fewer than 4 x 2.*make_source\(2\)"):
    short[1]
  for bad in ((), (0, 1), (1, 1), (1.5,), ("a",), 2):
    with pytest.raises(ValueError, match="distinct positive integers"):
      fsd.check_frame_steps(bad)
  assert fsd.check_frame_steps(("1", "2")) == (1, 2) and fsd.check_frame_steps([2, 1]) == (2, 1)


def _last_frame_mean(params, clips_BWHWC, context_frames):
  """The stub's error: the mean of the window's last frame, times params (a scale)."""
  del context_frames
  return params * jnp.mean(clips_BWHWC[:, -1].astype(jnp.float32), axis=(1, 2, 3))


def _stub(scale=1.0):
  return sp.SurpriseModel(_last_frame_mean, scale, window=3, frame_shape=(1, 1, 1))


def _ramp(n_videos=1, n_frames=8, offset=0):
  frames = np.zeros((n_videos, n_frames, 1, 1, 1), np.uint8)
  frames[:, :, 0, 0, 0] = offset + np.arange(n_frames)
  return frames


def test_windows_lie_where_their_frames_are():
  scores, w = fss.window_scores(_stub(), _ramp(), (1, 2), 1, (2,), batch_size=4)
  # Step 1: windows of 3 frames start at 0..5; step 2, phase 0 (frames 0 2 4 6) at 0, 2;
  # phase 1 (frames 1 3 5 7) at 1, 3.
  np.testing.assert_array_equal(w.step, [1] * 6 + [2] * 4)
  np.testing.assert_array_equal(w.first, [0, 1, 2, 3, 4, 5, 0, 2, 1, 3])
  np.testing.assert_array_equal(w.end, [2, 3, 4, 5, 6, 7, 4, 6, 5, 7])
  np.testing.assert_array_equal(w.context_end(2), [1, 2, 3, 4, 5, 6, 2, 4, 3, 5])
  # The stub's error is the last frame's value, which is the window's end frame on a ramp.
  np.testing.assert_allclose(scores[0, :, 0], w.end)
  ends, curve = fss.per_frame(scores[..., 0], w)
  np.testing.assert_array_equal(ends, [2, 3, 4, 5, 6, 7])
  np.testing.assert_allclose(curve[0], ends)


def test_calibration_puts_steps_on_one_scale():
  cal = _ramp(n_videos=2, n_frames=8)
  scores, w = fss.window_scores(_stub(), cal, (1, 2), 1, (2,))
  scales = fss.step_scales(scores, w, quantile=1.0)  # the largest calibration error per step
  assert scales == {1: 7.0, 2: 7.0}
  assert fss.step_scales(scores, w, quantile=0.5) == {1: pytest.approx(4.5),
                                                      2: pytest.approx(5.5)}
  out = fss.calibrated_scores(_stub(), _ramp(offset=10), (1, 2), 1, (2,), cal, quantile=0.5)
  rescaled, w2, scales2 = out
  assert scales2 == {1: pytest.approx(4.5), 2: pytest.approx(5.5)}
  np.testing.assert_allclose(rescaled[0, :, 0], (10 + w2.end) / np.where(w2.step == 1, 4.5, 5.5),
                             rtol=1e-6)
  # A model twice as large at every step gives the same rescaled scores: only the shape counts.
  doubled, _, _ = fss.calibrated_scores(_stub(2.0), _ramp(offset=10), (1, 2), 1, (2,), cal,
                                        quantile=0.5)
  np.testing.assert_allclose(doubled, rescaled, rtol=1e-6)


def test_one_step_is_the_plain_surprise():
  frames = np.random.default_rng(0).integers(0, 256, (3, 9, 1, 1, 1), np.uint8)
  plain = sp.surprise(_stub(), frames, 2, (2,), "power", batch_size=4, power=8.0)
  at_steps = fss.surprise_at_steps(_stub(), frames, (1,), 2, (2,), "power", 8.0, batch_size=4)
  np.testing.assert_array_equal(at_steps["video"], plain["video"])
  np.testing.assert_array_equal(at_steps["per_frame"], plain["per_window"])
  np.testing.assert_array_equal(at_steps["window_end_frames"], plain["starts"] + 2)
  assert at_steps["scales"] == {1: 1.0}


def test_bad_settings_say_what_to_change():
  with pytest.raises(ValueError, match="needs calibration videos"):
    fss.calibrated_scores(_stub(), _ramp(), (1, 2), 1, (2,))
  with pytest.raises(ValueError, match="at least 7 frames.*frame step"):
    fss.window_scores(_stub(), _ramp(n_frames=6), (1, 3), 1, (2,))
  with pytest.raises(ValueError, match="calibration quantile 0"):
    fss.check_quantile(0.0)
  _, w = fss.window_scores(_stub(), _ramp(), (1, 2), 1, (2,))
  with pytest.raises(ValueError, match=r"no calibration scale for frame step\(s\) \[2\]"):
    fss.rescale(np.ones((1, 10, 1)), w, {1: 1.0})
  with pytest.raises(ValueError, match="positive errors at every step"):
    fss.step_scales(np.zeros((1, 10, 1)), w)
