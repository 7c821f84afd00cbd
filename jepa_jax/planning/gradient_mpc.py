"""Gradient-based MPC: backpropagate the cost through the unrolled dynamics into the actions.

The whole optimisation (restarts x iterations) is one traced function: restarts are a vmap,
iterations a lax.scan. Each restart keeps the best iterate it has seen, so the returned plan
never costs more than the (clipped) warm start.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from jepa_jax.planning import bounds as B
from jepa_jax.planning.rollout import CostFn, StepFn, trajectory_cost


@dataclasses.dataclass(frozen=True)
class GradientMPCConfig:
  horizon: int
  iterations: int = 100
  restarts: int = 1
  optimizer: str = 'adam'  # any optax constructor taking learning_rate, or 'lbfgs'
  learning_rate: float = 0.1
  final_lr_fraction: float = 1.0  # cosine decay to lr * this over `iterations`; 1.0 = constant
  grad_clip_norm: float | None = None
  bound_mode: str = 'clip'  # 'clip': project after each update; 'tanh': a = squash(u)
  action_low: B.Bound = None
  action_high: B.Bound = None
  restart_std: float = 0.5  # restarts >= 1 start at init_plan + restart_std * N(0, 1)

  def __post_init__(self):
    name = type(self).__name__
    object.__setattr__(self, 'action_low', B.normalize_bound(self.action_low))
    object.__setattr__(self, 'action_high', B.normalize_bound(self.action_high))
    B.check_positive(name, horizon=self.horizon, iterations=self.iterations, restarts=self.restarts,
                     learning_rate=self.learning_rate)
    B.validate_bounds(self.action_low, self.action_high, name)
    if self.bound_mode not in ('clip', 'tanh'):
      raise ValueError(f"{name}.bound_mode must be 'clip' or 'tanh', got {self.bound_mode!r}")
    if self.optimizer == 'lbfgs' and self.bound_mode == 'clip' and self.action_low is not None:
      raise ValueError(f"{name}: optimizer='lbfgs' line-searches an unconstrained problem; "
                       "use bound_mode='tanh' with bounds")
    if self.optimizer != 'lbfgs' and not callable(getattr(optax, self.optimizer, None)):
      raise ValueError(f'{name}.optimizer={self.optimizer!r} is not an optax optimiser')
    if not 0.0 <= self.final_lr_fraction <= 1.0:
      raise ValueError(f'{name}.final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}')
    if self.restart_std < 0:
      raise ValueError(f'{name}.restart_std must be >= 0, got {self.restart_std}')


def make_optimizer(cfg: GradientMPCConfig) -> optax.GradientTransformation:
  if cfg.optimizer == 'lbfgs':
    tx = optax.lbfgs()  # step size from the zoom line search; learning_rate unused
  else:
    lr = optax.cosine_decay_schedule(cfg.learning_rate, cfg.iterations, alpha=cfg.final_lr_fraction)
    tx = getattr(optax, cfg.optimizer)(learning_rate=lr)
  if cfg.grad_clip_norm is not None:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return tx


def descend(objective, plans_RHA, cfg: GradientMPCConfig, tx: optax.GradientTransformation):
  """Optimise R plans in parallel. objective: actions_HA -> scalar.

  Returns (best_RHA, best_cost_R, history_RI1): history[r, i] is the best cost of restart r
  after i updates (index 0 is the start, so I+1 entries, non-increasing).
  """
  bounds = B.bounds_arrays(cfg.action_low, cfg.action_high, plans_RHA.shape[-1], type(cfg).__name__)
  use_tanh = bounds is not None and cfg.bound_mode == 'tanh'
  to_actions = (lambda u: B.squash(u, bounds)) if use_tanh else (lambda u: u)
  f_u = lambda u: objective(to_actions(u))
  value_and_grad = jax.value_and_grad(f_u)
  pass_extra = isinstance(tx, optax.GradientTransformationExtraArgs)  # lbfgs needs value/grad/value_fn

  def one(plan_HA):
    u = B.unsquash(plan_HA, bounds) if use_tanh else B.clip(plan_HA, bounds)

    def body(carry, _):
      u, opt_state, best_a, best_c = carry
      c, g = value_and_grad(u)
      better = c < best_c  # NaN never wins: a diverged step cannot replace a finite plan
      best_a = jnp.where(better, to_actions(u), best_a)
      best_c = jnp.where(better, c, best_c)
      extra = dict(value=c, grad=g, value_fn=f_u) if pass_extra else {}
      updates, opt_state = tx.update(g, opt_state, u, **extra)
      u = optax.apply_updates(u, updates)
      if bounds is not None and not use_tanh:
        u = B.clip(u, bounds)
      return (u, opt_state, best_a, best_c), best_c

    init = (u, tx.init(u), to_actions(u), jnp.asarray(jnp.inf, jnp.float32))
    (u, _, best_a, best_c), hist_I = jax.lax.scan(body, init, None, length=cfg.iterations)
    c = f_u(u)
    better = c < best_c
    best_a = jnp.where(better, to_actions(u), best_a)
    best_c = jnp.where(better, c, best_c)
    return best_a, best_c, jnp.concatenate([hist_I, best_c[None]])

  return jax.vmap(one)(plans_RHA)


def make_gradient_planner(step_fn: StepFn, cost_fn: CostFn, cfg: GradientMPCConfig,
                          tx: optax.GradientTransformation | None = None):
  """plan(params, z0, z_goal, key, init_plan_HA) -> (actions_HA, info). Pure; jit/vmap it.

  Restart 0 starts exactly at init_plan (the warm start); the others at init_plan + noise.
  `tx` overrides the optimiser built from cfg (cfg.optimizer is then only used for checks).
  info: cost (scalar), cost_history (I+1,) best-so-far over restarts, restart_costs (R,).
  """
  tx = tx if tx is not None else make_optimizer(cfg)

  def plan(params, z0, z_goal, key, init_plan_HA):
    B.check_plan_shape(init_plan_HA, cfg.horizon, type(cfg).__name__)
    init_HA = jnp.asarray(init_plan_HA, jnp.float32)
    noise_RHA = cfg.restart_std * jax.random.normal(key, (cfg.restarts,) + init_HA.shape, jnp.float32)
    plans_RHA = init_HA + noise_RHA.at[0].set(0.0)
    objective = lambda a_HA: trajectory_cost(step_fn, cost_fn, params, z0, z_goal, a_HA)
    best_RHA, cost_R, hist_RI = descend(objective, plans_RHA, cfg, tx)
    r = jnp.argmin(cost_R)
    info = dict(cost=cost_R[r], cost_history=jnp.min(hist_RI, axis=0), restart_costs=cost_R)
    return best_RHA[r], info

  return plan
