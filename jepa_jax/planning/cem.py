"""Cross-entropy method: refit a diagonal Gaussian over action sequences to the elites.

Samples are clipped into the action box before evaluation, so the mean (an average of
feasible samples) is feasible too. The returned plan is the better of the final mean and the
best sample ever evaluated, so it never costs more than the (clipped) warm start.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jepa_jax.planning import bounds as B
from jepa_jax.planning.rollout import CostFn, StepFn, finite_or_inf, trajectory_cost


@dataclasses.dataclass(frozen=True)
class CEMConfig:
  horizon: int
  population: int = 256
  elites: int = 32
  iterations: int = 6
  init_std: float = 0.5
  min_std: float = 0.05  # floor so the search never collapses before the last iteration
  momentum: float = 0.0  # mean/std <- momentum * old + (1 - momentum) * elite statistics
  include_mean: bool = True  # sample 0 is the current mean, so a good mean is never lost
  action_low: B.Bound = None
  action_high: B.Bound = None

  def __post_init__(self):
    name = type(self).__name__
    object.__setattr__(self, 'action_low', B.normalize_bound(self.action_low))
    object.__setattr__(self, 'action_high', B.normalize_bound(self.action_high))
    B.check_positive(name, horizon=self.horizon, population=self.population, elites=self.elites,
                     iterations=self.iterations, init_std=self.init_std)
    if self.elites > self.population:
      raise ValueError(f'{name}.elites={self.elites} must be <= {name}.population={self.population}')
    if self.min_std < 0:
      raise ValueError(f'{name}.min_std must be >= 0, got {self.min_std}')
    if not 0.0 <= self.momentum < 1.0:
      raise ValueError(f'{name}.momentum must be in [0, 1), got {self.momentum}')
    B.validate_bounds(self.action_low, self.action_high, name)


class CEMResult(NamedTuple):
  plan_HA: jax.Array
  cost: jax.Array
  cost_history: jax.Array  # (I+1,) best-so-far cost, index 0 = warm start
  mean_cost_history: jax.Array  # (I+1,) cost of the mean after i iterations
  samples_NHA: jax.Array  # last population (for hybrid refinement)
  costs_N: jax.Array


def cem_search(objective, key, init_HA, cfg: CEMConfig) -> CEMResult:
  bounds = B.bounds_arrays(cfg.action_low, cfg.action_high, init_HA.shape[-1], type(cfg).__name__)
  mean0 = B.clip(init_HA, bounds)
  c0 = finite_or_inf(objective(mean0))
  N, K, m = cfg.population, cfg.elites, cfg.momentum

  def body(carry, key):
    mean, std, mean_c, best_a, best_c, _, _ = carry
    eps_NHA = jax.random.normal(key, (N,) + mean.shape, jnp.float32)
    samples = B.clip(mean + std * eps_NHA, bounds)
    if cfg.include_mean:
      samples = samples.at[0].set(mean)
    costs = finite_or_inf(jax.vmap(objective)(samples))
    _, idx_K = jax.lax.top_k(-costs, K)
    elites_KHA = samples[idx_K]
    mean = m * mean + (1 - m) * jnp.mean(elites_KHA, axis=0)
    std = jnp.maximum(m * std + (1 - m) * jnp.std(elites_KHA, axis=0), cfg.min_std)
    mean_c = finite_or_inf(objective(mean))
    i = jnp.argmin(costs)
    cand_a, cand_c = jnp.where(mean_c < costs[i], mean, samples[i]), jnp.minimum(mean_c, costs[i])
    better = cand_c < best_c
    best_a, best_c = jnp.where(better, cand_a, best_a), jnp.where(better, cand_c, best_c)
    return (mean, std, mean_c, best_a, best_c, samples, costs), (best_c, mean_c)

  std0 = jnp.full_like(mean0, cfg.init_std)
  init = (mean0, std0, c0, mean0, c0, jnp.zeros((N,) + mean0.shape, jnp.float32), jnp.full((N,), jnp.inf))
  keys = jax.random.split(key, cfg.iterations)
  (_, _, _, best_a, best_c, samples, costs), (hist_I, mean_hist_I) = jax.lax.scan(body, init, keys)
  return CEMResult(best_a, best_c, jnp.concatenate([c0[None], hist_I]),
                   jnp.concatenate([c0[None], mean_hist_I]), samples, costs)


def make_cem_planner(step_fn: StepFn, cost_fn: CostFn, cfg: CEMConfig):
  """plan(params, z0, z_goal, key, init_plan_HA) -> (actions_HA, info). Pure; jit/vmap it.

  init_plan is the initial mean (warm start: a shifted previous plan); std starts at init_std.
  info: cost, cost_history (I+1,), mean_cost_history (I+1,).
  """
  def plan(params, z0, z_goal, key, init_plan_HA):
    B.check_plan_shape(init_plan_HA, cfg.horizon, type(cfg).__name__)
    objective = lambda a_HA: trajectory_cost(step_fn, cost_fn, params, z0, z_goal, a_HA)
    res = cem_search(objective, key, jnp.asarray(init_plan_HA, jnp.float32), cfg)
    info = dict(cost=res.cost, cost_history=res.cost_history, mean_cost_history=res.mean_cost_history)
    return res.plan_HA, info

  return plan
