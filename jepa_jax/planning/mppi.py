"""MPPI: move the mean to the softmin(cost / temperature)-weighted average of noisy samples.

Samples are clipped into the action box before evaluation and averaging, so the mean stays
feasible. Like CEM, the returned plan is the better of the final mean and the best sample seen.

`noise_scales` splits the population over several noise levels (sample n uses
sigma * noise_scales[n % len]): wide samples find a way around an obstacle, narrow ones the last
few pixels to a goal, which one noise level cannot both do with a small population.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jepa_jax.planning import bounds as B
from jepa_jax.planning.rollout import CostFn, StepFn, finite_or_inf, trajectory_cost


@dataclasses.dataclass(frozen=True)
class MPPIConfig:
  horizon: int
  samples: int = 256
  iterations: int = 6
  temperature: float = 1.0  # lambda: smaller -> greedier weighting
  noise_std: float = 0.5  # sigma of the exploration noise
  noise_decay: float = 1.0  # sigma_i = noise_std * noise_decay**i, to settle near the optimum
  include_mean: bool = True  # sample 0 is the current mean (zero noise)
  noise_scales: tuple[float, ...] = (1.0,)  # per-sample multipliers of sigma, cycled over samples
  action_low: B.Bound = None
  action_high: B.Bound = None

  def __post_init__(self):
    name = type(self).__name__
    object.__setattr__(self, 'action_low', B.normalize_bound(self.action_low))
    object.__setattr__(self, 'action_high', B.normalize_bound(self.action_high))
    B.check_positive(name, horizon=self.horizon, samples=self.samples, iterations=self.iterations,
                     temperature=self.temperature, noise_std=self.noise_std)
    object.__setattr__(self, 'noise_scales', tuple(float(x) for x in self.noise_scales))
    if not self.noise_scales or min(self.noise_scales) <= 0:
      raise ValueError(f'{name}.noise_scales must be a non-empty sequence of positive multipliers, '
                       f'got {self.noise_scales}')
    if not 0.0 < self.noise_decay <= 1.0:
      raise ValueError(f'{name}.noise_decay must be in (0, 1], got {self.noise_decay}')
    B.validate_bounds(self.action_low, self.action_high, name)


def make_mppi_planner(step_fn: StepFn, cost_fn: CostFn, cfg: MPPIConfig):
  """plan(params, z0, z_goal, key, init_plan_HA) -> (actions_HA, info). Pure; jit/vmap it.

  info: cost, cost_history (I+1,) best-so-far, mean_cost_history (I+1,) cost of the mean.
  """
  N = cfg.samples
  scales_N11 = jnp.resize(jnp.asarray(cfg.noise_scales, jnp.float32), (N,))[:, None, None]

  def plan(params, z0, z_goal, key, init_plan_HA):
    B.check_plan_shape(init_plan_HA, cfg.horizon, type(cfg).__name__)
    init_HA = jnp.asarray(init_plan_HA, jnp.float32)
    bounds = B.bounds_arrays(cfg.action_low, cfg.action_high, init_HA.shape[-1], type(cfg).__name__)
    cost = lambda a_HA: finite_or_inf(trajectory_cost(step_fn, cost_fn, params, z0, z_goal, a_HA))

    def body(carry, inp):
      mean, best_a, best_c = carry
      key, sigma = inp
      noise_NHA = jax.random.normal(key, (N,) + mean.shape, jnp.float32)
      samples = B.clip(mean + sigma * scales_N11 * noise_NHA, bounds)
      if cfg.include_mean:
        samples = samples.at[0].set(mean)
      costs = jax.vmap(cost)(samples)
      # Shift by the min so exp() cannot underflow to all-zero weights; inf cost -> weight 0.
      c_min = jnp.min(costs)
      w_N = jax.nn.softmax(-(costs - c_min) / cfg.temperature)
      mean = jnp.where(jnp.isfinite(c_min), jnp.einsum('n,nha->ha', w_N, samples), mean)
      mean_c = cost(mean)
      i = jnp.argmin(costs)
      cand_a, cand_c = jnp.where(mean_c < costs[i], mean, samples[i]), jnp.minimum(mean_c, costs[i])
      better = cand_c < best_c
      best_a, best_c = jnp.where(better, cand_a, best_a), jnp.where(better, cand_c, best_c)
      return (mean, best_a, best_c), (best_c, mean_c)

    mean0 = B.clip(init_HA, bounds)
    c0 = cost(mean0)
    sigmas = cfg.noise_std * cfg.noise_decay ** jnp.arange(cfg.iterations, dtype=jnp.float32)
    keys = jax.random.split(key, cfg.iterations)
    (_, best_a, best_c), (hist_I, mean_hist_I) = jax.lax.scan(body, (mean0, mean0, c0), (keys, sigmas))
    info = dict(cost=best_c, cost_history=jnp.concatenate([c0[None], hist_I]),
                mean_cost_history=jnp.concatenate([c0[None], mean_hist_I]))
    return best_a, info

  return plan
