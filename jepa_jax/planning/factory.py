"""Build any planner by name from plain config mappings (e.g. an ml_collections ConfigDict).

`make_planner(name, cfg, step_fn, cost_fn)` reads `cfg.horizon`, `cfg.action_bound` (box
+-bound on every action coordinate, None for unbounded) and the planner's own section
`cfg.<name>` (fields of its dataclass config). The hybrid planner's section holds `refine` plus
`cem` / `gradient` overrides applied on top of the `cfg.cem` / `cfg.gradient` sections.
"""

from __future__ import annotations

import dataclasses

from jepa_jax.planning.cem import CEMConfig, make_cem_planner
from jepa_jax.planning.gradient_mpc import GradientMPCConfig, make_gradient_planner
from jepa_jax.planning.hybrid import HybridConfig, make_hybrid_planner
from jepa_jax.planning.mppi import MPPIConfig, make_mppi_planner

PLANNERS = ('gradient', 'cem', 'mppi', 'hybrid')


def _as_dict(section) -> dict:
  return dict(section.to_dict() if hasattr(section, 'to_dict') else section)


def _build(cls, section, horizon, bound, owner):
  fields = {f.name for f in dataclasses.fields(cls)}
  kw = _as_dict(section)
  unknown = sorted(set(kw) - fields)
  if unknown:
    raise ValueError(f'{owner}: unknown keys {unknown} for {cls.__name__}; valid: {sorted(fields)}')
  box = {} if bound is None else dict(action_low=-float(bound), action_high=float(bound))
  return cls(horizon=horizon, **kw, **box)


def planner_config(name: str, cfg):
  """The frozen dataclass config of planner `name` (hashable, usable as a static argument)."""
  if name not in PLANNERS:
    raise ValueError(f'planner {name!r} unknown; choose from {PLANNERS} (config key: planners)')
  H, bound = int(cfg.horizon), cfg.action_bound
  if name == 'gradient':
    return _build(GradientMPCConfig, cfg.gradient, H, bound, 'gradient')
  if name == 'cem':
    return _build(CEMConfig, cfg.cem, H, bound, 'cem')
  if name == 'mppi':
    return _build(MPPIConfig, cfg.mppi, H, bound, 'mppi')
  hyb = _as_dict(cfg.hybrid)
  cem = {**_as_dict(cfg.cem), **_as_dict(hyb.pop('cem', {}))}
  grad = {**_as_dict(cfg.gradient), **_as_dict(hyb.pop('gradient', {})), 'restarts': 1}
  return HybridConfig(cem=_build(CEMConfig, cem, H, bound, 'hybrid.cem'),
                      gradient=_build(GradientMPCConfig, grad, H, bound, 'hybrid.gradient'), **hyb)


def make_planner(name: str, cfg, step_fn, cost_fn):
  """plan(params, z0, z_goal, key, init_plan_HA) -> (actions_HA, info) for planner `name`."""
  pcfg = planner_config(name, cfg)
  make = dict(gradient=make_gradient_planner, cem=make_cem_planner, mppi=make_mppi_planner,
              hybrid=make_hybrid_planner)[name]
  return make(step_fn, cost_fn, pcfg)
