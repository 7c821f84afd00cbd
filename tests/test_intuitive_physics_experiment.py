"""experiments/intuitive_physics.py end to end on its debug preset: a debug V-JEPA, the pixel
baseline and the frame JEPA train, every model is scored, results.json and the plots appear."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("vjepa", "random_init", "pixel", "frame_jepa", "frame_random_init")


def test_debug_preset_scores_every_model(tmp_path):
  # A child process with the persistent compilation cache off: it trains multi-device programs
  # that other tests compile too, which hung an all-reduce rendezvous (BUILD_NOTES session 9).
  env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.intuitive_physics",
       "--config=experiments/configs/intuitive_physics.py:debug", f"--workdir={tmp_path}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "frame JEPA: 6 steps" in proc.stdout
  results = json.load(open(tmp_path / "results.json"))
  assert tuple(results["models"]) == MODELS
  assert len(results["frame_jepa_history"]) >= 1
  types = set(results["types"])
  for name in MODELS:
    model = results["models"][name]
    assert set(model["report"]["max"]) == types | {"mean"}
    assert os.path.isfile(model["plot"])
    assert 0.0 <= model["report"]["max"]["mean"]["pairwise_acc"] <= 1.0
  # The frame JEPA scores its own windows: 2 context + 2 predicted frames, stride 1.
  frame_ends = results["models"]["frame_jepa"]["window_end_frames"]
  assert frame_ends == list(range(3, results["config"]["benchmark"]["num_frames"]))
  assert os.path.isfile(tmp_path / "accuracy.png")
