"""The world-model protocol for planners and evaluators, and loading a trained one.

    from jepa_jax.world_model import load_world_model
    wm, params = load_world_model("runs/wm")   # latest checkpoint
    z0 = wm.encode(params, obs_HWC)            # (H, W, 2) uint8 or float in [0, 1]*255 -> z (N, D)
    z1 = wm.step(params, z0, action_A)         # action (2,) = (dx, dy) px -> z (N, D)
    zs = wm.rollout(params, z0, actions_HA)    # (H, N, D): predicted z_1..z_H

Observations are Two Rooms frames as the env renders them: float32 in [0, 1] are accepted and
converted like the stored uint8 data (x255, rounded). Everything is pure, jittable and
vmappable (`jax.vmap(wm.step, in_axes=(None, 0, 0))`); `wm` is a frozen dataclass, safe to close
over or pass as a static argument. For a transformer predictor, `step` sees one frame of context
(exact when it was trained with max_context=1); `rollout` keeps the whole predicted history in
context as V-JEPA 2-AC does. With predictor.stride s > 1, one step consumes an action chunk of
shape (s * 2,).
"""

import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from jepa_jax.nn import dynamics


@dataclasses.dataclass(frozen=True)
class WorldModel:
  encoder: nn.Module
  predictor: nn.Module
  stride: int = 1

  def encode(self, params, obs_HWC):
    """(..., H, W, C) frames -> (..., N, D) latents."""
    lead = obs_HWC.shape[:-3]
    x = obs_HWC.reshape(-1, *obs_HWC.shape[-3:])
    if jnp.issubdtype(x.dtype, jnp.floating):  # env render() output -> the stored uint8 grid
      x = jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)
    z = self.encoder.apply({"params": params["encoder"]}, x)
    return z.reshape(*lead, *z.shape[1:])

  def step(self, params, z_ND, action_A, latent=None):
    """One latent transition; batched over any leading axes of z and action."""
    return self.predictor.apply({"params": params["predictor"]}, z_ND, action_A, latent,
                                method="step")

  def rollout(self, params, z0_ND, actions_HA):
    """Open-loop z_1..z_H; z0 (N, D) or batched (B, N, D) with actions (B, H, A)."""
    batched = z0_ND.ndim == 3
    z0 = z0_ND if batched else z0_ND[None]
    a = actions_HA if batched else actions_HA[None]
    zs = dynamics.rollout(self.predictor, {"params": params["predictor"]}, z0, a)
    return zs if batched else zs[0]


def world_model_from_config(cfg) -> WorldModel:
  from jepa_jax.train.world_model import make_models
  m = make_models(cfg)
  return WorldModel(m.encoder, m.predictor, m.stride)


def params_from_state(state) -> dict:
  """{'encoder', 'predictor'} from a train state (or its restored dict form)."""
  get = (lambda s, k: s[k]) if isinstance(state, dict) else getattr
  params, target = get(state, "params"), get(state, "target_params")
  enc = params["encoder"] if "encoder" in params else target["encoder"]
  return {"encoder": enc, "predictor": params["predictor"]}


def load_world_model(workdir: str, step: int | None = None, with_config: bool = False):
  """Latest (or `step`) checkpoint of an `experiments.world_model` run -> (WorldModel, params).

  `params` = {'encoder': ..., 'predictor': ...} as numpy/jax arrays on the default device. The
  config saved beside the state rebuilds the modules, so nothing else is needed. With
  `with_config=True` the ml_collections config comes back third.
  """
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{directory} not found: train with `python -m experiments.world_model "
                            f"--workdir={workdir}` first")
  with ocp.CheckpointManager(directory) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), config=ocp.args.JsonRestore()))
  cfg = ml_collections.ConfigDict(restored["config"])
  params = jax.tree.map(jnp.asarray, params_from_state(restored["state"]))
  wm = world_model_from_config(cfg)
  return (wm, params, cfg) if with_config else (wm, params)
