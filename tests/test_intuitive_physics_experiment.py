"""experiments/intuitive_physics.py end to end on its debug preset: a debug V-JEPA, the pixel
baseline and the frame JEPA train, every model is scored, results.json and the plots appear; a
rerun reuses the saved frame JEPA and refuses one trained with other settings."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("vjepa", "random_init", "pixel", "frame_jepa", "frame_random_init", "frame_pixel",
          "motion", "stillness")


def _run(workdir, *overrides):
  # A child process with the persistent compilation cache off: it trains multi-device programs
  # that other tests compile too, which hung an all-reduce rendezvous (BUILD_NOTES session 9).
  env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
  return subprocess.run(
      [sys.executable, "-m", "experiments.intuitive_physics",
       "--config=experiments/configs/intuitive_physics.py:debug", f"--workdir={workdir}",
       *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_debug_preset_scores_every_model(tmp_path):
  proc = _run(tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "frame JEPA: 6 steps" in proc.stdout and "frame pixel baseline: 4 steps" in proc.stdout
  results = json.load(open(tmp_path / "results.json"))
  assert tuple(results["models"]) == MODELS
  assert len(results["frame_jepa_history"]) >= 1
  types = set(results["types"])
  for name in MODELS:
    model = results["models"][name]
    assert set(model["report"]) == {"mean", "max", "power"}
    assert set(model["report"]["max"]) == types | {"mean"}
    assert os.path.isfile(model["plot"])
    assert 0.0 <= model["report"]["max"]["mean"]["pairwise_acc"] <= 1.0
    assert 0.0 <= model["report"]["power"]["mean"]["pairwise_acc"] <= 1.0
  assert "aggregate=power mean (p = 64) (configured)" in proc.stdout
  assert "95 % intervals (Wilson)" in proc.stdout
  ci = results["models"]["frame_jepa"]["report"]["power"]["gravity"]["pairwise_ci95"]
  assert 0.0 <= ci[0] <= results["models"]["frame_jepa"]["report"]["power"]["gravity"][
      "pairwise_acc"] <= ci[1] <= 1.0
  # The frame JEPA scores its own windows: 2 context + 2 predicted frames, stride 1.
  frame_ends = results["models"]["frame_jepa"]["window_end_frames"]
  assert frame_ends == list(range(3, results["config"]["benchmark"]["num_frames"]))
  for name in ("motion", "stillness"):  # the model-free checks score the same windows
    assert results["models"][name]["window_end_frames"] == frame_ends
  # The debug preset trains and scores the frame models at frame steps 1 and 2, each step's
  # errors rescaled by calibration videos; the V-JEPA scores its own windows at step 1.
  assert "frame steps (1, 2)" in proc.stdout and "4 possible calibration videos" in proc.stdout
  for name in ("frame_jepa", "frame_random_init", "frame_pixel", "motion"):
    assert results["models"][name]["frame_steps"] == [1, 2]
    assert sorted(results["models"][name]["step_scales"]) == ["1", "2"]
  assert results["models"]["vjepa"]["frame_steps"] == [1]
  assert results["models"]["vjepa"]["step_scales"] == {"1": 1.0}
  assert os.path.isfile(tmp_path / "accuracy.png")

  # Rerun with other scoring: the saved frame JEPA is reused, also when it was saved before
  # the training keys added since existed; other training settings are refused before anything
  # is trained or overwritten.
  meta_path = tmp_path / "frame_jepa" / "frame_jepa.json"
  with open(meta_path) as f:
    meta = json.load(f)
  for key in ("windows_per_clip", "residual", "train_min_speed", "dilations", "separate_trunks",
              "frame_weights"):
    del meta["training"][key]
  del meta["architecture"]["residual"], meta["architecture"]["separate_trunks"]
  with open(meta_path, "w") as f:
    json.dump(meta, f)
  saved = open(meta_path).read()
  proc = _run(tmp_path, "--config.pixel.enabled=False", "--config.frame_pixel.enabled=False",
              "--config.frame.top_k=3", "--config.frame.token_power=3.0",
              "--config.frame.train_min_speed=1.0")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "reusing the frame JEPA" in proc.stdout
  assert "token pooling: power mean (q = 3) of the top 3" in proc.stdout
  again = json.load(open(tmp_path / "results.json"))
  assert again["frame_jepa_history"] == results["frame_jepa_history"]
  assert again["models"]["frame_jepa"]["window_end_frames"] == frame_ends
  proc = _run(tmp_path, "--config.pixel.enabled=False", "--config.frame.lr=0.5",
              "--config.frame.frame_steps=(1,)")
  assert proc.returncode != 0 and "trained with other settings" in proc.stderr
  assert "'lr': (0.001, 0.5)" in proc.stderr and "'frame_steps': ([1, 2], [1])" in proc.stderr
  # Saved before dilations existed: read as the predictor's (1, 2, 4, 1), so others are refused.
  proc = _run(tmp_path, "--config.pixel.enabled=False", "--config.frame.train_min_speed=1.0",
              "--config.frame.dilations=(1, 1)")
  assert proc.returncode != 0 and "'dilations': ([1, 2, 4, 1], [1, 1])" in proc.stderr
  proc = _run(tmp_path, "--config.pixel.enabled=False", "--config.frame.dilations=(1, 0)")
  assert proc.returncode != 0 and "frame.dilations=(1, 0)" in proc.stderr
  proc = _run(tmp_path, "--config.pixel.enabled=False", "--config.frame.frame_weights=(1.0,)")
  assert proc.returncode != 0 and "frame.frame_weights=(1.0,)" in proc.stderr
  proc = _run(tmp_path, "--config.pixel.enabled=False", "--config.frame.token_power=0.5")
  assert proc.returncode != 0 and "frame.token_power=0.5" in proc.stderr
  # Saved before train_min_speed existed: trained on the pretraining's speeds (lowest 1.0).
  proc = _run(tmp_path, "--config.pixel.enabled=False")
  assert proc.returncode != 0 and "'train_min_speed': (1.0, 0.0)" in proc.stderr
  proc = _run(tmp_path, "--config.pixel.enabled=False", "--config.frame.train_min_speed=9.0")
  assert proc.returncode != 0 and "pretraining's highest, 3.5 px/frame" in proc.stderr
  proc = _run(tmp_path, "--config.pixel.enabled=False", "--config.frame.windows_per_clip=2")
  assert proc.returncode != 0 and "do not fit the 4-frame training videos" in proc.stderr
  proc = _run(tmp_path, "--config.surprise.power=0.5")  # refused before anything loads
  assert proc.returncode != 0 and "exponent must be >= 1" in proc.stderr
  assert "benchmark:" not in proc.stdout and "frame JEPA" not in proc.stdout
  assert open(tmp_path / "frame_jepa" / "frame_jepa.json").read() == saved
