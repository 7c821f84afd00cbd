"""A memory of moves that did not happen, and a planning cost that stops the planner repeating them.

Why: a learned world model is wrong in places (on Two Rooms it lets the agent through the middle
wall in 18-29 % of straight pushes), and a receding-horizon planner on it repeats the same wrong
move replan after replan: pressed against a wall or a door's corner, it keeps pushing because the
model keeps promising the push goes through. The closed loop can see that it did not: after each
executed block it compares how far the model said the latent would move with how far the encoded
observation moved. This module remembers (latent, action, shortfall) for every executed block
and charges plans that take an action near a remembered one from near the same latent, in
proportion to how much of that move failed. The memory holds only what the planner itself saw
(encoded observations and its own actions), never the environment's state.

The same memory also knows where the episode's blocks started. `visited_penalty` charges plans
that lead back there while the agent is far from the goal: the latent goal energy is flat beyond
~10 px (RMS latent difference saturates), so an agent on the wrong side of a long wall walks up
and down the same stretch of it; charging returns fills that basin until a way out (the door)
is cheaper. It is off within the gate's near distance of the goal (~8 px by default), so it does
not push an agent off a goal it has reached.

The goal a planner is handed becomes `Remembered(goal, starts, actions_MA, shortfall_M,
written_M)`; a cost built with `with_blocked_move_penalty` reads the memory and passes `goal` on
to the task cost. Planners pass the goal through untouched, so every planner works with it
unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jepa_jax.planning.rollout import CostFn


class Remembered(NamedTuple):
  goal: Any  # what the task cost compares with (an encoded goal or its rollout)
  starts: Any  # latent each remembered move started from, leading axis M (ring buffer slots)
  actions_MA: jax.Array  # the plan action taken there (the first of its executed block)
  shortfall_M: jax.Array  # share of the predicted move that did not happen, in [0, 1]; 0: empty
  # 1 where the slot holds a block the episode executed (the visited places); None: unknown (only
  # the failed-move charge can read such a memory)
  written_M: jax.Array | None = None


def empty_memory(z, slots: int, action_dim: int):
  """(starts, actions_MA, shortfall_M, written_M) with `slots` empty slots for latents shaped like
  `z`; `Remembered(goal, *memory)` hands it to a planner."""
  if not isinstance(slots, int) or slots <= 0:
    raise ValueError(f'empty_memory: slots must be a positive int, got {slots!r}')
  starts = jax.tree.map(lambda x: jnp.zeros((slots,) + jnp.shape(x), jnp.float32), z)
  zeros_M = jnp.zeros((slots,), jnp.float32)
  return starts, jnp.zeros((slots, action_dim), jnp.float32), zeros_M, zeros_M


def remember(memory, z, action_A, shortfall, index, written=1.0):
  """Write one move into slot index % M (the oldest goes first once the ring is full); `written`
  0 keeps the slot out of the visited places (a stand-in written before the first block)."""
  starts, actions_MA, shortfall_M, written_M = memory
  slot = jnp.asarray(index) % shortfall_M.shape[0]
  starts = jax.tree.map(lambda s, x: s.at[slot].set(jnp.asarray(x, s.dtype)), starts, z)
  return (starts, actions_MA.at[slot].set(action_A), shortfall_M.at[slot].set(shortfall),
          written_M.at[slot].set(jnp.asarray(written, written_M.dtype)))


def _check_radii(owner: str, radius: float, action_radius: float) -> None:
  if not (radius > 0 and action_radius > 0):
    raise ValueError(f'{owner}: radius ({radius}) and action_radius ({action_radius}) must be > 0')


def mean_square(x, y):
  """Mean squared difference over every element of two latents (pytrees of the same shape)."""
  leaves = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.square(a - b), x, y))
  return sum(jnp.sum(v) for v in leaves) / sum(v.size for v in leaves)


def _rms(x, y):
  return jnp.sqrt(mean_square(x, y))


def move_shortfall(z_start, z_predicted, z_predicted_still, z_observed, scale: float):
  """How much of the move the model predicted did not happen, in [0, 1].

  The predicted move is the RMS latent difference between the model's rollout under the executed
  actions and under zero actions from the same start (so drift that does not depend on the
  actions is not counted as a move); the observed one is between the encoded start and the
  encoded observation after the block. Predicted moves smaller than `scale` (RMS latent units,
  the kernel radius) count in proportion, so a near-still plan's noise is not taken for a block.
  """
  predicted = _rms(z_predicted, z_predicted_still)
  observed = _rms(z_observed, z_start)
  short = jnp.clip(1.0 - observed / (predicted + 1e-6), 0.0, 1.0)
  return short * jnp.clip(predicted / scale, 0.0, 1.0)


def _flat(tree, n: int, start: int = 0):
  """Entries start..start+n-1 of a latent pytree's leading axis, flattened -> (n, F)."""
  return jnp.concatenate([jnp.reshape(x[start:start + n], (n, -1)) for x in jax.tree.leaves(tree)],
                         axis=-1)


def blocked_move_penalty(z_traj, actions_HA, memory: Remembered, radius: float,
                         action_radius: float):
  """sum_{t=0..H-1} max_m shortfall_m * K(z_t, s_m; radius) * K(a_t, a_m; action_radius).

  z_t is the latent action a_t is taken from (z_traj[0] = z0 for the first). K(x, y; r) =
  exp(-d^2 / (2 r^2)) with d the RMS latent difference (z) or the Euclidean distance (a). Each
  plan step pays at most 1; the max over the memory keeps the charge bounded however often a
  move failed.
  """
  _check_radii('blocked_move_penalty', radius, action_radius)
  H = actions_HA.shape[0]
  a2_TM = jnp.sum(jnp.square(actions_HA[:, None, :] - memory.actions_MA[None, :, :]), axis=-1)
  near_TM = (memory.shortfall_M[None, :] * _latent_kernel_TM(_flat(z_traj, H), memory, radius)
             * jnp.exp(-0.5 * a2_TM / action_radius ** 2))
  return jnp.sum(jnp.max(near_TM, axis=-1))


def _latent_kernel_TM(points_TF, memory: Remembered, radius: float):
  """K(x_t, s_m; radius) between flattened latents (T, F) and the memory's starts -> (T, M)."""
  starts_MF = _flat(memory.starts, memory.shortfall_M.shape[0])
  d2_TM = jnp.mean(jnp.square(points_TF[:, None, :] - starts_MF[None, :, :]), axis=-1)
  return jnp.exp(-0.5 * d2_TM / radius ** 2)


@dataclasses.dataclass(frozen=True)
class VisitedPenalty:
  """Charge for leading back to where the episode's blocks started, while far from the goal.

  weight: per plan step (each pays at most `weight`); radius: kernel radius in RMS latent
  difference; gate: (near, far) RMS latent difference between the present latent and the goal
  over which the charge ramps from 0 to full (on the 12k Two Rooms encoder 0.8 / 0.9 are ~8 /
  ~12 px; the difference saturates at ~0.9-0.95 beyond that). The present latent is the first
  of the trajectory the cost is handed: under the two-level planner the fine level's goal is
  the subgoal, so there the gate reads the distance to the subgoal, and the 'tail' selection's
  high-level tail is charged from the fine plan's end.
  """
  weight: float
  radius: float = 0.45
  gate: tuple[float, float] = (0.8, 0.9)

  def __post_init__(self):
    if not self.weight >= 0:
      raise ValueError(f'VisitedPenalty.weight must be >= 0, got {self.weight}')
    if not self.radius > 0:
      raise ValueError(f'VisitedPenalty.radius must be > 0, got {self.radius}')
    if len(self.gate) != 2:
      raise ValueError(f'VisitedPenalty.gate must be (near, far), got {self.gate}')
    near, far = self.gate
    if not 0 <= near < far:
      raise ValueError(f'VisitedPenalty.gate=(near, far) needs 0 <= near < far, got {self.gate}')


def visited_penalty(z_traj, num_actions: int, memory: Remembered, goal, radius: float,
                    gate: tuple[float, float]):
  """ramp(rms(z_0, goal)) * sum_{t=1..H} max_m written_m * K(z_t, s_m; radius).

  z_t (t >= 1) is the latent after plan action t, s_m the latent block m started from, K as in
  `blocked_move_penalty`; ramp rises linearly from 0 at gate[0] to 1 at gate[1]. Each plan step
  pays at most 1. The memory must say which slots were written (`written_M`): an empty slot's
  start is a zero latent, not a place the agent has been.
  """
  if memory.written_M is None:
    raise ValueError('visited_penalty: the memory has no written_M (which slots hold executed '
                     'blocks); build it with empty_memory / remember, as the closed loop does')
  near, far = gate
  near_TM = memory.written_M[None, :] * _latent_kernel_TM(
      _flat(z_traj, num_actions, start=1), memory, radius)
  present = jax.tree.map(lambda x: x[0], z_traj)
  on = jnp.clip((_rms(present, goal) - near) / (far - near), 0.0, 1.0)
  return on * jnp.sum(jnp.max(near_TM, axis=-1))


def with_blocked_move_penalty(cost_fn: CostFn, weight: float, radius: float,
                              action_radius: float,
                              visited: VisitedPenalty | None = None) -> CostFn:
  """cost(z_traj, actions_HA, Remembered) = cost_fn(z_traj, actions_HA, goal)
  + weight * blocked_move_penalty(z_traj, actions_HA, memory, radius, action_radius)
  [+ visited.weight * visited_penalty(...) with `visited`]."""
  if not weight >= 0:
    raise ValueError(f'with_blocked_move_penalty: weight must be >= 0, got {weight}')
  _check_radii('with_blocked_move_penalty', radius, action_radius)

  def cost(z_traj, actions_HA, task: Remembered):
    if not isinstance(task, Remembered):
      raise TypeError('with_blocked_move_penalty: the goal must be a Remembered(goal, starts, '
                      'actions_MA, shortfall_M, written_M) (the closed loop builds it when '
                      f'ClosedLoopConfig.move_memory > 0), got {type(task)}')
    total = cost_fn(z_traj, actions_HA, task.goal)
    if weight:
      total = total + weight * blocked_move_penalty(z_traj, actions_HA, task, radius,
                                                    action_radius)
    if visited is not None and visited.weight:
      total = total + visited.weight * visited_penalty(
          z_traj, actions_HA.shape[0], task, task.goal, visited.radius, visited.gate)
    return total

  return cost
