"""Pictures of closed-loop episodes: a PNG grid of trajectories on their layouts, and an animated
GIF of a few episodes (agent, trail, goal and success disc drawn with pillow)."""

from __future__ import annotations

import numpy as np

from jepa_jax.envs import two_rooms


def _walls_HW(layout_2, env_cfg) -> np.ndarray:
  return np.asarray(two_rooms.wall_mask(np.asarray(layout_2, np.float32), env_cfg))


def _panels(n: int, cols: int):
  """(plt, fig, axes for n panels) with axes off; unused panels stay blank."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows + 0.4), squeeze=False)
  for ax in axes.flat:
    ax.set_axis_off()
  return plt, fig, list(axes.flat)[:n]


def _draw_room(plt, ax, layout_2, goal_2, env_cfg, threshold: float):
  size = env_cfg.size
  ax.imshow(_walls_HW(layout_2, env_cfg), cmap='Greys', vmin=0, vmax=1.6,
            extent=(0, size, size, 0), interpolation='nearest')
  ax.add_patch(plt.Circle(goal_2, threshold, color='tab:green', alpha=0.3))
  ax.plot(*goal_2, '*', color='tab:green', ms=7)


def _draw_path(ax, p_T2, color: str, start: bool = True):
  ax.plot(p_T2[:, 0], p_T2[:, 1], '-', color=color, lw=1.0)
  if start:
    ax.plot(*p_T2[0], 'o', color=color, ms=4)
  ax.plot(*p_T2[-1], 's', color=color, ms=3)


def _save(plt, fig, path: str, title: str):
  fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the title
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def plot_trajectory_grid(path, pos_NT2, goal_N2, layout_N2, success_N, env_cfg, threshold: float,
                         title: str = '', cols: int = 4, indices=None):
  """indices: episode numbers shown in the titles (e.g. when drawing only the failures)."""
  plt, fig, axes = _panels(len(pos_NT2), cols)
  for i, ax in enumerate(axes):
    _draw_room(plt, ax, layout_N2[i], goal_N2[i], env_cfg, threshold)
    p = pos_NT2[i]
    _draw_path(ax, p, 'tab:blue')
    d = float(np.linalg.norm(p[-1] - goal_N2[i]))
    name = '' if indices is None else f'#{int(indices[i])} '
    ax.set_title(f"{name}{'ok' if success_N[i] else 'FAIL'}  d={d:.1f}px", fontsize=8,
                 color='black' if success_N[i] else 'tab:red')
  return _save(plt, fig, path, title)


def plot_route_grid(path, pos_NT2, goal_N2, layout_N2, route_paths, found_paths, labels,
                    env_cfg, threshold: float, title: str = '', cols: int = 4):
  """One panel per episode: its trajectory so far (blue), then two env paths from where it
  stands: the true route (green) and the planner's alternative (red)."""
  plt, fig, axes = _panels(len(pos_NT2), cols)
  for i, ax in enumerate(axes):
    _draw_room(plt, ax, layout_N2[i], goal_N2[i], env_cfg, threshold)
    _draw_path(ax, pos_NT2[i], 'tab:blue')
    _draw_path(ax, np.asarray(route_paths[i]), 'tab:green', start=False)
    _draw_path(ax, np.asarray(found_paths[i]), 'tab:red', start=False)
    ax.set_title(labels[i], fontsize=8)
  return _save(plt, fig, path, title)


def _frame(pos_T2, t, goal_2, walls_HW, threshold, scale, ok):
  from PIL import Image, ImageDraw
  size = walls_HW.shape[0]
  base = np.where(walls_HW[..., None] > 0, 90, 245).astype(np.uint8).repeat(3, -1)
  img = Image.fromarray(base).resize((size * scale, size * scale), Image.NEAREST)
  d = ImageDraw.Draw(img)
  g = np.asarray(goal_2) * scale
  r = threshold * scale
  d.ellipse([g[0] - r, g[1] - r, g[0] + r, g[1] + r], fill=(170, 225, 170))
  d.ellipse([g[0] - 3, g[1] - 3, g[0] + 3, g[1] + 3], fill=(20, 140, 20))
  trail = [tuple(map(float, q * scale)) for q in pos_T2[:t + 1]]
  if len(trail) > 1:
    d.line(trail, fill=(60, 110, 200), width=2)
  a = pos_T2[t] * scale
  d.ellipse([a[0] - 4, a[1] - 4, a[0] + 4, a[1] + 4], fill=(30, 60, 180))
  if t == len(pos_T2) - 1:
    d.rectangle([0, 0, size * scale - 1, size * scale - 1], outline=(20, 160, 20) if ok else (210, 30, 30),
                width=4)
  return np.asarray(img)


def save_episode_gif(path, pos_NT2, goal_N2, layout_N2, success_N, env_cfg, threshold: float,
                     fps: int = 15, scale: int = 3, stride: int = 2):
  """Episodes side by side, one frame per `stride` env steps (plus the final frame)."""
  from PIL import Image
  n, T = pos_NT2.shape[0], pos_NT2.shape[1]
  walls = [_walls_HW(layout_N2[i], env_cfg) for i in range(n)]
  ts = list(range(0, T, stride)) + ([T - 1] if (T - 1) % stride else [])
  frames = []
  for t in ts:
    tiles = [_frame(pos_NT2[i], t, goal_N2[i], walls[i], threshold, scale, success_N[i]) for i in range(n)]
    sep = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate(sum(([tile, sep] for tile in tiles), [])[:-1], axis=1)
    frames.append(Image.fromarray(row))
  frames[0].save(path, save_all=True, append_images=frames[1:] + [frames[-1]] * fps,
                 duration=int(1000 / fps), loop=0)
  return path
