"""The goal-distance job behind experiments/goal_distance.py: grouped walks -> frozen world-model
latents -> fit -> held-out check -> save -> pictures (a library function, so tests and other
entry points can run it without the experiment's absl flags)."""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jepa_jax.data import two_rooms_walks as walks
from jepa_jax.eval import goal_distance_maps as maps
from jepa_jax.eval.rollout_probe import encode_clips
from jepa_jax.planning import costs
from jepa_jax.train import goal_distance as gd
from jepa_jax.train import world_model as wmt
from jepa_jax.world_model import load_world_model


def encoded_walks(wm, params, walks_cfg, key, num_layouts: int, cfg_data, desc: str,
                  exclude_layouts=None):
  """Walks grouped by layout, encoded: (z (L, G, T, ...), positions (L, G, T, 2), layouts).
  With `exclude_layouts` ((K, 2) layouts), groups in those layouts are dropped (there are only
  ~600 layouts, so independent draws repeat): up to `num_layouts` unseen ones are kept from
  twice as many draws."""
  draws = num_layouts if exclude_layouts is None else 2 * num_layouts
  d = walks.generate_walks_in_layouts(key, walks_cfg, draws, cfg_data.walks_per_layout,
                                      cfg_data.length)
  if exclude_layouts is not None:
    seen = {tuple(x) for x in np.asarray(exclude_layouts).reshape(-1, 2).tolist()}
    keep = [i for i in range(draws) if tuple(d['layout'][i, 0].tolist()) not in seen]
    d = {k: v[keep[:num_layouts]] for k, v in d.items()}
  L, G, T = d['obs'].shape[:3]
  obs = d['obs'].reshape(L * G, T, *d['obs'].shape[3:])
  chunks = [encode_clips(wm, params, obs[i:i + 64], batch=16)
            for i in tqdm(range(0, L * G, 64), desc=desc, unit='x64 walks', leave=False)]
  z = np.concatenate(chunks)
  return z.reshape(L, G, T, *z.shape[2:]), d['state'], d['layout']


def run(cfg, workdir: str, overwrite: bool = False) -> dict:
  """Fit, check on held-out layouts, save, draw; returns the saved meta (held-out figures)."""
  if os.path.exists(os.path.join(workdir, gd.META)) and not overwrite:
    raise FileExistsError(f'{workdir} already holds a goal distance ({gd.META}); pass '
                          '--overwrite to replace it or choose another --workdir')
  dcfg = gd.DistanceConfig.from_dict(cfg.distance, seed=cfg.seed)
  wm, params, wm_cfg = load_world_model(cfg.world_model_workdir, with_config=True)
  held_out_cfg = wmt.walks_config(wm_cfg, random_layout=True)
  overrides = {k: float(cfg.data.get(k, -1)) for k in ('cross_wall_rate', 'wall_push_rate')}
  try:
    walks_cfg = dataclasses.replace(held_out_cfg, **{k: v for k, v in overrides.items() if v >= 0})
  except ValueError as e:
    raise ValueError(f'config.data.cross_wall_rate / wall_push_rate = {overrides} (-1: the world '
                     f'model\'s {held_out_cfg.cross_wall_rate} / {held_out_cfg.wall_push_rate}) '
                     f'give invalid walks: {e}') from None
  env_cfg = walks_cfg.env
  t0 = time.perf_counter()
  key = jax.random.key(cfg.seed)
  z, _, lay_train = encoded_walks(wm, params, walks_cfg, jax.random.fold_in(key, 1),
                                  cfg.data.layouts, cfg.data, 'train walks')
  z_test, pos_test, lay_test = encoded_walks(wm, params, held_out_cfg, jax.random.fold_in(key, 2),
                                             cfg.data.held_out_layouts, cfg.data, 'held-out walks',
                                             exclude_layouts=lay_train)
  if not len(z_test):
    raise ValueError('every held-out layout drawn was also a training layout: lower '
                     'config.data.layouts or raise config.data.held_out_layouts')
  data_s = time.perf_counter() - t0
  print(f'walks: {z.shape[0]} layouts x {z.shape[1]} walks x {z.shape[2]} frames, latents '
        f'{z.shape[3:]}, encoded in {data_s:.1f} s; held out: {len(z_test)} layouts unseen in '
        'fitting', flush=True)

  bar = tqdm(total=dcfg.steps, desc=f'goal distance ({dcfg.objective.upper()})', unit='step')

  def progress(step, m):
    bar.update(step - bar.n)
    bar.set_postfix(loss=f"{m['loss']:.3f}", d=f"{m['d_mean']:.1f}")

  t1 = time.perf_counter()
  module, d_params, history = gd.fit(z, dcfg, log_every=cfg.log_every, progress=progress)
  bar.close()
  fit_s = time.perf_counter() - t1

  def learned(a, b):
    return gd.to_steps(dcfg, module.apply(d_params, a, b))

  blur = costs.token_grid_blur(2.0) if z.ndim == 5 else None

  latent_ndim = z.ndim - 3

  def latent_l2(a, b):
    return jnp.sqrt(jnp.sum(jnp.square(a - b).reshape(*a.shape[:a.ndim - latent_ndim], -1), -1))

  candidates = {'learned distance (steps)': jax.jit(learned), 'latent L2': jax.jit(latent_l2)}
  if blur is not None:
    candidates['blurred latent L2 (sigma 2 cells)'] = jax.jit(
        lambda a, b: latent_l2(jax.vmap(blur)(a), jax.vmap(blur)(b)))
  agreement = {name: gd.geodesic_agreement(fn, z_test, pos_test, lay_test, env_cfg, seed=cfg.seed)
               for name, fn in candidates.items()}
  print('\nheld-out layouts: rank correlation with the shortest-path length (Spearman)')
  print(f"{'distance':36s} {'all pairs':>10s} {'other room':>11s} {'units per px':>13s}")
  for name, a in agreement.items():
    print(f"{name:36s} {a['spearman']:10.3f} {a['spearman_cross_room']:11.3f} "
          f"{a['units_per_px']:13.3f}")

  meta = dict(world_model_workdir=os.path.abspath(cfg.world_model_workdir),
              latent_shape=list(z.shape[3:]), data=cfg.data.to_dict(), held_out=agreement,
              held_out_layouts=len(z_test),
              data_s=data_s, fit_s=fit_s, history=history)
  gd.save(workdir, dcfg, d_params, meta)
  maps.plot_curves(os.path.join(workdir, 'curves.png'), history)
  encode = jax.jit(lambda o: wm.encode(params, o))
  rng = np.random.default_rng(cfg.seed)
  rows = []
  for i in range(min(cfg.maps.layouts, len(lay_test))):
    layout, walk = lay_test[i, 0], rng.integers(0, z_test.shape[1])
    goal = pos_test[i, walk, rng.integers(0, z_test.shape[2])]
    rows.append((layout, goal, maps.grid_maps(encode, candidates, layout, goal, env_cfg,
                                              cfg.maps.grid)))
  maps.plot_maps(os.path.join(workdir, 'maps.png'), rows, env_cfg)
  print(f'\nfit {fit_s:.0f} s ({dcfg.steps} steps), whole run {time.perf_counter() - t0:.0f} s; '
        f'wrote {workdir}/{gd.META}, params/, curves.png, maps.png')
  return meta
