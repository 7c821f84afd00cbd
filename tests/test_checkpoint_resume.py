"""save -> restore -> continue == uninterrupted (bit for bit), restore onto another mesh, and the
entry point refusing to overwrite checkpoints."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import debug_config
from jepa_jax import sharding as shd
from jepa_jax.train import checkpoint as ckpt
from jepa_jax.train import loop
from jepa_jax.train import pretrain as jepa
from jepa_jax.train.metrics import read_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg():
  cfg = debug_config("debug")
  assert cfg.total_steps == 6 and cfg.checkpoint.every == 3 and cfg.log_every == 2
  cfg.sharding.min_size = 256   # shard the (small) debug params over fsdp: a harder restore
  return cfg


@pytest.fixture(scope="module")
def runs(tmp_path_factory, num_devices):
  del num_devices
  cfg = _cfg()
  mesh = shd.make_mesh(data=2, fsdp=4)
  dir_a, dir_b = (str(tmp_path_factory.mktemp(n)) for n in ("uninterrupted", "resumed"))
  # A: 6 steps in one go.
  result_a = loop.train(jepa.make_task(cfg)[0], cfg, dir_a, mesh=mesh, progress=False)
  # B: 3 steps, stop; then a *fresh* task (new dataset iterator, new jit) resumes to 6.
  first_b = loop.train(jepa.make_task(cfg)[0], cfg, dir_b, mesh=mesh, stop_after=3,
                       progress=False)
  result_b = loop.train(jepa.make_task(cfg)[0], cfg, dir_b, resume=True, mesh=mesh,
                        progress=False)
  return dict(cfg=cfg, mesh=mesh, dir_a=dir_a, dir_b=dir_b, a=result_a, b=result_b,
              first_b=first_b)


def _assert_trees_equal(x, y, what):
  assert jax.tree.structure(x) == jax.tree.structure(y), what
  for (path, u), v in zip(jax.tree_util.tree_leaves_with_path(jax.device_get(x)),
                          jax.tree.leaves(jax.device_get(y))):
    assert np.array_equal(u, v), f"{what}{jax.tree_util.keystr(path)}"


def test_resume_equals_uninterrupted_exactly(runs):
  a, b = runs["a"], runs["b"]
  assert runs["first_b"].step == 3 and a.step == b.step == 6
  _assert_trees_equal(a.state.params, b.state.params, "params")
  _assert_trees_equal(a.state.target_params, b.state.target_params, "target_params")
  _assert_trees_equal(a.state.opt_state, b.state.opt_state, "opt_state")
  assert int(b.state.step) == 6


def test_resumed_metrics_equal_uninterrupted(runs):
  rows_a = {r["step"]: r for r in read_jsonl(os.path.join(runs["dir_a"], "metrics.jsonl"))}
  rows_b = {r["step"]: r for r in read_jsonl(os.path.join(runs["dir_b"], "metrics.jsonl"))}
  assert sorted(rows_a) == [2, 4, 6]
  assert sorted(rows_b) == [2, 3, 4, 6]  # step 3: the last step before the interruption
  for step in (2, 4, 6):
    # Identical batches after resume (grain iterator state restored) -> identical numbers.
    for k in rows_a[step]:
      if k != "samples_per_sec":
        assert rows_a[step][k] == rows_b[step][k], (step, k)
  assert rows_a[6]["loss"] != rows_a[4]["loss"]


def test_checkpoints_at_interval_and_end(runs):
  for d in (runs["dir_a"], runs["dir_b"]):
    manager = ckpt.make_manager(os.path.join(d, "checkpoints"), 3, 3, False)
    assert manager.all_steps() == [3, 6]
    config = ckpt.restore_config(manager)
    assert config["total_steps"] == 6 and config["model"]["size"] == "micro"
    manager.close()


@pytest.mark.parametrize("num_new_devices, fsdp", [(2, 2), (1, 1)])
def test_restore_onto_other_device_count(runs, num_new_devices, fsdp):
  cfg = runs["cfg"]
  new_mesh = shd.make_mesh(data=num_new_devices // fsdp, fsdp=fsdp,
                           devices=jax.devices()[:num_new_devices])
  task, _ = jepa.make_task(cfg)
  abstract, shardings = loop.state_shardings(task, cfg, new_mesh)
  manager = ckpt.make_manager(os.path.join(runs["dir_a"], "checkpoints"), 3, 3, False)
  restored = ckpt.restore(manager, ckpt.abstract_with_shardings(abstract, shardings), step=6)
  manager.close()
  for field in ("step", "params", "target_params", "opt_state"):
    _assert_trees_equal(getattr(runs["a"].state, field), getattr(restored, field), field)
  # Every leaf lives on the new mesh with the new mesh's sharding.
  for (path, leaf), want in zip(jax.tree_util.tree_leaves_with_path(restored),
                                jax.tree.leaves(shardings), strict=True):
    assert leaf.sharding == want, jax.tree_util.keystr(path)
    assert leaf.sharding.mesh.devices.size == num_new_devices
  kernel = restored.params["encoder"]["patch_embed"]["kernel"]
  assert kernel.sharding.is_fully_replicated == (fsdp == 1)
  # The saved run was really sharded over 4 fsdp devices (so this was a re-layout).
  saved = runs["a"].state.params["encoder"]["patch_embed"]["kernel"]
  assert saved.addressable_shards[0].data.size * 4 == saved.size


def test_entry_point_refuses_to_overwrite_checkpoints(runs):
  ckpt_dir = os.path.join(runs["dir_a"], "checkpoints")
  before = sorted(os.listdir(ckpt_dir))
  metrics_before = open(os.path.join(runs["dir_a"], "metrics.jsonl")).read()
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.pretrain",
       "--config=experiments/configs/pretrain.py:debug", f"--workdir={runs['dir_a']}",
       "--config.probe.enabled=False"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "already holds checkpoints" in proc.stderr + proc.stdout
  assert sorted(os.listdir(ckpt_dir)) == before
  assert open(os.path.join(runs["dir_a"], "metrics.jsonl")).read() == metrics_before
