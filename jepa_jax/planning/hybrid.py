"""Hybrid planner: CEM finds the basin (global, derivative-free), gradient descent then
polishes the best candidates (local, precise). Best refined candidate is kept."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from jepa_jax.planning import bounds as B
from jepa_jax.planning.cem import CEMConfig, cem_search
from jepa_jax.planning.gradient_mpc import GradientMPCConfig, descend, make_optimizer
from jepa_jax.planning.rollout import CostFn, StepFn, trajectory_cost


@dataclasses.dataclass(frozen=True)
class HybridConfig:
  cem: CEMConfig
  gradient: GradientMPCConfig  # its `restarts` must be 1: candidates come from CEM instead
  refine: int = 4  # candidates refined: CEM's plan + the (refine-1) best of its last population

  def __post_init__(self):
    B.check_positive('HybridConfig', refine=self.refine)
    if self.refine > self.cem.population + 1:
      raise ValueError(f'HybridConfig.refine={self.refine} must be <= HybridConfig.cem.population + 1 '
                       f'= {self.cem.population + 1}')
    if self.cem.horizon != self.gradient.horizon:
      raise ValueError(f'HybridConfig.cem.horizon={self.cem.horizon} != '
                       f'HybridConfig.gradient.horizon={self.gradient.horizon}')
    if self.gradient.restarts != 1:
      raise ValueError(f'HybridConfig.gradient.restarts must be 1 (got {self.gradient.restarts}); '
                       'the number of refined candidates is HybridConfig.refine')
    c, g = self.cem, self.gradient
    if (c.action_low, c.action_high) != (g.action_low, g.action_high):
      raise ValueError('HybridConfig.cem and HybridConfig.gradient must have the same action_low/'
                       f'action_high, got cem=({c.action_low}, {c.action_high}), '
                       f'gradient=({g.action_low}, {g.action_high})')


def make_hybrid_planner(step_fn: StepFn, cost_fn: CostFn, cfg: HybridConfig,
                        tx: optax.GradientTransformation | None = None):
  """plan(params, z0, z_goal, key, init_plan_HA) -> (actions_HA, info). Pure; jit/vmap it.

  info: cost, cem_cost, cost_history (I_cem + I_grad + 1,) best-so-far across both stages.
  """
  tx = tx if tx is not None else make_optimizer(cfg.gradient)

  def plan(params, z0, z_goal, key, init_plan_HA):
    B.check_plan_shape(init_plan_HA, cfg.cem.horizon, 'HybridConfig.cem')
    objective = lambda a_HA: trajectory_cost(step_fn, cost_fn, params, z0, z_goal, a_HA)
    res = cem_search(objective, key, jnp.asarray(init_plan_HA, jnp.float32), cfg.cem)
    cands_RHA = res.plan_HA[None]
    if cfg.refine > 1:
      _, idx = jax.lax.top_k(-res.costs_N, cfg.refine - 1)
      cands_RHA = jnp.concatenate([cands_RHA, res.samples_NHA[idx]])
    best_RHA, cost_R, hist_RI = descend(objective, cands_RHA, cfg.gradient, tx)
    r = jnp.argmin(cost_R)
    # Candidate 0 starts at CEM's plan and descend keeps its best iterate, so cost <= cem_cost.
    history = jnp.concatenate([res.cost_history, jnp.minimum(jnp.min(hist_RI, axis=0)[1:], res.cost)])
    info = dict(cost=cost_R[r], cem_cost=res.cost, cost_history=history)
    return best_RHA[r], info

  return plan
