r"""Benchmark the JEPA pretraining step: step time, samples/s, FLOPs per step, MFU.

  python scripts/bench_pretrain.py                                  # cpu_default on this machine
  python scripts/bench_pretrain.py --config=experiments/configs/pretrain.py:vitl_vjepa \
      --config.mesh.fsdp=1 --config.batch_size=64 --steps=10     # ViT-L on one GPU

FLOPs are model FLOPs: XLA's cost analysis of the step lowered (for the host CPU, never compiled)
with the layers unrolled and without rematerialisation, whole global batch. The compiled step's
own analysis counts a scanned layer stack once, not once per layer (ViT-L: 1.7e12 instead of
1.8e14), remat adds recomputation that MFU leaves out, and on GPU it counts less. MFU is
printed where the accelerator's dense peak is known (bf16 for bf16 configs, else fp32/tf32).
One batch from the dataset is reused for every step, so the figure is the step, not the loader.
"""

import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jepa_jax.train import loop
from jepa_jax.train import pretrain as jepa

config_flags.DEFINE_config_file("config", "experiments/configs/pretrain.py:cpu_default",
                                "Config file and preset.")
STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after one compile/warm-up step).")

# Dense peak FLOP/s per device: (bf16, fp32-or-tf32), from vendor datasheets.
PEAKS = {
    "H100": (989e12, 495e12),   # SXM, dense; tf32 for fp32 matmuls
    "H200": (989e12, 495e12),
    "A100": (312e12, 156e12),
    "TPU v4": (275e12, 275e12),
    "TPU v5e": (197e12, 197e12),
    "TPU v5p": (459e12, 459e12),
}


def peak_flops(device, bf16: bool):
  for name, (p_bf16, p_fp32) in PEAKS.items():
    if name.lower() in device.device_kind.lower():
      return p_bf16 if bf16 else p_fp32
  return None


def model_flops(cfg, host_batch) -> float:
  """FLOPs of one training step as written (layers unrolled, no remat), from XLA's cost analysis
  of the lowered, unoptimised HLO. Lowered for the host CPU whatever the accelerator: GPU
  backends (PJRT C API) give no pre-compilation analysis, and their compiled analysis counts less
  (cpu_default on an H200: 3.4e10 against 5.0e10 here, library calls such as cuBLAS matmuls
  being left out, we believe)."""
  flat = cfg.copy_and_resolve_references()
  flat.model.scan, flat.model.remat = False, False
  task, _ = jepa.make_task(flat)
  abstract = lambda x: jax.ShapeDtypeStruct(np.shape(x), np.result_type(x))
  with jax.default_device(jax.devices("cpu")[0]):
    state = jax.eval_shape(task.init, jax.random.key(flat.seed))
    cost = jax.jit(task.train_step).lower(state, jax.tree.map(abstract, host_batch)).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def main(argv):
  del argv
  cfg = flags.FLAGS.config
  task, models = jepa.make_task(cfg)
  mesh = loop.build_mesh(cfg)
  _, shardings = loop.state_shardings(task, cfg, mesh)
  state = jax.jit(task.init, out_shardings=shardings)(jax.random.key(cfg.seed))
  step_fn = loop.compile_step(task, shardings, mesh)
  from jepa_jax import sharding as shd
  host_batch = next(iter(task.dataset))
  batch = shd.to_global_batch(host_batch, mesh)

  t0 = time.perf_counter()
  step_fn = step_fn.lower(state, batch).compile()  # timed apart; the steps below reuse it
  compile_s = time.perf_counter() - t0
  flops = model_flops(cfg, host_batch)

  state, metrics = step_fn(state, batch)  # warm-up
  jax.block_until_ready(metrics)
  times = []
  for _ in range(STEPS.value):
    t = time.perf_counter()
    state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  step_s = float(np.median(times))
  dev = jax.devices()[0]
  peak = peak_flops(dev, cfg.model.dtype == "bfloat16")
  print(f"device: {dev.device_kind} x{jax.device_count()} ({dev.platform})")
  print(f"model: {cfg.model.size} patch {tuple(cfg.model.patch_size)}, grid {models.grid_shape}, "
        f"dtype {cfg.model.dtype}, global batch {cfg.batch_size}")
  print(f"compile: {compile_s:.1f} s")
  print(f"step time: {step_s * 1e3:.1f} ms (median of {len(times)}; min {min(times) * 1e3:.1f})")
  print(f"samples/s: {cfg.batch_size / step_s:.1f}")
  print(f"FLOPs/step: {flops:.3e}  ->  {flops / step_s / 1e12:.3f} TFLOP/s achieved")
  if peak:
    print(f"MFU: {flops / step_s / (peak * jax.device_count()):.1%} of {peak / 1e12:.0f} TFLOP/s"
          " per device")
  else:
    print("MFU: n/a (no known peak for this device)")


if __name__ == "__main__":
  app.run(main)
