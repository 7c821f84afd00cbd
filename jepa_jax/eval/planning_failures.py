"""Where failed Two Rooms episodes end, from the environment's ground truth (for the report only;
the planner never sees it).

Every failure falls in exactly one class:
  start_room  never reached the goal's room (the wall or the door was not passed)
  came_back   reached the goal's room, then ended outside it
  door        ends inside the door passage
  goal_room   ends in the goal's room but farther than the threshold from the goal
and, across classes, `stalled` marks an agent that moved less than `stall_px` over its last
`stall_steps` steps (pressed against a wall, or parked off the goal).
"""

from __future__ import annotations

import numpy as np

from jepa_jax.envs import two_rooms

CLASSES = ('start_room', 'came_back', 'door', 'goal_room')


def episode_facts(pos_NT2, goal_N2, layout_N2, env_cfg: two_rooms.TwoRoomsConfig,
                  stall_steps: int = 50, stall_px: float = 2.0) -> dict[str, np.ndarray]:
  """Per-episode ground-truth facts: closest approach, whether and when the agent first entered
  the goal's room, where it ended (and its `failure_class`), and whether it stalled at the end.
  (The final distance is the evaluation's own `final_dist_N`.)"""
  pos_NT2, goal_N2 = np.asarray(pos_NT2, np.float32), np.asarray(goal_N2, np.float32)
  layout_N2 = np.asarray(layout_N2, np.float32)
  n, t = pos_NT2.shape[:2]
  if goal_N2.shape != (n, 2) or layout_N2.shape != (n, 2):
    raise ValueError(f'pos {pos_NT2.shape}, goal {goal_N2.shape}, layout {layout_N2.shape}: '
                     'expected (N, T, 2), (N, 2), (N, 2)')
  goal_room_N = np.asarray(two_rooms.room_of(goal_N2, layout_N2))
  in_goal_room_NT = np.asarray(two_rooms.room_of(pos_NT2, layout_N2[:, None])) == goal_room_N[:, None]
  in_door_NT = np.asarray(two_rooms.in_door(pos_NT2, layout_N2[:, None], env_cfg))
  dist_NT = np.linalg.norm(pos_NT2 - goal_N2[:, None], axis=-1)
  reached_N = in_goal_room_NT.any(axis=1)
  s = min(stall_steps, t - 1)
  moved_N = np.linalg.norm(pos_NT2[:, -1] - pos_NT2[:, -1 - s], axis=-1) if s > 0 else np.zeros(n)
  facts = dict(closest=dist_NT.min(axis=1), reached_goal_room=reached_N,
               first_in_goal_room=np.where(reached_N, in_goal_room_NT.argmax(axis=1), -1),
               ends_in_door=in_door_NT[:, -1], ends_in_goal_room=in_goal_room_NT[:, -1],
               stalled=moved_N < stall_px)
  return dict(facts, failure_class=_failure_class(facts))


def _failure_class(facts: dict[str, np.ndarray]) -> np.ndarray:
  """(N,) class names (CLASSES) of every episode, whatever its outcome."""
  return np.where(facts['ends_in_door'], 'door',
                  np.where(~facts['reached_goal_room'], 'start_room',
                           np.where(facts['ends_in_goal_room'], 'goal_room', 'came_back')))


def summarise(success_N, facts: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
  """Counts of failed episodes per class, and how many of those stalled."""
  fail = ~np.asarray(success_N, bool)
  cls = facts['failure_class']
  out = {}
  for c in CLASSES:
    sel = fail & (cls == c)
    out[c] = dict(failed=int(sel.sum()), stalled=int((sel & facts['stalled']).sum()))
  return out


def format_summary(counts: dict[str, dict[str, int]]) -> str:
  total = sum(v['failed'] for v in counts.values())
  parts = [f"{c} {v['failed']} ({v['stalled']} stalled)" for c, v in counts.items() if v['failed']]
  return f'{total} failures: ' + (', '.join(parts) if parts else 'none')
