"""One generic training loop for every job (pretraining, world models).

A job supplies a `Task`: a pure `init(rng) -> state`, a pure `train_step(state, batch) ->
(state, metrics)` and a grain dataset of host-local numpy batches. The loop owns the mesh,
sharded initialisation, the jitted/donated step, metrics, checkpoints and resumption.
"""

import dataclasses
import math
import time
from typing import Any, Callable

import jax
from absl import logging
from tqdm import tqdm

from jepa_jax import sharding as shd
from jepa_jax.train import checkpoint as ckpt
from jepa_jax.train.metrics import MetricWriter, plot_curves


@dataclasses.dataclass
class Task:
  init: Callable[[jax.Array], Any]
  train_step: Callable[[Any, Any], tuple[Any, dict]]
  dataset: Any                     # grain IterDataset of host-local batches
  total_steps: int
  global_batch_size: int


@dataclasses.dataclass
class LoopResult:
  state: Any
  step: int
  last_metrics: dict
  seconds: float
  mesh: Any


def summary_line(result: "LoopResult") -> str:
  """One printed line after training: steps, minutes and the last logged metrics."""
  return (f"trained {result.step} steps in {result.seconds / 60:.1f} min; last metrics: "
          + ", ".join(f"{k}={v:.4g}" for k, v in result.last_metrics.items()))


def prepare_run(cfg, workdir: str, resume: bool):
  """Common start of every experiment: quiet orbax INFO logs unless --verbosity was given,
  distributed init behind config, and refuse to overwrite a workdir's checkpoints."""
  import os
  from absl import app, flags
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  shd.maybe_initialize_distributed(cfg.distributed)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not resume and os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
    raise app.UsageError(f"{workdir} already holds checkpoints: pass --resume to continue, or "
                         "choose a new --workdir (nothing was overwritten)")


def build_mesh(cfg):
  return shd.make_mesh(cfg.mesh.data, cfg.mesh.fsdp)


def state_shardings(task: Task, cfg, mesh):
  abstract = jax.eval_shape(task.init, jax.random.key(cfg.seed))
  shardings = shd.tree_shardings(abstract, mesh, rules=[tuple(r) for r in cfg.sharding.rules],
                                 min_size=cfg.sharding.min_size)
  return abstract, shardings


def compile_step(task: Task, shardings, mesh):
  return jax.jit(task.train_step, in_shardings=(shardings, shd.batch_sharding(mesh)),
                 out_shardings=(shardings, shd.replicated(mesh)), donate_argnums=0)


def _check_finite(metrics: dict, step: int):
  bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
  if bad:
    raise FloatingPointError(
        f"non-finite metrics at step {step}: {bad}. Lower optim.lr, set optim.grad_clip, or use "
        "model.dtype='float32'; the last good checkpoint is kept in the workdir.")


def train(task: Task, cfg, workdir: str, resume: bool = False, mesh=None,
          eval_fn: Callable[[Any, int], dict] | None = None, stop_after: int | None = None,
          progress: bool = True) -> LoopResult:
  """Runs to `task.total_steps` (or `stop_after` steps, for tests), checkpointing on the way."""
  # --- Mesh and shardings ---------------------------------------------------------------------
  mesh = mesh or build_mesh(cfg)
  abstract, shardings = state_shardings(task, cfg, mesh)
  if task.global_batch_size % mesh.size:
    raise ValueError(f"batch_size {task.global_batch_size} not divisible by {mesh.size} devices")

  # --- State: restore or initialise straight into the target shardings -------------------------
  data_iter = iter(task.dataset)
  manager = ckpt.make_manager(f"{workdir}/checkpoints", cfg.checkpoint.every, cfg.checkpoint.keep,
                              cfg.checkpoint.async_save)
  if resume and manager.latest_step() is not None:
    state = ckpt.restore(manager, ckpt.abstract_with_shardings(abstract, shardings), data_iter)
    logging.info("resumed from step %d", int(state.step))
  else:
    if resume:
      logging.warning("--resume given but no checkpoint in %s: starting fresh", workdir)
    state = jax.jit(task.init, out_shardings=shardings)(jax.random.key(cfg.seed))
  start = int(state.step)

  # --- Loop ------------------------------------------------------------------------------------
  step_fn = compile_step(task, shardings, mesh)
  writer = MetricWriter(workdir)
  end = task.total_steps if stop_after is None else min(task.total_steps, start + stop_after)
  bar = tqdm(total=task.total_steps, initial=start, disable=not progress or jax.process_index(),
             desc="train", unit="step", dynamic_ncols=True, mininterval=2.0)
  last, t0, t_log, n_log = {}, time.time(), time.time(), 0
  in_flight = None
  for step in range(start, end):
    batch = shd.to_global_batch(next(data_iter), mesh)
    state, metrics = step_fn(state, batch)
    # Keep one step in flight: the next batch is still prepared while this step computes, but
    # dispatch no longer runs tens of steps ahead, which made the bar's rate and ETA swing
    # between bursts and stalls at every log step.
    if in_flight is not None:
      jax.block_until_ready(in_flight)
    in_flight = metrics
    n_log += 1
    done = step + 1
    if done % cfg.log_every == 0 or done == end:
      last = {k: float(v) for k, v in jax.device_get(metrics).items()}
      _check_finite(last, done)
      now = time.time()
      last["samples_per_sec"] = n_log * task.global_batch_size / (now - t_log)
      t_log, n_log = now, 0
      writer.write(done, last)
      bar.set_postfix(loss=f"{last['loss']:.4f}", refresh=False)
    if eval_fn is not None and cfg.eval_every and done % cfg.eval_every == 0:
      writer.write(done, eval_fn(state, done))
    preempted = manager.reached_preemption(done)
    # The loop, not orbax, picks save steps (orbax would also save the very first step).
    if done % cfg.checkpoint.every == 0 or done == end or preempted:
      ckpt.save(manager, done, state, data_iter, cfg, force=True)
    bar.update(1)
    if preempted:
      logging.warning("preemption signal at step %d: checkpoint saved, exiting", done)
      break
  bar.close()
  manager.wait_until_finished()
  manager.close()
  writer.close()
  if writer.active and last:
    plot_curves(writer.path, f"{workdir}/curves.png")
  return LoopResult(state, int(state.step), last, time.time() - t0, mesh)

