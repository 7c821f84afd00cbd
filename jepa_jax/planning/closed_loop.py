"""Receding-horizon control in a pure-JAX environment: observe -> encode -> plan -> act -> repeat.

One episode is ONE `lax.scan` over replanning blocks; each block renders the current state,
encodes the image, plans from that latent, executes the first `replan_every` actions in the
environment (an inner scan) and shifts the plan as the next warm start. A batch of episodes is
`jax.vmap(run, in_axes=(None, 0, 0, 0))`.

What the planner sees: `encode(params, observe(state))` and `encode(params, goal_obs)`, nothing
else. The environment state (true position, layout) is only handed to `env_step` and `observe`;
success is judged from the returned states after the episode, never inside the loop.

With `move_memory`, the loop also compares each executed block's encoded outcome with the move
the model predicted for it and hands the planner that memory (planning/move_memory.py): a move
the world did not make (a push into a wall the model lets through) costs more to plan again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jepa_jax.planning import move_memory as MM
from jepa_jax.planning import online_adapt as OA
from jepa_jax.planning.rollout import StepFn, shift_plan, unroll

EncodeFn = Callable[[Any, jax.Array], Any]  # (params, obs) -> z
PlanFn = Callable[..., tuple[jax.Array, dict]]  # (params, z0, z_goal, key, init_plan_HA) -> (a_HA, info)


@dataclasses.dataclass(frozen=True)
class ClosedLoopConfig:
  episode_steps: int = 200  # environment steps per episode (the budget)
  replan_every: int = 4  # plan actions executed before observing and replanning (k)
  horizon: int = 32  # planner horizon H in plan actions (must equal the planner config's horizon)
  action_repeat: int = 1  # each plan action is held for r env steps (the model steps r times too)
  action_dim: int = 2
  action_max_norm: float | None = None  # executed AND modelled actions are scaled to this norm
  shift_fill: str = 'last'  # warm start padding, see rollout.shift_plan
  cold_restart: bool = False  # also plan from an all-zero plan each replan; keep the cheaper plan
  # > 0: remember the last `move_memory` executed blocks as (start latent, first action, share of
  # the predicted move that did not happen, written) and hand the planner Remembered(z_goal, ...)
  # as its goal; its cost must read it (planning/move_memory.with_blocked_move_penalty: failed
  # moves, and with `visited` the places the blocks started from)
  move_memory: int = 0
  move_scale: float = 1.0  # RMS latent move below which a predicted move counts only in part
  # > 0: store the last `adapt_slots` executed blocks as transitions and adapt the model's params
  # to them before each plan (make_closed_loop's `adapt`, planning/online_adapt.make_adapter)
  adapt_slots: int = 0

  def __post_init__(self):
    name = 'ClosedLoopConfig'
    for key in ('episode_steps', 'replan_every', 'horizon', 'action_dim', 'action_repeat'):
      if not isinstance(getattr(self, key), int) or getattr(self, key) <= 0:
        raise ValueError(f'{name}.{key} must be a positive int, got {getattr(self, key)!r}')
    if self.replan_every > self.horizon:
      raise ValueError(f'{name}.replan_every={self.replan_every} exceeds horizon={self.horizon}: '
                       'a plan cannot supply more actions than it has; lower replan_every')
    if self.episode_steps % self.steps_per_block:
      raise ValueError(f'{name}.episode_steps={self.episode_steps} must be a multiple of '
                       f'replan_every * action_repeat = {self.steps_per_block} (every block '
                       'executes the same number of steps inside one scan); change one of them')
    if self.action_max_norm is not None and not self.action_max_norm > 0:
      raise ValueError(f'{name}.action_max_norm must be > 0 or None, got {self.action_max_norm}')
    if self.shift_fill not in ('last', 'zeros'):
      raise ValueError(f"{name}.shift_fill must be 'last' or 'zeros', got {self.shift_fill!r}")
    if not isinstance(self.move_memory, int) or self.move_memory < 0:
      raise ValueError(f'{name}.move_memory must be an int >= 0 (0: no memory), got '
                       f'{self.move_memory!r}')
    if not isinstance(self.adapt_slots, int) or self.adapt_slots < 0:
      raise ValueError(f'{name}.adapt_slots must be an int >= 0 (0: no adaptation), got '
                       f'{self.adapt_slots!r}')
    if not self.move_scale > 0:
      raise ValueError(f'{name}.move_scale must be > 0, got {self.move_scale}')

  @property
  def steps_per_block(self) -> int:
    return self.replan_every * self.action_repeat

  @property
  def num_replans(self) -> int:
    return self.episode_steps // self.steps_per_block


class Episode(NamedTuple):
  states: Any  # env-state pytree, leading axis T+1 (initial state first)
  actions_TA: jax.Array  # executed actions (after the norm clip)
  plan_cost_R: jax.Array  # planner's objective at each replan
  z_R: Any  # the latent the planner was given at each replan (encode of the rendered state)
  z_goal: Any


def clip_norm(actions_A, max_norm: float | None):
  """Scale each action (last axis) down to norm <= max_norm, keeping its direction."""
  if max_norm is None:
    return actions_A
  # sqrt(|a|^2 + eps), not jnp.linalg.norm: the latter's gradient is NaN at a = 0 (a cold plan).
  norm = jnp.sqrt(jnp.sum(jnp.square(actions_A), axis=-1, keepdims=True) + 1e-12)
  return actions_A * jnp.minimum(1.0, max_norm / norm)


def clipped_step(step_fn: StepFn, max_norm: float | None) -> StepFn:
  """The world-model step the planner must use: it sees the same clipped action the env gets."""
  if max_norm is None:
    return step_fn
  return lambda params, z, a_A: step_fn(params, z, clip_norm(a_A, max_norm))


def repeated_step(step_fn: StepFn, repeat: int, max_norm: float | None) -> StepFn:
  """One action held for `repeat` env steps: norm clip, then `repeat` model steps."""
  step = clipped_step(step_fn, max_norm)
  if repeat == 1:
    return step
  return lambda params, z, a_A: jax.lax.fori_loop(0, repeat, lambda _, z: step(params, z, a_A), z)


def planning_step(step_fn: StepFn, cfg: ClosedLoopConfig) -> StepFn:
  """One plan action as the closed loop executes it: norm clip, then `action_repeat` model steps."""
  return repeated_step(step_fn, cfg.action_repeat, cfg.action_max_norm)


def search(plan: PlanFn, params, z0, z_goal, key_warm, key_cold, init_plan_HA,
           cold_restart: bool):
  """A search from `init_plan_HA` (the warm start) and, with `cold_restart`, a second one from an
  all-zero plan -> (the cheaper plan, its cost). `key_cold` is unused without the restart."""
  warm_HA, warm = plan(params, z0, z_goal, key_warm, init_plan_HA)
  if not cold_restart:
    return warm_HA, warm['cost']
  cold_HA, cold = plan(params, z0, z_goal, key_cold, jnp.zeros_like(init_plan_HA))
  better = cold['cost'] < warm['cost']
  return jnp.where(better, cold_HA, warm_HA), jnp.minimum(cold['cost'], warm['cost'])


def make_closed_loop(encode: EncodeFn, plan: PlanFn, env_step: Callable, observe: Callable,
                     cfg: ClosedLoopConfig, predict: StepFn | None = None,
                     adapt: Callable | None = None):
  """run(params, key, state0, goal_obs) -> Episode. Pure; jit it, vmap it over episodes.

  env_step(state, action_A) -> state and observe(state) -> obs are the environment; `plan` must be
  built on `planning_step(step, cfg)` so model and environment agree. With `cfg.move_memory`,
  `predict` is that planning step: the closed loop asks it how far each executed block should
  have moved the latent. With `cfg.adapt_slots`, `adapt(params, params_episode, transitions) ->
  params_episode` (online_adapt.make_adapter on the same step) updates the episode's params from
  the stored blocks before each plan, which then uses them (the memory judges the block that
  just ended with the params that planned it, before the update).
  """
  k, H, A, r = cfg.replan_every, cfg.horizon, cfg.action_dim, cfg.action_repeat
  if cfg.move_memory and predict is None:
    raise ValueError('make_closed_loop: ClosedLoopConfig.move_memory > 0 needs predict= (the '
                     'planning step, planning_step(step, cfg)) to know what each block should do')
  if cfg.adapt_slots and (predict is None or adapt is None):
    raise ValueError('make_closed_loop: ClosedLoopConfig.adapt_slots > 0 needs predict= (the '
                     'planning step) and adapt= (online_adapt.make_adapter on that step)')
  if adapt is not None and not cfg.adapt_slots:
    raise ValueError('make_closed_loop: adapt= was given but ClosedLoopConfig.adapt_slots is 0, '
                     'so nothing would be stored to adapt to; set adapt_slots > 0 or drop adapt=')
  tracks_last = bool(cfg.move_memory or cfg.adapt_slots)

  def recall(params, memory, last, z0, b):
    """Memory with the block that just ended written in (nothing before the first block)."""
    z_prev, acts_KA = last
    predicted = unroll(predict, params, z_prev, acts_KA)
    still = unroll(predict, params, z_prev, jnp.zeros_like(acts_KA))
    short = MM.move_shortfall(z_prev, jax.tree.map(lambda x: x[-1], predicted),
                              jax.tree.map(lambda x: x[-1], still), z0, cfg.move_scale)
    return MM.remember(memory, z_prev, acts_KA[0], short * (b > 0), b - 1, written=b > 0)

  def run(params, key, state0, goal_obs):
    z_goal = encode(params, goal_obs)

    def block(carry, inp):
      state, plan_HA, memory, last, learned = carry
      b, key_b = inp
      z0 = encode(params, observe(state))  # the planner's only view of the world
      goal, params_b = z_goal, params
      if cfg.adapt_slots:
        params_b, buf = learned
      if cfg.move_memory:
        memory = recall(params_b, memory, last, z0, b)
        goal = MM.Remembered(z_goal, *memory)
      if cfg.adapt_slots:  # the block that just ended becomes a transition, then the model learns
        buf = OA.record(buf, last[0], last[1], z0, b - 1, valid=(b > 0).astype(jnp.float32))
        params_b = adapt(params, params_b, buf)
        learned = (params_b, buf)
      # cold_restart: a second search that does not start pressed into whatever held us
      actions_HA, cost = search(plan, params_b, z0, goal, key_b, jax.random.fold_in(key_b, 1),
                                plan_HA, cfg.cold_restart)
      exec_KA = jnp.repeat(clip_norm(actions_HA[:k], cfg.action_max_norm), r, axis=0)
      if tracks_last:
        last = (z0, actions_HA[:k])

      def act(s, a_A):
        s = env_step(s, a_A)
        return s, s

      state, states_K = jax.lax.scan(act, state, exec_KA)
      carry = (state, shift_plan(actions_HA, k, cfg.shift_fill), memory, last, learned)
      return carry, (states_K, exec_KA, cost, z0)

    keys = jax.random.split(key, cfg.num_replans)
    memory, last, learned = (), (), ()
    if tracks_last:
      last = (z_goal, jnp.zeros((k, A), jnp.float32))  # a stand-in, written with weight 0
    if cfg.move_memory:
      memory = MM.empty_memory(z_goal, cfg.move_memory, A)
    if cfg.adapt_slots:
      learned = (params, OA.empty_transitions(z_goal, cfg.adapt_slots, last[1]))
    init = (state0, jnp.zeros((H, A), jnp.float32), memory, last, learned)
    _, (states_RK, exec_RKA, cost_R, z_R) = jax.lax.scan(
        block, init, (jnp.arange(cfg.num_replans), keys))
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    states = jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], flat(s)]), state0, states_RK)
    return Episode(states, flat(exec_RKA), cost_R, z_R, z_goal)

  return run
