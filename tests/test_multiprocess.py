"""Two JAX processes on one machine (2 CPU devices each, gloo collectives): the pretrain entry
point trains, checkpoints (train state + per-process grain state) and resumes."""

import json
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240


def _free_port() -> int:
  try:
    import portpicker
    return portpicker.pick_unused_port()
  except ImportError:
    with socket.socket() as s:
      s.bind(("localhost", 0))
      return s.getsockname()[1]


def _launch(workdir, log_dir, tag, extra=()):
  """Starts processes 0 and 1, waits for both; returns their logs. Fails with the log tails."""
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2 "
                       "--xla_backend_optimization_level=0")
  procs, logs = [], []
  for i in range(2):
    log_path = os.path.join(log_dir, f"{tag}_{i}.log")
    logs.append(log_path)
    cmd = [sys.executable, "-m", "experiments.pretrain",
           "--config=experiments/configs/pretrain.py:debug", f"--workdir={workdir}",
           "--config.probe.enabled=False", "--config.distributed.enabled=True",
           f"--config.distributed.coordinator_address=localhost:{port}",
           "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}",
           *extra]
    with open(log_path, "w") as log:
      procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
  codes = []
  try:
    for p in procs:
      codes.append(p.wait(timeout=TIMEOUT_S))
  except subprocess.TimeoutExpired:
    codes.append("timeout")
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  texts = [open(path).read() for path in logs]
  if codes != [0, 0]:
    tails = "\n".join(f"--- process {i} ---\n{t[-3000:]}" for i, t in enumerate(texts))
    pytest.fail(f"{tag}: exit codes {codes}\n{tails}")
  return texts


def _steps(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f if line.strip()]


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_resume(tmp_path):
  workdir = str(tmp_path / "run")
  logs = _launch(workdir, str(tmp_path), "first")
  # Both processes saw 4 global devices and trained the debug preset's 6 steps.
  for text in logs:
    assert "trained 6 steps" in text
  ckpt_dir = os.path.join(workdir, "checkpoints")
  assert sorted(os.listdir(ckpt_dir), key=int) == ["3", "6"]
  # The data iterator state is saved per process, next to the (global) train state.
  assert sorted(os.listdir(os.path.join(ckpt_dir, "6", "data"))) == [
      "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]
  assert _steps(workdir) == [2, 4, 6]   # only process 0 writes metrics

  logs = _launch(workdir, str(tmp_path), "resume", ["--resume", "--config.total_steps=8"])
  for text in logs:
    assert "trained 8 steps" in text
  assert "8" in os.listdir(ckpt_dir)
  assert _steps(workdir) == [2, 4, 6, 8]  # resumed at 6, not restarted from 0
