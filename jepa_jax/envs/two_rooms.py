"""Two Rooms: a point agent in a walled square split by a vertical wall with one door.

Pure-JAX re-implementation of the "Two Rooms" / "Wall" environment used by PLDM and
EB-JEPA. Every function is pure, jittable (pass ``cfg`` as a static argument) and
vmappable over states, actions and keys.

Coordinates
-----------
``pos = (x, y)`` in pixels, ``x`` along the width (columns), ``y`` along the height (rows).
Pixel ``(i, j)`` (row ``i``, column ``j``) is the unit square ``[j, j+1) x [i, i+1)``; its
centre is ``(x, y) = (j + 0.5, i + 0.5)``. All wall boundaries lie on integer coordinates, so
every pixel is either entirely wall or entirely free and the rendered wall channel is the
exact wall set.

Walls (an open set; the agent's centre point may touch a wall face but never enter)
------------------------------------------------------------------------------------
* Border: everything outside the closed box ``[border, size - border]^2``, i.e. the
  ``border`` outermost pixel rows/columns on every side.
* Middle wall: the open slab ``wall_x - wall_width/2 < x < wall_x + wall_width/2`` except
  the door gap ``door_y - door_half_height <= y <= door_y + door_half_height``. The door
  is a passage ``wall_width`` long; the agent may stand inside it.

The free region is the closed complement. ``layout = (wall_x, door_y)`` holds the *centre*
line of the middle wall and the *centre* of the door gap, so ``room_of`` needs no config.

Layouts
-------
* ``fixed_layout=True``: wall columns ``c .. c + wall_width - 1`` with
  ``c = (size - wall_width) // 2`` (exactly centred for odd ``size - wall_width``, e.g.
  ``size=65``; half a pixel left of centre for ``size=64``), door centre ``door_y = size // 2``.
* ``fixed_layout=False``: ``c`` uniform over integers with every wall column at least
  ``wall_padding`` px from both canvas edges (``wall_padding <= c <= size - wall_padding -
  wall_width``); ``door_y`` uniform over integers keeping at least ``door_padding`` px of
  middle wall between the door gap and the border wall
  (``border + door_padding + h <= door_y <= size - border - door_padding - h``).

Dynamics
--------
The action ``(dx, dy)`` is scaled down to norm ``<= max_action_norm`` (direction kept), then
the agent moves along the straight segment until the first contact with a wall and stops
there (no sliding). Contact is found with exact segment-vs-rectangle geometry, so there is
no tunnelling at any speed.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

__all__ = [
    "TwoRoomsConfig",
    "EnvState",
    "fixed_layout",
    "sample_layout",
    "wall_bounds",
    "in_wall",
    "in_door",
    "room_of",
    "same_room",
    "wall_mask",
    "clip_action",
    "contact_time",
    "move",
    "step",
    "render",
    "render_pos",
    "sample_free_pos",
    "sample_pos_in_room",
    "reset",
    "reset_in_room",
]


@dataclasses.dataclass(frozen=True)
class TwoRoomsConfig:
    """Static environment configuration (hashable: pass it as a static jit argument)."""

    size: int = 64
    border: int = 5
    wall_width: int = 3
    door_half_height: int = 4
    fixed_layout: bool = True
    wall_padding: int = 20
    door_padding: int = 10
    dot_sigma: float = 1.3
    max_action_norm: float = 2.45

    def __post_init__(self):
        def need(ok: bool, key: str, msg: str):
            if not ok:
                raise ValueError(f"TwoRoomsConfig.{key}: {msg} (got {getattr(self, key)!r}).")

        for key in ("size", "border", "wall_width", "door_half_height", "wall_padding",
                    "door_padding"):
            need(isinstance(getattr(self, key), int), key,
                 "must be an int so walls stay pixel-aligned")
        need(self.border >= 1, "border", "must be >= 1")
        need(self.wall_width >= 1, "wall_width", "must be >= 1")
        need(self.door_half_height >= 1, "door_half_height", "must be >= 1")
        need(self.dot_sigma > 0, "dot_sigma", "must be > 0")
        need(self.max_action_norm > 0, "max_action_norm", "must be > 0 (use inf to disable)")
        need(self.wall_padding > self.border, "wall_padding",
             "must exceed `border` so both rooms have free space")
        need(self.size - 2 * self.wall_padding - self.wall_width >= 0, "wall_padding",
             "leaves no valid wall column; lower wall_padding or raise size")
        need(self.size - 2 * (self.border + self.door_padding + self.door_half_height) >= 0,
             "door_padding", "leaves no valid door position; lower door_padding or "
             "door_half_height, or raise size")
        c = (self.size - self.wall_width) // 2
        need(c > self.border and c + self.wall_width < self.size - self.border, "size",
             "too small for border + wall_width")
        need(self.size // 2 - self.door_half_height >= self.border
             and self.size // 2 + self.door_half_height <= self.size - self.border,
             "door_half_height", "door gap is taller than the free interior")


@flax.struct.dataclass
class EnvState:
    """``pos_2``: agent centre (x, y) in px. ``layout_2``: (wall_x, door_y) centres in px.

    The layout is ground truth for probes and success checks; a policy must not read it.
    """

    pos: jax.Array
    layout: jax.Array


# ----------------------------------------------------------------------------- layout

def fixed_layout(cfg: TwoRoomsConfig) -> jax.Array:
    c = (cfg.size - cfg.wall_width) // 2
    return jnp.array([c + cfg.wall_width / 2, cfg.size // 2], jnp.float32)


def sample_layout(key: jax.Array, cfg: TwoRoomsConfig) -> jax.Array:
    """(wall_x, door_y) centres; the fixed layout when ``cfg.fixed_layout``."""
    if cfg.fixed_layout:
        return fixed_layout(cfg)
    k_wall, k_door = jax.random.split(key)
    h = cfg.door_half_height
    c = jax.random.randint(k_wall, (), cfg.wall_padding,
                           cfg.size - cfg.wall_padding - cfg.wall_width + 1)
    lo = cfg.border + cfg.door_padding + h
    door_y = jax.random.randint(k_door, (), lo, cfg.size - lo + 1)
    return jnp.stack([c + cfg.wall_width / 2, door_y]).astype(jnp.float32)


def wall_bounds(layout: jax.Array, cfg: TwoRoomsConfig):
    """(wall_left, wall_right, door_lo, door_hi): the slab x-range and the door y-range."""
    wall_x, door_y = layout[..., 0], layout[..., 1]
    half_w, h = cfg.wall_width / 2, cfg.door_half_height
    return wall_x - half_w, wall_x + half_w, door_y - h, door_y + h


# ----------------------------------------------------------------------------- queries

def in_wall(pos: jax.Array, layout: jax.Array, cfg: TwoRoomsConfig) -> jax.Array:
    """True where ``pos[..., :2]`` is strictly inside a wall (faces count as free)."""
    x, y = pos[..., 0], pos[..., 1]
    lo, hi = cfg.border, cfg.size - cfg.border
    outside = (x < lo) | (x > hi) | (y < lo) | (y > hi)
    wl, wr, dlo, dhi = wall_bounds(layout, cfg)
    in_slab = (x > wl) & (x < wr) & ((y < dlo) | (y > dhi))
    return outside | in_slab


def in_door(pos: jax.Array, layout: jax.Array, cfg: TwoRoomsConfig) -> jax.Array:
    """True where the agent stands strictly inside the door passage."""
    wl, wr, dlo, dhi = wall_bounds(layout, cfg)
    x, y = pos[..., 0], pos[..., 1]
    return (x > wl) & (x < wr) & (y >= dlo) & (y <= dhi)


def room_of(pos: jax.Array, layout: jax.Array) -> jax.Array:
    """0 for the left room, 1 for the right one; split at the wall's centre line."""
    return (pos[..., 0] >= layout[..., 0]).astype(jnp.int32)


def same_room(pos_a: jax.Array, pos_b: jax.Array, layout: jax.Array) -> jax.Array:
    return room_of(pos_a, layout) == room_of(pos_b, layout)


def wall_mask(layout: jax.Array, cfg: TwoRoomsConfig) -> jax.Array:
    """(H, W) float32, 1.0 on wall pixels. Pixel centres decide (boundaries are integer)."""
    centres = jnp.arange(cfg.size, dtype=jnp.float32) + 0.5
    xy_HW2 = jnp.stack(jnp.meshgrid(centres, centres, indexing="xy"), axis=-1)
    return in_wall(xy_HW2, layout, cfg).astype(jnp.float32)


# ----------------------------------------------------------------------------- dynamics

def clip_action(action: jax.Array, max_norm: float) -> jax.Array:
    """Scale ``action[..., 2]`` down to norm <= max_norm, keeping its direction."""
    norm = jnp.linalg.norm(action, axis=-1, keepdims=True)
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
    return action * scale


def _obstacles_K4(layout: jax.Array, cfg: TwoRoomsConfig) -> jax.Array:
    """Walls as open rectangles (x0, x1, y0, y1); infinite extents model the border."""
    inf = jnp.inf
    lo, hi = float(cfg.border), float(cfg.size - cfg.border)
    wl, wr, dlo, dhi = wall_bounds(layout, cfg)
    return jnp.array([
        [-inf, lo, -inf, inf], [hi, inf, -inf, inf],  # left / right border
        [-inf, inf, -inf, lo], [-inf, inf, hi, inf],  # top / bottom border
        [0.0, 0.0, -inf, 0.0], [0.0, 0.0, 0.0, inf],  # middle wall above / below the door
    ], jnp.float32).at[4:, 0].set(wl).at[4:, 1].set(wr).at[4, 3].set(dlo).at[5, 2].set(dhi)


def _open_interval_times(p, d, lo, hi):
    """Times t with lo < p + t*d < hi, as (t_min, t_max); empty when t_min >= t_max."""
    moving = d != 0
    safe_d = jnp.where(moving, d, 1.0)
    t0, t1 = (lo - p) / safe_d, (hi - p) / safe_d
    inside = (lo < p) & (p < hi)  # a still coordinate is inside for all t or never
    t_min = jnp.where(moving, jnp.minimum(t0, t1), jnp.where(inside, -jnp.inf, jnp.inf))
    t_max = jnp.where(moving, jnp.maximum(t0, t1), jnp.where(inside, jnp.inf, -jnp.inf))
    return t_min, t_max


def contact_time(pos: jax.Array, delta: jax.Array, layout: jax.Array,
                 cfg: TwoRoomsConfig) -> jax.Array:
    """Largest t in [0, 1] such that the segment pos -> pos + t*delta stays free.

    Slab method against every wall rectangle: the segment enters an open rectangle iff the
    open time intervals of both axes overlap inside [0, 1]; grazing a face or a corner
    (empty open overlap) is not a contact, which is what lets the agent slide along a face
    and stand in the door passage.
    """
    obs_K4 = _obstacles_K4(layout, cfg)
    tx_min, tx_max = _open_interval_times(pos[0], delta[0], obs_K4[:, 0], obs_K4[:, 1])
    ty_min, ty_max = _open_interval_times(pos[1], delta[1], obs_K4[:, 2], obs_K4[:, 3])
    t_enter = jnp.maximum(tx_min, ty_min)
    t_exit = jnp.minimum(tx_max, ty_max)
    hits = (t_enter < t_exit) & (t_exit > 0.0) & (t_enter < 1.0)
    return jnp.min(jnp.where(hits, jnp.clip(t_enter, 0.0, 1.0), 1.0))


def _project_free(pos: jax.Array, layout: jax.Array, cfg: TwoRoomsConfig) -> jax.Array:
    """Push a point out of the walls onto the nearest face.

    In exact arithmetic ``pos + t*delta`` is already free; float32 rounding of that product
    can land an ulp inside a face, which this undoes without changing the geometry.
    """
    x = jnp.clip(pos[0], cfg.border, cfg.size - cfg.border)
    y = jnp.clip(pos[1], cfg.border, cfg.size - cfg.border)
    wl, wr, dlo, dhi = wall_bounds(layout, cfg)
    in_slab = (x > wl) & (x < wr) & ((y < dlo) | (y > dhi))
    face_y = jnp.where(y < dlo, dlo, dhi)
    d_left, d_right, d_door = x - wl, wr - x, jnp.abs(y - face_y)
    to_left = d_left <= jnp.minimum(d_right, d_door)
    to_right = ~to_left & (d_right <= d_door)
    x_out = jnp.where(to_left, wl, jnp.where(to_right, wr, x))
    y_out = jnp.where(to_left | to_right, y, face_y)
    return jnp.stack([jnp.where(in_slab, x_out, x), jnp.where(in_slab, y_out, y)])


def move(pos: jax.Array, delta: jax.Array, layout: jax.Array,
         cfg: TwoRoomsConfig) -> jax.Array:
    """Move the point ``pos_2`` by ``delta_2`` (no norm clipping), stopping at first contact.

    A start point inside a wall (invalid input) does not move and is projected out.
    """
    t = contact_time(pos, delta, layout, cfg)
    return _project_free(pos + t * delta, layout, cfg)


def step(state: EnvState, action: jax.Array, cfg: TwoRoomsConfig) -> EnvState:
    """Clip the action norm to ``cfg.max_action_norm``, then move with wall stopping."""
    delta = clip_action(action.astype(jnp.float32), cfg.max_action_norm)
    return state.replace(pos=move(state.pos, delta, state.layout, cfg))


# ----------------------------------------------------------------------------- render

def render_pos(pos: jax.Array, layout: jax.Array, cfg: TwoRoomsConfig) -> jax.Array:
    """(H, W, 2) float32 in [0, 1]: ch 0 Gaussian dot (peak 1 at ``pos``), ch 1 walls."""
    centres = jnp.arange(cfg.size, dtype=jnp.float32) + 0.5
    dx2_W = (centres - pos[0]) ** 2
    dy2_H = (centres - pos[1]) ** 2
    dot_HW = jnp.exp(-(dy2_H[:, None] + dx2_W[None, :]) / (2.0 * cfg.dot_sigma ** 2))
    return jnp.stack([dot_HW, wall_mask(layout, cfg)], axis=-1)


def render(state: EnvState, cfg: TwoRoomsConfig) -> jax.Array:
    return render_pos(state.pos, state.layout, cfg)


# ----------------------------------------------------------------------------- reset

def _uniform_in_box(key, x0, x1, y0, y1):
    u = jax.random.uniform(key, (2,), jnp.float32)
    return jnp.stack([x0 + u[0] * (x1 - x0), y0 + u[1] * (y1 - y0)])


def _room_boxes(layout: jax.Array, cfg: TwoRoomsConfig):
    """Closed free boxes (x0, x1, y0, y1) of the left room, right room and door passage."""
    lo, hi = float(cfg.border), float(cfg.size - cfg.border)
    wl, wr, dlo, dhi = wall_bounds(layout, cfg)
    return jnp.stack([
        jnp.stack([lo, wl, lo, hi]), jnp.stack([wr, hi, lo, hi]), jnp.stack([wl, wr, dlo, dhi]),
    ])


def sample_pos_in_room(key: jax.Array, layout: jax.Array, room: jax.Array | int,
                       cfg: TwoRoomsConfig) -> jax.Array:
    """Uniform position in room 0 (left) or 1 (right), door passage excluded."""
    box_4 = _room_boxes(layout, cfg)[jnp.asarray(room, jnp.int32)]
    return _uniform_in_box(key, *box_4)


def sample_free_pos(key: jax.Array, layout: jax.Array, cfg: TwoRoomsConfig) -> jax.Array:
    """Uniform over the whole free region (both rooms and the door passage)."""
    k_box, k_pos = jax.random.split(key)
    boxes_34 = _room_boxes(layout, cfg)
    area_3 = (boxes_34[:, 1] - boxes_34[:, 0]) * (boxes_34[:, 3] - boxes_34[:, 2])
    which = jax.random.categorical(k_box, jnp.log(area_3))
    return _uniform_in_box(k_pos, *boxes_34[which])


def reset(key: jax.Array, cfg: TwoRoomsConfig) -> EnvState:
    k_layout, k_pos = jax.random.split(key)
    layout = sample_layout(k_layout, cfg)
    return EnvState(pos=sample_free_pos(k_pos, layout, cfg), layout=layout)


def reset_in_room(key: jax.Array, cfg: TwoRoomsConfig, room: jax.Array | int) -> EnvState:
    """Like ``reset`` but the start lies in ``room`` (0 left, 1 right; may be traced)."""
    k_layout, k_pos = jax.random.split(key)
    layout = sample_layout(k_layout, cfg)
    return EnvState(pos=sample_pos_in_room(k_pos, layout, room, cfg), layout=layout)
