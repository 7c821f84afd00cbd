"""Meshes, parameter partition rules, host-local -> global batches, multi-host start.

Two mesh axes: 'data' (pure data parallelism: params replicated) and 'fsdp' (data parallel
*and* params/optimiser state sharded). The batch is split over both; each parameter is split
over 'fsdp' along its largest divisible dimension unless a regex rule says otherwise.
"""

import re
from typing import Any, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXES = ("data", "fsdp")


def make_mesh(data: int = -1, fsdp: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
  """(data, fsdp) mesh over `devices` (default all). -1 on one axis fills the rest."""
  devices = list(devices if devices is not None else jax.devices())
  n = len(devices)
  if data == -1 and fsdp == -1:
    raise ValueError("only one of mesh.data / mesh.fsdp may be -1")
  if data == -1:
    data = n // fsdp
  if fsdp == -1:
    fsdp = n // data
  if data * fsdp != n:
    raise ValueError(f"mesh.data={data} x mesh.fsdp={fsdp} != {n} devices; set them so the "
                     "product is the device count (or use -1 for one of them)")
  # Auto axes: shardings are given at jit boundaries and XLA propagates them inside the step.
  return jax.make_mesh((data, fsdp), DATA_AXES, axis_types=(AxisType.Auto,) * 2, devices=devices)


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def fsdp_spec(shape, fsdp_size: int, min_size: int) -> P:
  """Shard the largest dimension divisible by the fsdp axis; replicate small params."""
  if fsdp_size == 1 or int(np.prod(shape)) < min_size:
    return P()
  for dim in np.argsort(shape)[::-1]:
    if shape[dim] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def partition_specs(tree, mesh: Mesh, rules: Sequence[tuple[str, tuple]] = (),
                    min_size: int = 2**14):
  """PartitionSpec for every leaf: first matching (regex, spec) rule, else the fsdp default.

  Leaves without a shape (python scalars, step counters) are replicated.
  """
  fsdp_size = mesh.shape["fsdp"]
  compiled = [(re.compile(r), P(*spec)) for r, spec in rules]

  def spec_for(path, leaf):
    shape = getattr(leaf, "shape", ())
    if not shape:
      return P()
    name = _path_str(path)
    for pattern, spec in compiled:
      if pattern.search(name):
        return spec
    return fsdp_spec(shape, fsdp_size, min_size)

  return jax.tree_util.tree_map_with_path(spec_for, tree)


def tree_shardings(tree, mesh: Mesh, **kw):
  return jax.tree.map(lambda s: NamedSharding(mesh, s), partition_specs(tree, mesh, **kw))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over every device."""
  return NamedSharding(mesh, P(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def to_global_batch(local_batch, mesh: Mesh):
  """This process's slice of the batch (numpy pytree) -> global jax.Arrays split over devices."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local_batch)


def maybe_initialize_distributed(cfg) -> None:
  """`jax.distributed.initialize` when cfg.enabled; on CPU, gloo collectives across processes.

  With coordinator_address empty, JAX auto-detects the cluster (TPU pods, SLURM, ...).
  """
  if not cfg.enabled:
    return
  if jax.distributed.is_initialized():
    return
  if cfg.get("cpu_collectives", True):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = {}
  if cfg.coordinator_address:
    kwargs = dict(coordinator_address=cfg.coordinator_address, num_processes=cfg.num_processes,
                  process_id=cfg.process_id)
  jax.distributed.initialize(**kwargs)
  logging.info("distributed: process %d / %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
