"""Pictures of a goal-conditioned distance: for a goal on a held-out layout, the distance from
every free agent position, beside the true shortest-path length and the plain latent L2 energy
(what a planner descends), plus the fitting curves."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.envs import two_rooms
from jepa_jax.train.goal_distance import geodesic_px


def grid_maps(encode, distance_fns: dict, layout_2, goal_2, env_cfg, grid: int) -> dict:
  """{name: (grid, grid) map of distance_fn(z(pos), z(goal))} over a grid of agent positions
  (NaN inside walls), plus 'geodesic px'."""
  lo, hi = env_cfg.border + 1.0, env_cfg.size - env_cfg.border - 1.0
  xs = np.linspace(lo, hi, grid, dtype=np.float32)
  pos_M2 = np.stack(np.meshgrid(xs, xs, indexing='xy'), -1).reshape(-1, 2)
  layout = jnp.asarray(layout_2, jnp.float32)
  wall_M = np.asarray(two_rooms.in_wall(jnp.asarray(pos_M2), layout, env_cfg))
  obs = jax.vmap(lambda p: two_rooms.render_pos(p, layout, env_cfg))(jnp.asarray(pos_M2))
  z_M, z_goal = encode(obs), encode(two_rooms.render_pos(jnp.asarray(goal_2), layout, env_cfg)[None])
  maps = {name: np.asarray(fn(z_M, jnp.broadcast_to(z_goal, z_M.shape))) for name, fn in
          distance_fns.items()}
  maps['geodesic px'] = geodesic_px(pos_M2, np.broadcast_to(goal_2, pos_M2.shape),
                                    np.broadcast_to(np.asarray(layout_2), pos_M2.shape), env_cfg)
  return {k: np.where(wall_M, np.nan, v).reshape(grid, grid) for k, v in maps.items()}


def plot_maps(path: str, rows: list, env_cfg, title: str = '') -> None:
  """rows: [(layout_2, goal_2, maps dict)]; one row per goal, one column per map."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  names = list(rows[0][2])
  fig, axes = plt.subplots(len(rows), len(names), figsize=(2.6 * len(names), 2.5 * len(rows) + 0.5),
                           squeeze=False)
  ext = (env_cfg.border + 1, env_cfg.size - env_cfg.border - 1,
         env_cfg.size - env_cfg.border - 1, env_cfg.border + 1)
  for r, (_, goal, maps) in enumerate(rows):
    for c, name in enumerate(names):
      ax = axes[r, c]
      ax.imshow(maps[name], cmap='viridis', extent=ext, interpolation='nearest')
      ax.plot(*goal, '*', color='red', ms=9)
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(name, fontsize=9)
  fig.suptitle(title or 'distance to the goal (red star) from every agent position; '
               'dark = near', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


CURVES_TD = (('loss', 'expectile TD loss'), ('td_abs', 'mean |TD error|'),
             ('d_mean', 'mean distance (discounted)'))
CURVES_QRL = (('d_mean', 'mean distance of random pairs (steps)'),
              ('step_d_mean', 'mean distance of one recorded step'),
              ('violation', 'mean squared step excess over 1'), ('dual', 'constraint weight'))


def plot_curves(path: str, history: list) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  steps = [h['step'] for h in history]
  panels = (CURVES_QRL if 'violation' in history[0] else CURVES_TD)
  fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.8))
  for ax, (key, label) in zip(axes, panels):
    ax.plot(steps, [h[key] for h in history])
    ax.set_title(label, fontsize=9)
    ax.set_xlabel('step')
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
