"""The small trainers' shared pieces (train/clip_training.py): clip sampling, the host loop."""

import chex
import numpy as np
import pytest

from jepa_jax.train import clip_training as ct


def test_sample_clips_cuts_consecutive_frames():
  video = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
  source = [{"frames": video}] * 3
  clips = ct.sample_clips(source, np.random.default_rng(0), 7, 3, clips_per_video=2)
  chex.assert_shape(clips, (7, 3, 2, 2, 3))
  first = clips[:, :, 0, 0, 0].astype(int)
  np.testing.assert_array_equal(np.diff(first, axis=1), 1)
  with pytest.raises(ValueError, match=r"shorter than the training clips of 11 frames"):
    ct.sample_clips(source, np.random.default_rng(0), 2, 11, clips_per_video=1)


def test_run_steps_threads_state_and_logs_every_n_steps_and_the_last(capsys):
  batches = iter(range(100))

  def step(params, opt_state, batch):  # params accumulate the batches seen, opt_state counts
    return params + batch, opt_state + 1, float(batch), {"seen": params + batch}

  params, history = ct.run_steps(step, 0, 0, lambda: next(batches), steps=7, log_every=3,
                                 label="toy")
  assert params == sum(range(7))
  assert [h["step"] for h in history] == [3, 6, 7]
  assert [h["loss"] for h in history] == [2.0, 5.0, 6.0]
  assert history[-1]["seen"] == params
  assert all(h["seconds"] >= 0 for h in history)
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 3 and lines[0].startswith("toy step 3/7: loss 2")
  assert all("ETA" in line for line in lines)


def test_run_steps_is_quiet_without_a_label(capsys):
  ct.run_steps(lambda p, o, b: (p, o, 0.0, {}), 0, 0, lambda: None, steps=2, log_every=1)
  assert capsys.readouterr().out == ""
