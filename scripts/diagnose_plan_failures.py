r"""Why the failed episodes of a planning evaluation fail: energy, model or search.

At one replan of each failed episode (the first --max_episodes of them, at --at_step, from the
saved trajectory) this scores three plans under the run's own world model and cost: staying
put, the true route through the door (ground truth, for the report only) and the best plan of a
dense MPPI search; the route and the found plan are also executed in the environment. The
verdict per episode (first match; jepa_jax/eval/planning_oracle.py):
  none    the found plan truly ends as close to the goal as the route, or within the success
          radius (nothing stands in the way at this replan);
  energy  the model charges the true route (truncated at --horizon) at least as much as staying;
  search  the route costs less than anything the dense search found;
  model   a plan the model scores cheaper than the route ends farther from the goal in the world.

  python scripts/diagnose_plan_failures.py --run=runs/plan_X                # its first planner/layout
  python scripts/diagnose_plan_failures.py --run=runs/plan_X --planner=mppi --layout=random \
      --at_step=96 --horizon=10 --samples=1024 --iterations=6

The run is an `experiments.plan` workdir (results.json + per_episode_<planner>_<layout>.npz);
its world model is loaded from the config it recorded (run from the directory it ran in). The
memory of failed moves and visited places (cost.blocked, cost.visited) is state of each episode
and is not saved, so every plan is scored without it; a hierarchical run is scored with flat plans. Writes
diagnosis_<planner>_<layout>_t<step>_h<horizon>.json and .png into the run.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from jepa_jax.envs import two_rooms  # noqa: E402
from jepa_jax.eval import planning_eval as E  # noqa: E402
from jepa_jax.eval import planning_oracle as O  # noqa: E402
from jepa_jax.eval import planning_plots  # noqa: E402
from jepa_jax.eval.world_models import load_world_model  # noqa: E402
from jepa_jax.planning.rollout import unroll  # noqa: E402

RUN = flags.DEFINE_string('run', None, 'An experiments.plan --workdir.', required=True)
PLANNER = flags.DEFINE_string('planner', '', 'Planner of the run (default: its first).')
LAYOUT = flags.DEFINE_string('layout', '', 'Layout of the run (default: its first).')
AT_STEP = flags.DEFINE_integer('at_step', -1, 'Env step of the replan diagnosed (-1: the middle '
                               'of the episode).')
HORIZON = flags.DEFINE_integer('horizon', 0, 'Plan actions scored (0: the run\'s planner.horizon).')
SAMPLES = flags.DEFINE_integer('samples', 1024, 'Dense MPPI samples per iteration.')
ITERATIONS = flags.DEFINE_integer('iterations', 6, 'Dense MPPI iterations.')
MAX_EPISODES = flags.DEFINE_integer('max_episodes', 32, 'Failed episodes diagnosed at most.')
CHUNK = flags.DEFINE_integer('chunk', 8, 'Episodes scored together (one vmapped call).')
EPISODES = flags.DEFINE_list('episodes', [], 'Episode numbers to diagnose (default: the failed '
                             'ones), e.g. to compare with successes.')


def load_run(run: str, planner: str, layout: str):
  """(config, planner, layout, per-episode arrays) of an experiments.plan workdir."""
  path = os.path.join(run, 'results.json')
  if not os.path.exists(path):
    raise app.UsageError(f'--run={run}: no results.json there; give the --workdir of an '
                         'experiments.plan run')
  with open(path) as f:
    cfg = ml_collections.ConfigDict(json.load(f)['config'])
  planner = planner or cfg.planners.split(',')[0]
  layout = layout or cfg.layouts.split(',')[0]
  episodes = os.path.join(run, f'per_episode_{planner}_{layout}.npz')
  if not os.path.exists(episodes):
    raise app.UsageError(f'{episodes} not found: the run evaluated planners {cfg.planners!r} on '
                         f'layouts {cfg.layouts!r} (--planner, --layout), or it predates the '
                         'per-episode files (run experiments.plan again)')
  return cfg, planner, layout, dict(np.load(episodes))


def episodes_to_diagnose(success_N, chosen: list[str], most: int) -> np.ndarray:
  """--episodes as ints (checked against the run), or the first `most` failed episodes."""
  n = len(success_N)
  if not chosen:
    return np.flatnonzero(~np.asarray(success_N))[:most]
  try:
    sel = np.asarray([int(e) for e in chosen])
  except ValueError:
    raise app.UsageError(f'--episodes={",".join(chosen)}: give episode numbers, e.g. 3,17') from None
  if sel.min() < 0 or sel.max() >= n:
    raise app.UsageError(f'--episodes={",".join(chosen)}: the run has episodes 0..{n - 1}')
  return sel


def replan_step(at_step: int, steps: int, block: int) -> int:
  """--at_step on the replan grid (every `block` env steps); -1: the replan nearest the middle."""
  last = steps - block
  if at_step < 0:
    return (steps // 2) // block * block
  if at_step % block or not 0 <= at_step <= last:
    raise app.UsageError(f'--at_step={at_step}: the planner replans every {block} env steps; '
                         f'give a multiple of {block} in 0..{last}')
  return at_step


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  for flag in (SAMPLES, ITERATIONS, MAX_EPISODES, CHUNK):
    if flag.value <= 0:
      raise app.UsageError(f'--{flag.name}={flag.value}: must be > 0')
  if HORIZON.value < 0:
    raise app.UsageError(f'--horizon={HORIZON.value}: give plan actions > 0 (0: the run\'s own)')
  cfg, planner, layout, ep = load_run(RUN.value, PLANNER.value, LAYOUT.value)
  for section in ('blocked', 'visited'):  # the memory (failed moves, visited places) is
    if section in cfg.cost:               # episode state; it was not saved
      cfg.cost[section].weight = 0.0
  if cfg.get('hierarchy', {}).get('enabled', False):
    print('note: the run planned with hierarchy.enabled; plans here are scored flat (one level)')
  if int(cfg.get('adapt', {}).get('steps', 0)):
    cfg.adapt.steps = 0  # the adapted params are episode state; they were not saved
    print('note: the run adapted its world model online (adapt.steps); plans here are scored '
          'with the trained model')
  env_cfg = E.env_config(cfg, layout)
  wm = load_world_model(cfg.world_model, env_cfg)
  _, _, env_cfg, cl = E.build(cfg, wm, planner, layout)  # validates the run's settings
  steps = ep['pos_NT2'].shape[1] - 1
  t = replan_step(AT_STEP.value, steps, cl.steps_per_block)
  horizon = HORIZON.value or int(cfg.planner.horizon)
  max_norm = min(cl.action_max_norm or np.inf, env_cfg.max_action_norm)
  step, cost = E.step_and_cost(cfg, wm, cl)
  search_cfg = ml_collections.ConfigDict(cfg.planner.to_dict())
  search_cfg.horizon = horizon
  search_cfg.mppi.update(samples=SAMPLES.value, iterations=ITERATIONS.value)
  search = E.config_planner(cfg, 'mppi', search_cfg, step, cost)

  def model_cost(z0, z_goal, actions_HA):
    return E.unrolled_cost(cfg, cost, step, wm.params, unroll(step, wm.params, z0, actions_HA),
                           actions_HA, z_goal)

  @jax.jit
  def score(pos_E2, goal_E2, lay_E2, route_EHA, keys_E):
    """Per episode: model costs of stay / route / found, and the env paths of route / found."""
    def one(pos, goal, lay, route_HA, key):
      obs = lambda p: two_rooms.render(two_rooms.EnvState(p, lay), env_cfg)
      z0, z_goal = wm.encode(wm.params, obs(pos)), wm.encode(wm.params, obs(goal))
      found_HA, _ = search(wm.params, z0, z_goal, key, jnp.zeros_like(route_HA))
      plans = dict(stay=jnp.zeros_like(route_HA), route=route_HA, found=found_HA)
      costs = {k: model_cost(z0, z_goal, a) for k, a in plans.items()}
      paths = {k: O.env_path(two_rooms.EnvState(pos, lay), plans[k], env_cfg, cl.action_repeat,
                             cl.action_max_norm) for k in ('route', 'found')}
      return costs, paths
    return jax.vmap(one)(pos_E2, goal_E2, lay_E2, route_EHA, keys_E)

  chosen = episodes_to_diagnose(ep['success_N'], EPISODES.value, MAX_EPISODES.value)
  print(f'{planner}/{layout}: {int((~ep["success_N"]).sum())} failed of {len(ep["success_N"])}; '
        f'diagnosing {len(chosen)} at step {t}, horizon {horizon} x {cl.action_repeat} env steps, '
        f'dense MPPI {SAMPLES.value} x {ITERATIONS.value} (costs without the memory)')
  rows, route_paths, found_paths, t0 = [], [], [], time.perf_counter()
  for lo in range(0, len(chosen), CHUNK.value):
    sel = chosen[lo:lo + CHUNK.value]
    pos, goal, lay = ep['pos_NT2'][sel, t], ep['goal_N2'][sel], ep['layout_N2'][sel]
    routes = np.stack([O.door_route(p, g, l, env_cfg, horizon, cl.action_repeat, max_norm)
                       for p, g, l in zip(pos, goal, lay)])
    keys = jax.vmap(jax.random.key)(jnp.asarray(sel))
    costs, paths = jax.device_get(score(jnp.asarray(pos, jnp.float32), jnp.asarray(goal, jnp.float32),
                                        jnp.asarray(lay, jnp.float32), jnp.asarray(routes), keys))
    for i, n in enumerate(sel):
      c = {k: float(v[i]) for k, v in costs.items()}
      end = {k: O.walk_distance(paths[k][i, -1], goal[i], lay[i], env_cfg) for k in paths}
      v = O.verdict(c['stay'], c['route'], c['found'], end['route'], end['found'],
                    float(ep['threshold']))
      rows.append(dict(episode=int(n), failure_class=str(ep['failure_class'][n])
                       if 'failure_class' in ep else '', pos=pos[i].tolist(),
                       walk_now_px=O.walk_distance(pos[i], goal[i], lay[i], env_cfg), cost=c,
                       walk_end_px=end, verdict=v))
      route_paths.append(paths['route'][i])
      found_paths.append(paths['found'][i])
      r = rows[-1]
      print(f"#{n:<4d} {r['failure_class']:<10s} walk {r['walk_now_px']:5.1f} px to the goal | "
            f"model cost: stay {c['stay']:8.1f}  route {c['route']:8.1f}  found {c['found']:8.1f}"
            f" | walk left after: route {end['route']:5.1f}  found {end['found']:5.1f} px -> {v}")
    done = lo + len(sel)
    eta = (time.perf_counter() - t0) / done * (len(chosen) - done)
    print(f'  {done}/{len(chosen)} episodes, {time.perf_counter() - t0:.0f} s, ETA {eta:.0f} s',
          flush=True)
  counts = {v: sum(r['verdict'] == v for r in rows) for v in O.VERDICTS}
  print('verdicts:', ', '.join(f'{v} {k}' for v, k in counts.items()))
  stem = os.path.join(RUN.value, f'diagnosis_{planner}_{layout}_t{t}_h{horizon}')
  with open(stem + '.json', 'w') as f:
    json.dump(dict(at_step=t, horizon=horizon, samples=SAMPLES.value,
                   iterations=ITERATIONS.value, counts=counts, episodes=rows), f, indent=1)
  print('wrote', stem + '.json')
  if rows:
    planning_plots.plot_route_grid(
        stem + '.png', ep['pos_NT2'][chosen, :t + 1], ep['goal_N2'][chosen],
        ep['layout_N2'][chosen], route_paths, found_paths,
        [f"#{r['episode']} {r['verdict']}" for r in rows], env_cfg, float(ep['threshold']),
        title=f'{planner}/{layout} at step {t}: so far (blue), true route (green), '
              f'dense search in the world (red)')
    print('wrote', stem + '.png')


if __name__ == '__main__':
  app.run(main)
