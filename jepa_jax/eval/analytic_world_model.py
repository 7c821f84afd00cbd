"""A hand-written Two Rooms world model that still goes through images.

Stand-in for the learned model (and a reference for it): `encode` reads the rendered observation
(H, W, 2) only — the agent position is the soft-argmax centroid of the dot channel, the layout is
summarised from the wall channel (centre column of the middle wall, centre row of its door gap) —
and `step` moves the decoded position with the environment's own wall-stopping geometry.

z = (x, y, wall_x, door_y) in pixels. The wall coordinates are the same for the current and the
goal image, so a latent goal distance is the agent's Euclidean distance to the goal: a greedy cost
that is minimised by pressing against the wall when the goal is in the other room.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jepa_jax.envs import two_rooms
from jepa_jax.planning.closed_loop import clip_norm


def init_params(temperature: float = 1.0, walls: bool = True) -> dict:
  """temperature: soft-argmax weights are dot**(1/temperature); 1.0 is the intensity centroid,
  which is the exact centre of a sampled Gaussian dot away from the border (error < 0.01 px).
  walls=False gives a free-space model that ignores the wall (a deliberately wrong model)."""
  return dict(temperature=jnp.float32(temperature), walls=jnp.float32(walls))


def encode(params, obs_HWC):
  size_h, size_w = obs_HWC.shape[0], obs_HWC.shape[1]
  dot_HW, wall_HW = obs_HWC[..., 0], obs_HWC[..., 1]
  yc_H = jnp.arange(size_h, dtype=jnp.float32) + 0.5
  xc_W = jnp.arange(size_w, dtype=jnp.float32) + 0.5
  w_HW = jax.nn.softmax((jnp.log(dot_HW + 1e-30) / params['temperature']).ravel()).reshape(dot_HW.shape)
  x, y = jnp.sum(w_HW.sum(0) * xc_W), jnp.sum(w_HW.sum(1) * yc_H)
  # Border rows/columns are entirely wall; the middle wall is the interior column set mostly wall.
  row_full_H = jnp.mean(wall_HW, axis=1) > 0.99
  col_full_W = jnp.mean(wall_HW, axis=0) > 0.99
  interior_HW = (~row_full_H)[:, None] & (~col_full_W)[None, :]
  col_frac_W = jnp.sum(wall_HW * interior_HW, 0) / jnp.maximum(jnp.sum(interior_HW, 0), 1)
  wall_col_W = (col_frac_W > 0.5).astype(jnp.float32)
  wall_x = jnp.sum(wall_col_W * xc_W) / jnp.maximum(jnp.sum(wall_col_W), 1.0)
  gap_H = (~row_full_H) & (jnp.sum(wall_HW * wall_col_W[None], 1) < 0.5 * jnp.sum(wall_col_W))
  door_y = jnp.sum(gap_H * yc_H) / jnp.maximum(jnp.sum(gap_H), 1.0)
  return jnp.stack([x, y, wall_x, door_y])


def make_step(env_cfg: two_rooms.TwoRoomsConfig):
  """step(params, z, action) -> z_next: move (x, y) by the norm-clipped action, stopping at the
  walls decoded in z (or ignoring them when params['walls'] == 0).

  The value is exactly the environment's `move`; its gradient treats the contact time as a
  constant (d z_next / d action = t), because differentiating the environment's slab test
  directly gives NaN (inf * 0 in the infinite border rectangles)."""
  def step(params, z, action_A):
    delta = clip_norm(action_A, env_cfg.max_action_norm)
    pos, layout = z[:2], jax.lax.stop_gradient(z[2:])
    t = jax.lax.stop_gradient(two_rooms.contact_time(pos, delta, layout, env_cfg))
    exact = jax.lax.stop_gradient(two_rooms.move(pos, delta, layout, env_cfg))
    raw = pos + t * delta
    walled = exact + raw - jax.lax.stop_gradient(raw)
    free = jnp.clip(z[:2] + delta, env_cfg.border, env_cfg.size - env_cfg.border)
    pos = jnp.where(params['walls'] > 0, walled, free)
    return jnp.concatenate([pos, z[2:]])

  return step
