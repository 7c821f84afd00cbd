"""Online adaptation: the world model learns from the moves the closed loop has just executed.

Why: a learned world model is wrong in places (on Two Rooms it lets the agent through the middle
wall in 8-29 % of straight pushes), and the move memory (planning/move_memory.py) only charges a
plan that repeats a failed move from within a few px of where it failed. Here the model itself
is corrected: after each executed block the closed loop stores (encoded start, executed plan
actions, encoded outcome) in a ring buffer, and a few gradient steps on the predictor's
parameters pull its rollout of those actions towards what was observed. Every stored block
counts, the moves that went as predicted too (their error is small, and they keep the model
from learning that nothing ever moves); an optional pull towards the trained parameters
(`anchor`) bounds how far one episode can take it. The encoder is never changed, so the
goal's latent and the memory's latents stay comparable. Everything is per episode: the adapted
parameters live in the closed loop's carry and are discarded with the episode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jepa_jax.planning.move_memory import mean_square
from jepa_jax.planning.rollout import StepFn, unroll


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
  steps: int = 0  # gradient steps after each executed block; 0: no adaptation
  learning_rate: float = 0.1
  clip: float = 1.0  # global gradient-norm clip of each step (a failed push's error is large)
  anchor: float = 0.0  # weight of the squared distance to the trained parameters
  params_key: str = 'predictor'  # the entry of the params dict that adapts (the rest is frozen)

  def __post_init__(self):
    name = 'AdaptConfig'  # the evaluation's config section of the same keys is `adapt`
    if not isinstance(self.steps, int) or self.steps < 0:
      raise ValueError(f'{name}.steps (adapt.steps) must be an int >= 0 (0: off), got '
                       f'{self.steps!r}')
    for key in ('learning_rate', 'clip'):
      if not getattr(self, key) > 0:
        raise ValueError(f'{name}.{key} (adapt.{key}) must be > 0, got {getattr(self, key)!r}')
    if not self.anchor >= 0:
      raise ValueError(f'{name}.anchor (adapt.anchor) must be >= 0 (0: no pull back to the '
                       f'trained params), got {self.anchor!r}')


class Transitions(NamedTuple):
  starts: Any  # encoded latent at the start of each stored block, leading axis M
  actions_MKA: jax.Array  # the plan actions executed in that block
  ends: Any  # encoded latent after the block
  valid_M: jax.Array  # 1.0 where a block has been written, 0.0 for empty slots


def empty_transitions(z, slots: int, actions_KA) -> Transitions:
  if not isinstance(slots, int) or slots <= 0:
    raise ValueError(f'empty_transitions: slots must be a positive int, got {slots!r}')
  zeros = jax.tree.map(lambda x: jnp.zeros((slots,) + jnp.shape(x), jnp.float32), z)
  return Transitions(zeros, jnp.zeros((slots,) + actions_KA.shape, jnp.float32), zeros,
                     jnp.zeros((slots,), jnp.float32))


def record(buf: Transitions, z_start, actions_KA, z_end, index, valid=1.0) -> Transitions:
  """Write one block into slot index % M (the oldest goes first once the ring is full)."""
  slot = jnp.asarray(index) % buf.valid_M.shape[0]
  put = lambda s, x: s.at[slot].set(jnp.asarray(x, s.dtype))
  return Transitions(jax.tree.map(put, buf.starts, z_start), put(buf.actions_MKA, actions_KA),
                     jax.tree.map(put, buf.ends, z_end), put(buf.valid_M, valid))


def transition_error(predict: StepFn, params, buf: Transitions):
  """Mean over the written slots of the mean squared difference between the model's rollout of
  each block's actions from its start and the encoded outcome (0 with nothing written)."""
  def one(z0, acts_KA, z_end):
    return mean_square(jax.tree.map(lambda x: x[-1], unroll(predict, params, z0, acts_KA)), z_end)

  err_M = jax.vmap(one)(buf.starts, buf.actions_MKA, buf.ends)
  return jnp.sum(err_M * buf.valid_M) / jnp.maximum(jnp.sum(buf.valid_M), 1.0)


def make_adapter(predict: StepFn, cfg: AdaptConfig) -> Callable[[Any, Any, Transitions], Any]:
  """adapt(params_trained, params, buffer) -> params after `cfg.steps` clipped gradient steps on
  transition_error + anchor * |params[key] - params_trained[key]|^2 (only params[key] moves)."""
  key = cfg.params_key

  def split(params):
    if not isinstance(params, dict) or key not in params:
      raise ValueError(f'online adaptation: the world model\'s params have no {key!r} entry to '
                       f'adapt (got {type(params).__name__} with keys '
                       f'{sorted(params) if isinstance(params, dict) else "-"}); set '
                       'adapt.params_key to the predictor\'s entry, or adapt.steps=0')
    return params[key]

  def adapt(params_trained, params, buf: Transitions):
    trained = split(params_trained)

    def loss(theta):
      err = transition_error(predict, {**params, key: theta}, buf)
      if cfg.anchor:
        sq = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.sum(jnp.square(a - b)), theta, trained))
        err = err + cfg.anchor * sum(sq)
      return err

    def body(_, theta):
      g = jax.grad(loss)(theta)
      norm = optax.global_norm(g)
      scale = cfg.learning_rate * jnp.minimum(1.0, cfg.clip / (norm + 1e-12))
      return jax.tree.map(lambda t, d: t - scale * d, theta, g)

    return {**params, key: jax.lax.fori_loop(0, cfg.steps, body, split(params))}

  return adapt
