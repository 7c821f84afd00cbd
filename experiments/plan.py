r"""Closed-loop planning in latent space on Two Rooms: success rate (Wilson 95 % CI), planning
time, trajectory pictures, for every selected planner on fixed and random layouts.

  python -m experiments.plan --workdir=/tmp/plan                      # cpu_default, analytic WM
  python -m experiments.plan --config=experiments/configs/plan.py:debug --workdir=/tmp/plan_dbg
  python -m experiments.plan --workdir=/tmp/plan_wm --config.world_model.kind=learned \
      --config.world_model.workdir=runs/wm --config.planners=hybrid,cem

Writes <workdir>/results.json, table.txt, traj_<planner>_<layout>.png, episodes_<planner>_<layout>.gif,
and per planner and layout: per_episode_<planner>_<layout>.npz (every episode's trajectory, goal,
layout, success, final distance and where it ended) and failures_<planner>_<layout>.png (the
failed episodes, numbered). Failures are counted by where the agent ended
(jepa_jax/eval/planning_failures.py).
"""

import json
import os
import time

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from jepa_jax.eval import planning_eval as E
from jepa_jax.eval import planning_failures as F
from jepa_jax.eval import planning_plots
from jepa_jax.eval.world_models import load_world_model
from jepa_jax.planning.factory import PLANNERS

_CONFIGS = os.path.join(os.path.dirname(__file__), 'configs', 'plan.py')
CONFIG = config_flags.DEFINE_config_file('config', f'{_CONFIGS}:cpu_default',
                                         'Config file and preset (path:preset).')
WORKDIR = flags.DEFINE_string('workdir', 'runs/plan', 'Results and pictures go here.')
PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar (with ETA) per evaluation.')


def _names(value: str, valid, key: str) -> list[str]:
  names = [s.strip() for s in value.split(',') if s.strip()]
  bad = [n for n in names if n not in valid]
  if not names or bad:
    raise app.UsageError(f'--config.{key}={value!r}: give a comma-separated subset of {",".join(valid)}')
  return names


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  cfg, workdir = CONFIG.value, WORKDIR.value
  planners = _names(cfg.planners, PLANNERS, 'planners')
  layouts = _names(cfg.layouts, E.LAYOUTS, 'layouts')
  os.makedirs(workdir, exist_ok=True)

  # --- Evaluate every planner on every layout kind ----------------------------------------------
  results, t_start = [], time.perf_counter()
  for layout in layouts:
    env_cfg = E.env_config(cfg, layout)
    wm = load_world_model(cfg.world_model, env_cfg)
    for planner in planners:
      r = E.evaluate(cfg, wm, planner, layout, progress=PROGRESS.value)
      facts = F.episode_facts(r.pos_NT2, r.goal_N2, r.layout_N2, env_cfg)
      failures = F.summarise(r.success_N, facts)
      results.append((r, failures))
      s = r.summary()
      print(f"{planner}/{layout}: {s['successes']}/{r.n} = {100 * r.rate:.1f}% "
            f"[{100 * s['ci95'][0]:.1f}, {100 * s['ci95'][1]:.1f}], {s['per_episode_s']:.3f} s/episode, "
            f"compile {r.compile_s:.1f} s; {F.format_summary(failures)}", flush=True)
      E.save_episodes(f'{workdir}/per_episode_{planner}_{layout}.npz', r, **facts)
      # --- Pictures ---------------------------------------------------------------------------
      g, k = min(cfg.plots.grid, r.n), min(cfg.plots.gif, r.n)  # 0 turns a picture off
      if g > 0:
        planning_plots.plot_trajectory_grid(
            f'{workdir}/traj_{planner}_{layout}.png', r.pos_NT2[:g], r.goal_N2[:g],
            r.layout_N2[:g], r.success_N[:g], env_cfg, r.threshold,
            title=f'{wm.name} WM, {planner}, {layout} layout: {100 * r.rate:.1f}% of {r.n}')
      failed = np.flatnonzero(~r.success_N)[:max(g, 0)]
      if len(failed):
        planning_plots.plot_trajectory_grid(
            f'{workdir}/failures_{planner}_{layout}.png', r.pos_NT2[failed], r.goal_N2[failed],
            r.layout_N2[failed], r.success_N[failed], env_cfg, r.threshold, indices=failed,
            title=f'{wm.name} WM, {planner}, {layout}: {len(failed)} of {int((~r.success_N).sum())} '
                  'failures')
      if k > 0:
        planning_plots.save_episode_gif(
            f'{workdir}/episodes_{planner}_{layout}.gif', r.pos_NT2[:k], r.goal_N2[:k],
            r.layout_N2[:k], r.success_N[:k], env_cfg, r.threshold, fps=cfg.plots.gif_fps)
  total_s = time.perf_counter() - t_start

  # --- Report ----------------------------------------------------------------------------------
  table = E.format_table([r for r, _ in results])
  print(f'\nworld model: {cfg.world_model.kind}; success = final distance < {cfg.task.threshold} px '
        f'after {cfg.control.episode_steps} steps; <1.41px = PLDM criterion')
  print(table)
  print(f'total evaluation time (incl. compile and plots): {total_s:.1f} s')
  with open(f'{workdir}/table.txt', 'w') as f:
    f.write(table + f'\ntotal_s {total_s:.1f}\n')
  with open(f'{workdir}/results.json', 'w') as f:
    json.dump(dict(config=cfg.to_dict(), total_s=total_s,
                   results=[dict(r.summary(), failures=fails) for r, fails in results]), f,
              indent=1)
  print('outputs in', workdir)


if __name__ == '__main__':
  app.run(main)
