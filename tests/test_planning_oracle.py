"""The failure diagnosis (eval/planning_oracle.py, scripts/diagnose_plan_failures.py): the true
route reaches the goal in the environment without touching a wall, the verdicts by hand, and the
script end to end on a debug evaluation."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.envs import two_rooms
from jepa_jax.eval import planning_oracle as O
from jepa_jax.eval import planning_tasks as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plan_runner(cfg, repeat):
  """run(pos, layout, actions_HA) -> end position, each action held `repeat` env steps."""
  path = jax.jit(lambda s, a: O.env_path(s, a, cfg, repeat, None))
  return lambda pos, lay, a: np.asarray(path(
      two_rooms.EnvState(jnp.asarray(pos, jnp.float32), jnp.asarray(lay, jnp.float32)),
      jnp.asarray(a))[-1])


def check_route_reaches(run, pos, goal, lay, cfg, horizon=20):
  """The route ends on the goal, and the env moves exactly as planned (no step is stopped by a
  wall), within the norm bound."""
  a = O.door_route(pos, goal, lay, cfg, horizon=horizon, action_repeat=8, max_norm=1.8)
  assert a.shape == (horizon, 2) and np.all(np.linalg.norm(a, axis=-1) <= 1.8 + 1e-4)
  end = run(pos, lay, a)
  np.testing.assert_allclose(end, np.asarray(pos) + 8 * a.astype(np.float64).sum(0), atol=1e-3)
  np.testing.assert_allclose(end, goal, atol=1e-3)


@pytest.mark.parametrize('fixed', [True, False])
def test_door_route_reaches_the_goal_unblocked(fixed):
  """Start and goal in opposite rooms (the evaluation's tasks)."""
  cfg = two_rooms.TwoRoomsConfig(fixed_layout=fixed)
  tasks = T.sample_tasks(jax.random.key(3), 12, cfg)
  run = plan_runner(cfg, 8)
  for n in range(12):
    pos, goal = np.asarray(tasks.state0.pos[n]), np.asarray(tasks.goal_pos[n])
    lay = np.asarray(tasks.state0.layout[n])
    assert not bool(two_rooms.same_room(pos, goal, lay))
    check_route_reaches(run, pos, goal, lay, cfg)


def test_door_route_from_the_door_passage_and_the_wall_face():
  """Mid-episode states: inside the door passage (either side of its centre line, and on it),
  and pressed against the wall's face far from the door."""
  cfg = two_rooms.TwoRoomsConfig()
  lay = np.asarray(two_rooms.fixed_layout(cfg))  # wall x 30..33 (centre 31.5), door y 28..36
  run = plan_runner(cfg, 8)
  for pos in ([30.5, 35.5], [32.5, 28.5], [31.5, 32.0], [30.0, 50.0], [33.0, 10.0]):
    for goal in ([10.0, 57.0], [55.0, 8.0]):
      check_route_reaches(run, np.array(pos), np.array(goal), lay, cfg)


def test_door_route_same_room_is_straight_and_truncated_by_the_horizon():
  cfg = two_rooms.TwoRoomsConfig()
  lay = np.asarray(two_rooms.fixed_layout(cfg))
  pos, goal = np.array([10.0, 10.0]), np.array([20.0, 50.0])  # both left of the wall
  a = O.door_route(pos, goal, lay, cfg, horizon=2, action_repeat=8, max_norm=1.8)
  step = (goal - pos) / np.linalg.norm(goal - pos) * 1.8
  np.testing.assert_allclose(a, [step, step], rtol=1e-5)  # 2 x 14.4 px of the 41.2 px


def test_walk_distance_by_hand():
  cfg = two_rooms.TwoRoomsConfig()
  lay = np.asarray(two_rooms.fixed_layout(cfg))  # faces x 30 / 33, door centre y 32
  assert O.walk_distance([10.0, 10.0], [13.0, 14.0], lay, cfg) == pytest.approx(5.0)
  # pressed at the left face, 20 px below the door's centre; goal 4 px right of the right face
  assert O.walk_distance([30.0, 52.0], [37.0, 32.0], lay, cfg) == pytest.approx(20.0 + 3.0 + 4.0)
  # in the passage (on its centre line, which counts as the right room): out on the goal's side
  assert O.walk_distance([31.5, 32.0], [10.0, 32.0], lay, cfg) == pytest.approx(1.5 + 20.0)


def test_verdicts_by_hand():
  v = lambda **kw: O.verdict(**dict(dict(stay=5.0, route=2.0, found=1.0, route_end=0.0,
                                         found_end=9.0, threshold=4.5), **kw))
  assert v() == 'model'  # cheaper to the model than the route, 9 px of walk left in the world
  assert v(found=3.0) == 'search'  # the route is cheaper than the best found
  assert v(route=6.0) == 'energy'  # the route costs more than staying
  assert v(route=6.0, found=3.0) == 'energy'  # ... whatever was found
  assert v(found_end=1.9) == 'none'  # inside the success radius, though farther than the route
  assert v(route_end=9.0, found_end=6.0) == 'none'  # both short, the found plan truly closer
  assert v(route_end=9.0, found_end=10.0) == 'model'
  assert v(route=6.0, found_end=2.0) == 'none'  # a good found plan comes before the energy


def test_script_end_to_end(tmp_path):
  """A debug evaluation (analytic world model, with both memories: failed moves and visited
  places), then the diagnosis of two of its episodes, one vmapped chunk each (without the
  memories, which were episode state); bad flags are refused by name."""
  run = str(tmp_path / 'plan')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  subprocess.run([sys.executable, '-m', 'experiments.plan',
                  '--config=experiments/configs/plan.py:debug', '--config.planners=mppi',
                  '--config.layouts=random', '--config.plots.grid=0', '--config.plots.gif=0',
                  '--config.cost.blocked.weight=2', '--config.cost.visited.weight=1',
                  f'--workdir={run}', '--noprogress'], cwd=ROOT, env=env, check=True,
                 capture_output=True)
  out = subprocess.run([sys.executable, 'scripts/diagnose_plan_failures.py', f'--run={run}',
                        '--episodes=0,1', '--samples=32', '--iterations=2', '--at_step=8',
                        '--chunk=1'],
                       cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
  res = json.load(open(f'{run}/diagnosis_mppi_random_t8_h3.json'))
  assert [r['episode'] for r in res['episodes']] == [0, 1] and res['at_step'] == 8
  for r in res['episodes']:
    assert r['verdict'] in O.VERDICTS and set(r['cost']) == {'stay', 'route', 'found'}
    assert np.isfinite(list(r['cost'].values())).all()
  assert sum(res['counts'].values()) == 2 and 'verdicts:' in out
  assert os.path.getsize(f'{run}/diagnosis_mppi_random_t8_h3.png') > 0
  for flags_, message in ((['--layout=fixed'], 'per_episode_mppi_fixed.npz not found'),
                          (['--at_step=6'], 'give a multiple of 4 in 0..20'),
                          (['--episodes=4'], 'the run has episodes 0..3')):
    bad = subprocess.run([sys.executable, 'scripts/diagnose_plan_failures.py', f'--run={run}']
                         + flags_, cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and message in bad.stderr, (flags_, bad.stderr[-500:])
