"""scripts/bench_pretrain.py end to end (debug preset): it prints its figures, and its FLOPs are
model FLOPs, the same with the layer stack scanned and rematerialised as without."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench(*overrides):
  cmd = [sys.executable, "scripts/bench_pretrain.py", "--steps=1",
         "--config=experiments/configs/pretrain.py:debug", *overrides]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


def test_prints_its_figures_and_counts_scanned_layers_once_per_layer():
  plain = _bench()
  for line in ("device: ", "step time: ", "samples/s: ", "FLOPs/step: ", "MFU: "):
    assert line in plain, plain
  scanned = _bench("--config.model.scan=True", "--config.model.remat=True")
  flops = [float(re.search(r"FLOPs/step: (\S+)", s).group(1)) for s in (plain, scanned)]
  assert flops[0] > 1e8, plain  # the debug model's step is ~1.3e9 FLOPs
  # The compiled scanned step's own analysis counted its 2-layer stack once (4.6e8 vs 1.3e9).
  assert flops[0] == flops[1], (plain, scanned)
