"""Scoring a user's own videos (eval/video_surprise.py, scripts/score_surprise.py): file loading
and its errors, the model checks, hand-checked scores, and the script end to end on a checkpoint."""

import functools
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.eval import surprise as sp
from jepa_jax.eval import video_surprise as vs

_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "score_surprise.py")


@functools.cache  # once per process: the module defines absl flags
def _script():
  spec = importlib.util.spec_from_file_location("score_surprise", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _mean_after_context(params, clips_BWHWC, context_frames):
  del params
  return jnp.mean(clips_BWHWC[:, context_frames:].astype(jnp.float32), axis=(1, 2, 3, 4))


STUB = sp.SurpriseModel(_mean_after_context, None, window=4, frame_shape=(2, 2, 1), tubelet=2)


def test_one_video_gets_a_batch_axis_and_floats_are_scaled():
  one = np.full((5, 2, 2, 1), 0.5, np.float32)
  out = vs.to_uint8_videos(one)
  assert out.shape == (1, 5, 2, 2, 1) and out.dtype == np.uint8 and int(out.max()) == 128


@pytest.mark.parametrize("array, match", [
    (np.zeros((2, 2, 2), np.uint8), r"\(N, T, H, W, C\)"),
    (np.full((1, 4, 2, 2, 1), 2.0, np.float32), r"\[0, 1\]"),
    (np.zeros((1, 4, 2, 2, 1), np.int16), "dtype int16"),
])
def test_bad_arrays_are_named(array, match):
  with pytest.raises(ValueError, match=match):
    vs.to_uint8_videos(array)


def test_load_videos_from_npy_and_npz(tmp_path):
  frames = np.arange(2 * 4 * 2 * 2, dtype=np.uint8).reshape(2, 4, 2, 2, 1)
  np.save(tmp_path / "a.npy", frames)
  np.savez(tmp_path / "b.npz", frames=frames, other=np.zeros(3))
  np.savez(tmp_path / "c.npz", clips=frames)
  for name in ("a.npy", "b.npz", "c.npz"):
    np.testing.assert_array_equal(vs.load_videos(str(tmp_path / name)), frames)
  np.savez(tmp_path / "d.npz", x=frames, y=frames)
  with pytest.raises(ValueError, match=r"\['x', 'y'\].*--key"):
    vs.load_videos(str(tmp_path / "d.npz"))
  np.testing.assert_array_equal(vs.load_videos(str(tmp_path / "d.npz"), key="y"), frames)
  with pytest.raises(FileNotFoundError, match="no such file"):
    vs.load_videos(str(tmp_path / "missing.npy"))
  (tmp_path / "e.txt").write_text("0")
  with pytest.raises(ValueError, match=".npy or .npz"):
    vs.load_videos(str(tmp_path / "e.txt"))


def test_model_checks_say_what_to_change():
  with pytest.raises(ValueError, match=r"\(3, 3, 1\).*pretrained on \(2, 2, 1\).*resize"):
    sp.check_frames(np.zeros((1, 4, 3, 3, 1), np.uint8), STUB)
  with pytest.raises(ValueError, match="3 frames.*at least 4"):
    sp.check_frames(np.zeros((1, 3, 2, 2, 1), np.uint8), STUB)


def test_scores_by_hand():
  # video 0: frame t has value t; video 1: constant 7. Windows of 4 frames at stride 2 over 8
  # frames start at 0, 2, 4; context 2 -> mean of frames s+2, s+3.
  frames = np.zeros((2, 8, 2, 2, 1), np.uint8)
  frames[0] = np.arange(8, dtype=np.uint8)[:, None, None, None]
  frames[1] = 7
  out = vs.score(STUB, frames, stride=2, context_frames=(2,), how="max", batch_size=2)
  np.testing.assert_allclose(out["per_window"], [[2.5, 4.5, 6.5], [7, 7, 7]])
  np.testing.assert_allclose(out["video"], [6.5, 7.0])
  np.testing.assert_array_equal(out["window_end_frames"], [3, 5, 7])


def _debug_checkpoint(tmp_path, cfg):
  from jepa_jax.train import checkpoint as ckpt
  from jepa_jax.train import pretrain as jepa
  models = jepa.make_models(cfg)
  example = jepa.dummy_batch(cfg, jepa.make_maskers(cfg, models.grid_shape), 1)
  state = jepa.init_state(models, cfg, jax.random.key(0), example, cfg.total_steps)
  manager = ckpt.make_manager(str(tmp_path / "pre" / "checkpoints"), 1, 1, async_save=False)
  ckpt.save(manager, 2, state, None, cfg, force=True)
  manager.wait_until_finished()
  manager.close()
  return str(tmp_path / "pre")


def test_script_scores_a_file_and_keeps_earlier_results(tmp_path, cfg):
  pre = _debug_checkpoint(tmp_path, cfg)
  t, size = cfg.data.physics.num_frames, cfg.data.physics.size  # debug: 4 x 32 x 32
  videos = np.random.default_rng(0).integers(0, 256, (3, t + 4, size, size, 3), np.uint8)
  np.save(tmp_path / "videos.npy", videos)
  script, out = _script(), str(tmp_path / "out")
  written = script.run(pre, str(tmp_path / "videos.npy"), out, stride=2, random_init=0,
                       batch_size=4, progress=False)
  assert set(written) == {"vjepa", "random_init"}
  result = json.loads(open(os.path.join(out, "surprise.json")).read())
  assert result["num_videos"] == 3 and result["pretrained_step"] == 2
  assert result["context_frames"] == [cfg.model.patch_size[0]]  # half the 4-frame window
  assert result["window_end_frames"] == [3, 5, 7]
  assert result["aggregate"] == "power" and result["power"] == sp.DEFAULT_POWER
  assert all(len(v["per_window"]) == 3 and v["score"] == pytest.approx(
      sp.power_mean(np.array([v["per_window"]]), sp.DEFAULT_POWER)[0])
             for v in result["videos"])
  assert os.path.getsize(os.path.join(out, "surprise_curves.png")) > 1000
  assert os.path.isfile(os.path.join(out, "random_init", "surprise.json"))
  before = open(os.path.join(out, "surprise.json")).read()
  with pytest.raises(FileExistsError, match="--overwrite"):  # refused before the model loads
    script.run("no_such_workdir", str(tmp_path / "videos.npy"), out, stride=2, progress=False)
  assert open(os.path.join(out, "surprise.json")).read() == before
  np.save(tmp_path / "small.npy", videos[:, :, :16, :16])
  with pytest.raises(ValueError, match="resize"):
    script.run(pre, str(tmp_path / "small.npy"), str(tmp_path / "out2"), progress=False)
  assert not os.path.exists(tmp_path / "out2")


def test_script_scores_with_a_saved_frame_jepa(tmp_path):
  from jepa_jax.train import frame_jepa as fj
  model = fj.make_model(context=2, width=8, dim=4)
  fj.save(str(tmp_path / "fj"), model, fj.init_params(model, (16, 16, 3), 1), (16, 16, 3),
          {"training": {"steps": 5}})
  videos = np.random.default_rng(0).integers(0, 256, (2, 6, 16, 16, 3), np.uint8)
  np.save(tmp_path / "videos.npy", videos)
  script, out = _script(), str(tmp_path / "out")
  written = script.run("", str(tmp_path / "videos.npy"), out, random_init=0,  # stride 1
                       batch_size=4, progress=False, frame_jepa_dir=str(tmp_path / "fj"), top_k=3)
  assert set(written) == {"frame_jepa", "random_init"}
  result = json.loads(open(os.path.join(out, "surprise.json")).read())
  # Windows of 2 context + 1 predicted frame, one per frame from the third on.
  assert result["context_frames"] == [2] and result["window_end_frames"] == [2, 3, 4, 5]
  assert result["top_k"] == 3 and result["trained_steps"] == 5
  with pytest.raises(ValueError, match="exactly one model"):
    script.run("", str(tmp_path / "videos.npy"), str(tmp_path / "out2"), progress=False)
  # The quadratic mean over each frame's token errors by default; the plain mean is below it.
  plain = script.run("", str(tmp_path / "videos.npy"), str(tmp_path / "out_mean"),
                     batch_size=4, progress=False, frame_jepa_dir=str(tmp_path / "fj"),
                     top_k=3, token_power=1.0)
  result_mean = json.loads(open(plain["frame_jepa"]["json"]).read())
  assert result["token_power"] == 2.0 and result_mean["token_power"] == 1.0
  assert result_mean["window_end_frames"] == result["window_end_frames"]
  for quadratic, mean in zip(result["videos"], result_mean["videos"]):
    assert all(m < q for m, q in zip(mean["per_window"], quadratic["per_window"]))
  with pytest.raises(ValueError, match="token_power=0.5"):  # refused before any work
    script.run("", str(tmp_path / "videos.npy"), str(tmp_path / "out4"), progress=False,
               frame_jepa_dir=str(tmp_path / "fj"), token_power=0.5)
  with pytest.raises(ValueError, match="leave them unset"):
    script.run(str(tmp_path / "any_workdir"), str(tmp_path / "videos.npy"),
               str(tmp_path / "out5"), progress=False, token_power=3.0)
  assert not any(os.path.exists(tmp_path / d) for d in ("out4", "out5"))
  with pytest.raises(ValueError, match=r"--horizon\) <= 1"):  # raw inputs: 1 frame
    script.run("", str(tmp_path / "videos.npy"), str(tmp_path / "out3"), progress=False,
               frame_jepa_dir=str(tmp_path / "fj"), horizon=2)


def test_script_scores_a_multi_step_frame_jepa_at_its_steps(tmp_path):
  from jepa_jax.train import frame_jepa as fj
  model = fj.make_model(context=2, width=8, dim=4)
  fj.save(str(tmp_path / "fj"), model, fj.init_params(model, (16, 16, 3), 1), (16, 16, 3),
          {"training": {"steps": 5, "frame_steps": [1, 2]}})
  rng = np.random.default_rng(0)
  videos = rng.integers(0, 256, (2, 6, 16, 16, 3), np.uint8)
  np.save(tmp_path / "videos.npy", videos)
  np.save(tmp_path / "cal.npy", rng.integers(0, 256, (3, 7, 16, 16, 3), np.uint8))
  script = _script()
  written = script.run("", str(tmp_path / "videos.npy"), str(tmp_path / "out"), batch_size=4,
                       progress=False, frame_jepa_dir=str(tmp_path / "fj"))
  result = json.loads(open(written["frame_jepa"]["json"]).read())
  # The steps it was trained at; windows of 3 frames end at 2..5 (step 1), 4 and 5 (step 2).
  assert result["frame_steps"] == [1, 2] and result["calibration"] == "the videos"
  assert result["window_end_frames"] == [2, 3, 4, 5]
  assert set(result["step_scales"]) == {"1", "2"} and min(result["step_scales"].values()) > 0
  # The curve holds the largest window error ending at each frame; the power mean over all the
  # windows lies below the largest.
  assert all(0 < v["score"] <= max(v["per_window"]) * (1 + 1e-6) for v in result["videos"])
  # Own calibration videos, or one step only (no rescaling: the plain window errors).
  own = script.run("", str(tmp_path / "videos.npy"), str(tmp_path / "out_cal"), batch_size=4,
                   progress=False, frame_jepa_dir=str(tmp_path / "fj"),
                   calibration=str(tmp_path / "cal.npy"))
  own = json.loads(open(own["frame_jepa"]["json"]).read())
  assert own["calibration"].endswith("cal.npy") and own["step_scales"] != result["step_scales"]
  one = script.run("", str(tmp_path / "videos.npy"), str(tmp_path / "out_one"), batch_size=4,
                   progress=False, frame_jepa_dir=str(tmp_path / "fj"), frame_steps=("1",))
  one = json.loads(open(one["frame_jepa"]["json"]).read())
  assert one["frame_steps"] == [1] and "step_scales" not in one
  with pytest.raises(ValueError, match="at least 7 frames"):
    script.run("", str(tmp_path / "videos.npy"), str(tmp_path / "out_3"), progress=False,
               frame_jepa_dir=str(tmp_path / "fj"), frame_steps=(1, 3))
  with pytest.raises(FileNotFoundError, match="--calibration=.*no such file"):
    script.run("", str(tmp_path / "videos.npy"), str(tmp_path / "out_3"), progress=False,
               frame_jepa_dir=str(tmp_path / "fj"), calibration=str(tmp_path / "missing.npy"))
  with pytest.raises(ValueError, match="leave them unset"):
    script.run(str(tmp_path / "any_workdir"), str(tmp_path / "videos.npy"),
               str(tmp_path / "out_v"), progress=False, frame_steps=(1, 2))
  assert not any(os.path.exists(tmp_path / d) for d in ("out_3", "out_v"))
