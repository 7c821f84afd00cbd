"""Metric sinks: JSONL (always), TensorBoard (tensorboardX), and loss-curve pictures."""

import json
import math
import os

import jax
import numpy as np


class MetricWriter:
  """Writes on process 0 only; other processes get a no-op writer."""

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self.active:
      os.makedirs(workdir, exist_ok=True)
      if tensorboard:
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, step: int, metrics: dict):
    if not self.active:
      return
    scalars = {k: float(v) for k, v in metrics.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": int(step), **scalars}) + "\n")
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, step)
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot_curves(jsonl_path: str, out_png: str, keys=None):
  """One panel per metric over steps (loss, lr, collapse diagnostics...)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = read_jsonl(jsonl_path)
  if not rows:
    return None
  keys = keys or [k for k in rows[-1] if k != "step"]
  cols = 3
  fig, axes = plt.subplots(math.ceil(len(keys) / cols), cols,
                           figsize=(4 * cols, 2.6 * math.ceil(len(keys) / cols)), squeeze=False)
  for ax, k in zip(axes.flat, keys):
    pts = [(r["step"], r[k]) for r in rows if k in r]
    ax.plot(*np.array(pts).T)
    ax.set_title(k, fontsize=9)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(out_png, dpi=90)
  plt.close(fig)
  return out_png
