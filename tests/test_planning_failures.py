"""Where failed episodes end: hand-built trajectories on the fixed layout (wall slab x in
(30, 33), door y in [28, 36]), goal in the right room."""

import numpy as np
import pytest

from jepa_jax.envs import two_rooms as tr
from jepa_jax.eval import planning_failures as F

ENV = tr.TwoRoomsConfig(fixed_layout=True)
T = 61
GOAL = np.array([48.0, 20.0], np.float32)


def _path(*waypoints):
  """Piecewise-linear path through the waypoints, T points; holds the last waypoint."""
  pts = np.asarray(waypoints, np.float32)
  legs = len(pts) - 1
  per = (T - 1) // legs
  out = [np.linspace(pts[i], pts[i + 1], per, endpoint=False) for i in range(legs)]
  out = np.concatenate(out)
  return np.concatenate([out, np.repeat(pts[-1:], T - len(out), axis=0)])


def _episodes():
  pos = np.stack([
      _path([20, 32], [32, 32], [48, 21]),            # success
      _path([20, 20], [29, 20], [29, 20]),            # pressed against the wall, start room
      _path([20, 32], [40, 32], [20, 30]),            # crossed, came back
      _path([20, 32], [32, 32], [32, 32]),            # parked in the door
      np.linspace([20, 32], [48, 45], T),             # goal room, far from the goal, still moving
  ])
  n = len(pos)
  layout = np.broadcast_to(np.asarray(tr.fixed_layout(ENV)), (n, 2))
  return pos, np.broadcast_to(GOAL, (n, 2)), layout


def test_classes_counts_and_stalls_by_hand():
  pos, goal, layout = _episodes()
  facts = F.episode_facts(pos, goal, layout, ENV, stall_steps=10, stall_px=2.0)
  success = np.linalg.norm(pos[:, -1] - goal, axis=-1) < 4.5
  np.testing.assert_array_equal(success, [True, False, False, False, False])
  np.testing.assert_array_equal(facts['failure_class'],
                                ['goal_room', 'start_room', 'came_back', 'door', 'goal_room'])
  np.testing.assert_array_equal(facts['stalled'], [False, True, False, True, False])
  np.testing.assert_array_equal(facts['reached_goal_room'], [True, False, True, True, True])
  # The wall's centre line (x = 31.5) splits the rooms.
  first, wall_x = facts['first_in_goal_room'], layout[0, 0]
  assert first[1] == -1 and pos[0, first[0], 0] >= wall_x > pos[0, first[0] - 1, 0]
  np.testing.assert_allclose(facts['closest'][4], np.min(np.linalg.norm(pos[4] - GOAL, axis=-1)))
  counts = F.summarise(success, facts)
  assert counts == dict(start_room=dict(failed=1, stalled=1), came_back=dict(failed=1, stalled=0),
                        door=dict(failed=1, stalled=1), goal_room=dict(failed=1, stalled=0))
  assert F.format_summary(counts).startswith('4 failures: start_room 1 (1 stalled)')


def test_no_failures_and_bad_shapes():
  pos, goal, layout = _episodes()
  facts = F.episode_facts(pos[:1], goal[:1], layout[:1], ENV)
  assert F.format_summary(F.summarise(np.array([True]), facts)) == '0 failures: none'
  with pytest.raises(ValueError, match=r'expected \(N, T, 2\)'):
    F.episode_facts(pos, goal[:2], layout, ENV)
