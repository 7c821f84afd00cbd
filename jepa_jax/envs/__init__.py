"""Pure-JAX environments (reset/step/render), jittable and vmappable."""

from jepa_jax.envs import two_rooms
from jepa_jax.envs.two_rooms import (
    EnvState,
    TwoRoomsConfig,
    clip_action,
    contact_time,
    fixed_layout,
    in_door,
    in_wall,
    move,
    render,
    render_pos,
    reset,
    reset_in_room,
    room_of,
    same_room,
    sample_free_pos,
    sample_layout,
    sample_pos_in_room,
    step,
    wall_bounds,
    wall_mask,
)

__all__ = ["two_rooms", *two_rooms.__all__]
