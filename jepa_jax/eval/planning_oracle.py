"""Why a planning failure fails: the world's true route against what the planner's model prefers.

For the report only (it reads the environment's layout, which no planner sees). At one replan of
a failed episode, three plans are scored under the planner's own world model and cost:
  stay   all-zero actions;
  route  the true short way through the door (`door_route`), as plan actions;
  found  the best plan of a dense search (many more samples than the evaluation uses);
and the route and the found plan are executed in the environment (`env_path`). Where each ends
is measured as the walk to the goal (`walk_distance`, through the door when the goal is in the
other room). The verdict (`verdict`) says what stands in the way, first match:
  none    the found plan truly ends at least as close as the route, or within the success
          radius (the failure is not decided at this replan, or the evaluation's smaller
          search missed what a dense one finds);
  energy  the route, truncated at the horizon scored, costs the model at least as much as
          staying: over this horizon the model's cost does not prefer the way to the goal;
  search  the route costs less than anything the dense search found;
  model   the search found a plan the model scores cheaper than the route that in the world
          ends farther away (a move the model lets through a wall).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.envs import two_rooms
from jepa_jax.planning.closed_loop import clip_norm

VERDICTS = ('none', 'energy', 'search', 'model')


def _waypoints(pos, goal, layout_2, env_cfg: two_rooms.TwoRoomsConfig, clearance: float):
  """Points of the short way from pos to goal: the goal alone within one room; from the door
  passage, the door's mouth on the goal's side first; from the other room, both mouths (each
  `clearance` px in front of the wall, at the door's centre height)."""
  lay = np.asarray(layout_2, np.float32)
  wl, wr, _, _ = (float(v) for v in two_rooms.wall_bounds(lay, env_cfg))
  door_y = float(lay[1])
  mouth = lambda room: np.array([wr + clearance if room else wl - clearance, door_y])
  here = int(two_rooms.room_of(np.asarray(pos, np.float32), lay))
  there = int(two_rooms.room_of(np.asarray(goal, np.float32), lay))
  if bool(two_rooms.in_door(np.asarray(pos, np.float32), lay, env_cfg)):
    return [mouth(there), goal]
  if here == there:
    return [goal]
  return [mouth(here), mouth(there), goal]


def walk_distance(pos_2, goal_2, layout_2, env_cfg: two_rooms.TwoRoomsConfig) -> float:
  """Length (px) of the polyline through the door from pos to goal (straight within a room)."""
  pos, goal = np.asarray(pos_2, np.float64), np.asarray(goal_2, np.float64)
  points = [pos] + _waypoints(pos, goal, layout_2, env_cfg, clearance=0.0)
  return float(sum(np.linalg.norm(b - a) for a, b in zip(points[:-1], points[1:])))


def door_route(pos_2, goal_2, layout_2, env_cfg: two_rooms.TwoRoomsConfig, horizon: int,
               action_repeat: int, max_norm: float, clearance: float = 5.0) -> np.ndarray:
  """(horizon, 2) plan actions, each held `action_repeat` env steps at norm <= max_norm, along
  `_waypoints` (mouths `clearance` px in front of the wall). Each plan action heads straight for
  the next waypoint and stops on it, so no action cuts a corner into the wall. The route is
  truncated at `horizon` plan actions (it may end short of the goal)."""
  pos, goal = np.asarray(pos_2, np.float64), np.asarray(goal_2, np.float64)
  points = _waypoints(pos, goal, layout_2, env_cfg, clearance)
  reach = max_norm * action_repeat
  acts, cur = [], pos
  for _ in range(horizon):
    gap = np.linalg.norm(points[0] - cur)
    target = points[0] if gap <= reach else cur + (points[0] - cur) * reach / gap
    if gap <= reach and len(points) > 1:
      points = points[1:]
    acts.append((target - cur) / action_repeat)
    cur = target
  return np.asarray(acts, np.float32)


def env_path(state: two_rooms.EnvState, actions_HA, env_cfg: two_rooms.TwoRoomsConfig,
             action_repeat: int, max_norm: float | None) -> jax.Array:
  """(H * action_repeat + 1, 2) positions of a plan executed as the closed loop executes it
  (norm clip, each action held `action_repeat` steps). Pure; jit and vmap it."""
  acts = jnp.repeat(clip_norm(actions_HA, max_norm), action_repeat, axis=0)

  def act(s, a):
    s = two_rooms.step(s, a, env_cfg)
    return s, s.pos

  _, path = jax.lax.scan(act, state, acts)
  return jnp.concatenate([state.pos[None], path])


def verdict(stay: float, route: float, found: float, route_end: float, found_end: float,
            threshold: float) -> str:
  """One of VERDICTS (see the module docstring) from the model costs of the three plans and
  the walks (px) from where the route and the found plan truly end to the goal."""
  if found_end <= max(route_end, threshold):
    return 'none'
  if route >= stay:
    return 'energy'
  if found >= route:
    return 'search'
  return 'model'
