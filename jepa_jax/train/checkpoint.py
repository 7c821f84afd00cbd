"""orbax checkpoints holding train state + grain iterator state + config, restorable on any mesh;
and the params + JSON description of a finished small model."""

import json
import os

import grain
import jax
import orbax.checkpoint as ocp


def make_manager(directory: str, every: int, keep: int, async_save: bool = True):
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=max(int(every), 1), max_to_keep=keep,
      enable_async_checkpointing=async_save, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(manager, step: int, state, data_iter, config, force: bool = False) -> bool:
  """Saves if `step` is on the interval (or force). Async: returns before the write finishes."""
  args = {"state": ocp.args.StandardSave(state),
          "config": ocp.args.JsonSave(json.loads(config.to_json_best_effort()))}
  if data_iter is not None:
    args["data"] = grain.checkpoint.CheckpointSave(data_iter)
  return manager.save(step, args=ocp.args.Composite(**args), force=force)


def restore(manager, abstract_state, data_iter=None, step: int | None = None):
  """Restores the train state onto the shardings carried by `abstract_state` (from
  jax.eval_shape + shardings), so a checkpoint written on one mesh loads onto another.
  The grain iterator, when given, is restored in place."""
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}; run without --resume first")
  args = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iter is not None:
    args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
  restored = manager.restore(step, args=ocp.args.Composite(**args))
  return restored["state"]


def restore_config(manager, step: int | None = None) -> dict:
  step = manager.latest_step() if step is None else step
  return manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]


def abstract_with_shardings(abstract_tree, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract_tree, shardings)


# A finished small model (no train state, no schedule): params + a JSON description beside them.
PARAMS_DIR = "params"


def save_params(workdir: str, params, meta_file: str, meta: dict) -> None:
  """params (orbax, in workdir/params) + `meta` as JSON in workdir/meta_file."""
  os.makedirs(workdir, exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.abspath(os.path.join(workdir, PARAMS_DIR)), jax.device_get(params),
               force=True)
  with open(os.path.join(workdir, meta_file), "w") as f:
    json.dump(meta, f, indent=1)


def restore_params(workdir: str, abstract_params):
  """The params `save_params` wrote, restored to the structure of `abstract_params`."""
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(os.path.abspath(os.path.join(workdir, PARAMS_DIR)), abstract_params)
