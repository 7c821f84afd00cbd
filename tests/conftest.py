"""Shared test setup: 8 simulated CPU devices, a per-session compilation cache, debug fixtures.

Everything at module level runs before any test module imports jax, so the XLA flag below
takes effect in every test process (and in subprocesses, which inherit the environment).
"""

import os
import shutil
import tempfile

# 8 simulated host devices: sharding tests build (data, fsdp) meshes up to 2 x 4.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags += " --xla_force_host_platform_device_count=8"
# Test programs are tiny, so compile time dominates: LLVM -O0 compiles ~40% faster on CPU.
if "xla_backend_optimization_level" not in _flags:
  _flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = _flags.strip()
# Each simulated device runs on its own thread; LAPACK calls (the SVD in the collapse stats) then
# start OpenBLAS thread pools per device that spin against each other on a small machine: one
# step on the 2x4 mesh took 40 s instead of 0.3 s. One BLAS thread per device thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Several tests compile the very same step (train() runs A / B / resumed B, subprocess relaunch):
# a persistent compilation cache turns those recompiles into cache hits. It lives in a fresh
# directory per session (inherited by subprocesses through the environment) so no test result
# depends on a previous run; set JAX_COMPILATION_CACHE_DIR yourself to keep one across runs.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix="jepa_jax_test_jit_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
  # Cache the many small programs too (orbax's per-array copies, init, metrics), not only >1 s.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402  (after the environment is set)
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_CACHE is not None:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def debug_config(preset: str = "debug"):
  """A fresh (mutable) copy of a small preset."""
  from experiments.configs import pretrain as pretrain_configs  # lazy: keep collection light
  return pretrain_configs.get_config(preset)


def fixed_batch(cfg, maskers, batch_size: int, start: int = 0, mask_seed: int = 0) -> dict:
  """A batch independent of grain: videos start..start+B-1 of the train split and masks drawn
  from a fixed numpy rng, so a test's inputs are reproducible bit for bit."""
  from jepa_jax.train import pretrain as jepa
  source = jepa.make_source(cfg, "train")
  frames = np.stack([source[start + i]["frames"] for i in range(batch_size)])
  rng = np.random.default_rng(mask_seed)
  masks = []
  for masker in maskers:
    pairs = [masker(rng) for _ in range(batch_size)]
    masks.append({"ctx": np.stack([c for c, _ in pairs]), "tgt": np.stack([t for _, t in pairs])})
  return {"frames": frames, "masks": masks}


@pytest.fixture
def cfg():
  """Debug V-JEPA config (tiny model, 4x32x32 videos, grid (2, 4, 4))."""
  return debug_config("debug")


@pytest.fixture(scope="session")
def debug_models():
  from jepa_jax.train import pretrain as jepa
  c = debug_config("debug")
  models = jepa.make_models(c)
  return models, jepa.make_maskers(c, models.grid_shape)


@pytest.fixture(scope="session")
def debug_batch(debug_models):
  """Global batch of 8 debug videos with real V-JEPA masks (deterministic)."""
  _, maskers = debug_models
  return fixed_batch(debug_config("debug"), maskers, 8)


@pytest.fixture(scope="session")
def num_devices():
  n = jax.device_count()
  assert n == 8, f"conftest should give 8 simulated CPU devices, got {n} (XLA_FLAGS set too late?)"
  return n
