"""World models for planning, behind one protocol: `WorldModel(encode, step, params)`.

encode(params, obs_HWC) -> z        one rendered observation -> latent (any pytree/shape)
step(params, z, action_A) -> z_next one latent transition

`load_world_model(cfg.world_model, env_cfg)` picks the implementation from
`cfg.world_model.kind`: 'analytic' (hand-written, reads images; see analytic_world_model.py) or
'learned' (a trained checkpoint in `cfg.world_model.workdir`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from jepa_jax.envs import two_rooms
from jepa_jax.eval import analytic_world_model


class WorldModel(NamedTuple):
  name: str
  encode: Callable[[Any, Any], Any]
  step: Callable[[Any, Any, Any], Any]
  params: Any
  project: Callable[[Any], Any] | None = None  # optional z -> goal-metric space (cost uses it)


def load_world_model(wm_cfg, env_cfg: two_rooms.TwoRoomsConfig) -> WorldModel:
  kind = wm_cfg.kind
  if kind == 'analytic':
    a = wm_cfg.analytic
    return WorldModel('analytic', analytic_world_model.encode, analytic_world_model.make_step(env_cfg),
                      analytic_world_model.init_params(a.temperature, a.walls))
  if kind == 'learned':
    if not wm_cfg.workdir:
      raise ValueError("world_model.kind='learned' needs world_model.workdir (the training run's "
                       "--workdir, e.g. --config.world_model.workdir=runs/wm)")
    from jepa_jax.eval import learned_world_model  # lazy: pulls in the model code
    return learned_world_model.load(wm_cfg.workdir, env_cfg, wm_cfg.get('probe'))
  raise ValueError(f"world_model.kind={kind!r}: choose 'analytic' or 'learned'")
