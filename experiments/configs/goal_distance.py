"""Goal-conditioned distance on a trained world model's latents. `--config=...goal_distance.py:PRESET`.

Presets:
  debug        seconds: a few layouts and steps (tests, smoke runs).
  cpu_default  256 layouts x 8 walks x 129 frames, 8000 TD steps (~4 min on 2 CPU cores).
  cpu_qrl      the same walks, a quasimetric distance (QRL objective, IQE head), 8000 steps.

Keys:
  world_model_workdir  the `experiments.world_model` run whose (frozen) encoder makes the latents
  data                 layouts, walks_per_layout, length (steps + 1), held_out_layouts;
                       cross_wall_rate / wall_push_rate of the fitting walks (-1: the world
                       model's own); held-out walks always use the world model's settings
  distance             train/goal_distance.DistanceConfig fields (network, objective 'td' or 'qrl',
                       TD: discount, expectile, Polyak rate, goals; QRL: IQE size, margin,
                       constraint tolerance and dual rate, reversible walks)
  maps                 layouts (held-out) and grid (positions per side) of the distance pictures
"""

import ml_collections


def get_config(preset: str = 'cpu_default') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.world_model_workdir = 'runs/wm'
  # Long walks, most of them steered through the door; goals: 10 % the state, 90 % later on the
  # same walk (none from other walks: measured better). Held-out Spearman with the shortest path
  # 0.88 (65-frame walks of the world model's own mix, 40 % same-walk goals: 0.76; BUILD_NOTES
  # session 9).
  c.data = ml_collections.ConfigDict(dict(layouts=256, walks_per_layout=8, length=129,
                                          held_out_layouts=32, cross_wall_rate=0.8,
                                          wall_push_rate=0.1))
  c.distance = ml_collections.ConfigDict(dict(
      channels=(32, 64), hidden=(256, 256), steps=8000, batch_size=256, lr=3e-4, discount=0.99,
      expectile=0.3, polyak=0.05, goal_self=0.1, goal_same_walk=0.9,
      # objective 'qrl': quasimetric RL on an IQE head instead of TD (discount, expectile,
      # polyak, goal_self and goal_same_walk are TD's alone); see
      # train/goal_distance.DistanceConfig
      objective='td', components=32, component_dim=8, qrl_margin=200.0, qrl_softness=0.05,
      qrl_tolerance=0.05, qrl_dual_lr=0.01, reversible=True))
  c.maps = ml_collections.ConfigDict(dict(layouts=4, grid=24))
  c.log_every = 500
  if preset == 'cpu_default':
    pass
  elif preset == 'cpu_qrl':
    # Held-out Spearman 0.933 / 0.853 (all pairs / other room) on runs/wm_g8_12k against TD's
    # 0.884 / 0.731; fit 588 s against 130 s; it plans no better (BUILD_NOTES session 23).
    c.distance.objective = 'qrl'
  elif preset == 'debug':
    c.data.update(layouts=4, walks_per_layout=2, length=9, held_out_layouts=2)
    c.distance.update(channels=(8,), hidden=(16,), steps=20, batch_size=16)
    c.maps.update(layouts=1, grid=6)
    c.log_every = 10
  else:
    raise ValueError(f"unknown preset {preset!r}: choose 'debug', 'cpu_default' or 'cpu_qrl'")
  return c
