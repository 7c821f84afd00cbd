"""Train state with an EMA target copy, and the schedules that drive it (lr, wd, EMA momentum)."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state


class JEPATrainState(train_state.TrainState):
  """`params` is trained by the optimiser; `target_params` follows it by EMA, never by gradient."""
  target_params: Any


def lr_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup from `cfg.warmup_init_lr` to `cfg.lr`, cosine decay to `cfg.final_lr`."""
  warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=cfg.warmup_init_lr, peak_value=cfg.lr, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=cfg.final_lr)


def wd_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Cosine from weight_decay to final_weight_decay (I-JEPA/V-JEPA ramp wd up over training)."""
  def schedule(step):
    frac = jnp.minimum(step / max(total_steps, 1), 1.0)
    cos = 0.5 * (1 + jnp.cos(jnp.pi * frac))
    return cfg.final_weight_decay + (cfg.weight_decay - cfg.final_weight_decay) * cos
  return schedule


def ema_momentum(cfg: ml_collections.ConfigDict, total_steps: int):
  """Linear ramp ema_start -> ema_end over training (constant when they are equal)."""
  def momentum(step):
    frac = jnp.minimum(step / max(total_steps, 1), 1.0)
    return cfg.ema_start + (cfg.ema_end - cfg.ema_start) * frac
  return momentum


def decay_mask(params):
  """Weight decay on matrices only: biases, LayerNorm scales and 1-D tokens are excluded.

  By name as well as by rank: under `nn.scan` a layer's biases and LayerNorm scales are stacked
  to (depth, D), which a rank test alone would decay.
  """
  def decays(path, p):
    name = getattr(path[-1], "key", None) if path else None
    return p.ndim >= 2 and name not in ("bias", "scale")
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int):
  """AdamW with scheduled lr and wd, optional global-norm clipping.

  `inject_hyperparams` keeps the current lr/wd in the optimiser state, so the step can log them.
  It treats every callable argument as a schedule, so `mask` must be declared static: otherwise
  it is called with the step count, returns False, and no parameter is ever decayed.
  """
  adamw = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
      learning_rate=lr_schedule(cfg, total_steps), weight_decay=wd_schedule(cfg, total_steps),
      b1=cfg.b1, b2=cfg.b2, eps=1e-8, mask=decay_mask)
  if cfg.grad_clip and cfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
  return adamw


def current_hparams(opt_state) -> dict:
  """Finds the InjectHyperparamsState (alone or inside a chain) and returns lr and wd."""
  # InjectHyperparamsState is itself a NamedTuple: test it before iterating over a chain.
  states = opt_state if isinstance(opt_state, tuple) and not hasattr(opt_state, "hyperparams") \
      else (opt_state,)
  for s in states:
    if hasattr(s, "hyperparams"):
      return {"lr": s.hyperparams["learning_rate"], "wd": s.hyperparams["weight_decay"]}
  return {}


def ema_update(target, online, momentum):
  return jax.tree.map(lambda t, o: momentum * t + (1.0 - momentum) * o.astype(t.dtype),
                      target, online)
