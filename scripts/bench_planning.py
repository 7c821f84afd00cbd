r"""Planning latency per replan (one episode, jitted, after compile) for every planner vs horizon and
population size. Other settings come from experiments/configs/plan.py (cpu_default).

  python scripts/bench_planning.py                                  # analytic world model
  python scripts/bench_planning.py --horizons=4,8,16 --populations=64,256,1024 --repeats=10
  python scripts/bench_planning.py --world_model=learned --wm_workdir=runs/wm

The gradient planner has no population: its row is timed once per horizon (N = restarts = 1).
For hybrid, N is the CEM population (refinement settings from the config).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from experiments.configs import plan as plan_configs  # noqa: E402
from jepa_jax.eval import planning_eval as E  # noqa: E402
from jepa_jax.eval.world_models import load_world_model  # noqa: E402
from jepa_jax.planning.closed_loop import planning_step  # noqa: E402
from jepa_jax.planning.factory import PLANNERS, make_planner  # noqa: E402

HORIZONS = flags.DEFINE_list('horizons', ['2', '4', '8', '16'], 'Planner horizons (plan actions).')
POPS = flags.DEFINE_list('populations', ['32', '128', '512'], 'CEM population / MPPI samples.')
PLANNER_NAMES = flags.DEFINE_list('planners', list(PLANNERS), 'Planners to time.')
REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per setting (median reported).')
WM = flags.DEFINE_enum('world_model', 'analytic', ['analytic', 'learned'], 'World model kind.')
WM_DIR = flags.DEFINE_string('wm_workdir', '', 'Checkpoint directory for --world_model=learned.')
REPEAT = flags.DEFINE_integer('action_repeat', None, 'Override control.action_repeat.')


def time_call(f, args, repeats):
  t0 = time.perf_counter()
  jax.block_until_ready(f(*args))
  compile_s = time.perf_counter() - t0
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    ts.append(time.perf_counter() - t0)
  return float(np.median(ts)), compile_s


def main(argv):
  del argv
  cfg = plan_configs.get_config('cpu_default')
  cfg.world_model.kind, cfg.world_model.workdir = WM.value, WM_DIR.value
  if REPEAT.value:
    cfg.control.action_repeat = REPEAT.value
  wm = load_world_model(cfg.world_model, E.env_config(cfg, 'fixed'))
  task = jax.tree.map(lambda x: x[0], E.tasks_for(cfg, 'fixed', 1))
  z0 = wm.encode(wm.params, jax.jit(lambda s: E.two_rooms.render(s, E.env_config(cfg, 'fixed')))(task.state0))
  zg = wm.encode(wm.params, task.goal_obs)
  print(f'world model: {wm.name}; action_repeat={cfg.control.action_repeat} (model steps per plan '
        f'action); {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs')
  print(f"{'planner':<9} {'H':>3} {'N':>5} {'model steps':>11} {'ms/replan':>10} {'compile s':>9}")
  for name in PLANNER_NAMES.value:
    for h in map(int, HORIZONS.value):
      for n in (map(int, POPS.value) if name != 'gradient' else [1]):
        cfg.planner.horizon = h
        cfg.planner.cem.population = cfg.planner.mppi.samples = n
        cfg.planner.cem.elites = max(1, min(cfg.planner.cem.elites, n // 4))
        cfg.planner.hybrid.refine = min(cfg.planner.hybrid.refine, n)
        cl = E.control_config(cfg)
        plan = jax.jit(make_planner(name, cfg.planner, planning_step(wm.step, cl), E.cost_fn(cfg)))
        args = (wm.params, z0, zg, jax.random.key(0), jnp.zeros((h, 2), jnp.float32))
        ms, comp = time_call(plan, args, REPEATS.value)
        p = cfg.planner
        rollouts = dict(gradient=p.gradient.iterations * 2,  # forward + backward ~ 2 rollouts
                        cem=p.cem.iterations * (n + 1), mppi=p.mppi.iterations * (n + 1),
                        hybrid=p.hybrid.cem.iterations * (n + 1)
                        + p.hybrid.refine * p.hybrid.gradient.iterations * 2)[name]
        steps = rollouts * h * cl.action_repeat
        print(f'{name:<9} {h:>3} {n if name != "gradient" else "-":>5} {steps:>11} '
              f'{1e3 * ms:>10.2f} {comp:>9.1f}', flush=True)


if __name__ == '__main__':
  app.run(main)
