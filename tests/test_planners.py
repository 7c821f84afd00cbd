"""Planners on linear-quadratic problems, where the optimum is known in closed form."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import planning as P

H, D, A = 8, 4, 2


def linear_step(params, z, a):
  return params['A'] @ z + params['B'] @ a


def make_problem(seed, r=0.5):
  """Stable random (A, B), Q = I, R = r I, goal far from z0 so actions matter."""
  rng = np.random.default_rng(seed)
  Am = np.eye(D) + 0.2 * rng.standard_normal((D, D)) / np.sqrt(D)
  Am = 0.95 * Am / max(1.0, np.max(np.abs(np.linalg.eigvals(Am))))
  return dict(A=Am, B=rng.standard_normal((D, A)) / np.sqrt(A), Q=np.eye(D), R=r * np.eye(A),
              z0=rng.standard_normal(D), g=2.0 * rng.standard_normal(D))


class QP:
  """The LQ problem as a QP in the stacked actions (float64): states = M a + off."""

  def __init__(self, p):
    M, G = np.zeros((H * D, H * A)), np.zeros((H * D, D))
    for t in range(1, H + 1):  # block lower-triangular map from actions to states z_1..z_H
      G[(t - 1) * D:t * D] = np.linalg.matrix_power(p['A'], t)
      for s in range(t):
        M[(t - 1) * D:t * D, s * A:(s + 1) * A] = np.linalg.matrix_power(p['A'], t - 1 - s) @ p['B']
    self.M, self.off = M, G @ p['z0'] - np.tile(p['g'], H)
    self.Qb, self.Rb = np.kron(np.eye(H), p['Q']), np.kron(np.eye(H), p['R'])
    self.hess = M.T @ self.Qb @ M + self.Rb  # cost = a'Ha + 2b'a + const
    self.b = M.T @ self.Qb @ self.off

  def cost(self, a_HA):
    a = np.asarray(a_HA, np.float64).ravel()
    s = self.M @ a + self.off
    return float(s @ self.Qb @ s + a @ self.Rb @ a)

  def optimum(self):
    return np.linalg.solve(self.hess, -self.b).reshape(H, A)

  def box_optimum(self, bound, iters=20000):
    """Projected gradient with step 1/L: converges to the unique box-constrained optimum."""
    L = np.linalg.eigvalsh(self.hess).max()
    x = np.clip(self.optimum().ravel(), -bound, bound)
    for _ in range(iters):
      x = np.clip(x - (self.hess @ x + self.b) / L, -bound, bound)
    return x.reshape(H, A)


def jax_problem(p):
  params = {k: jnp.asarray(p[k], jnp.float32) for k in 'AB'}
  cost = P.weighted_sum([(1.0, P.quadratic_goal_cost(p['Q'])), (1.0, P.action_energy(p['R']))])
  return params, cost, jnp.asarray(p['z0'], jnp.float32), jnp.asarray(p['g'], jnp.float32)


def rel_err(a, ref):
  return np.linalg.norm(np.asarray(a) - ref) / np.linalg.norm(ref)


ZEROS_HA = jnp.zeros((H, A))
KEY = jax.random.key(0)


# --------------------------------------------------------------------------- gradient MPC


def test_gradient_planner_reaches_lq_optimum():
  p = make_problem(2)
  qp, (params, cost, z0, g) = QP(p), jax_problem(p)
  iterations = 500  # default optimiser (Adam), cosine-decayed learning rate
  cfg = P.GradientMPCConfig(horizon=H, iterations=iterations, restarts=4, learning_rate=0.1,
                            final_lr_fraction=0.0)
  a, info = jax.jit(P.make_gradient_planner(linear_step, cost, cfg))(params, z0, g, KEY, ZEROS_HA)
  a_star = qp.optimum()
  assert rel_err(a, a_star) < 1e-3
  assert float(info['cost']) == pytest.approx(qp.cost(a_star), rel=1e-4)
  assert qp.cost(a) == pytest.approx(qp.cost(a_star), rel=1e-4)  # reported cost is the true one
  hist = np.asarray(info['cost_history'])
  assert hist.shape == (iterations + 1,) and np.all(np.diff(hist) <= 0)
  assert hist[0] <= qp.cost(ZEROS_HA) * (1 + 1e-6)  # best start among restarts (0 = warm start)


@pytest.mark.parametrize('bound_mode, optimizer, iterations', [
    ('clip', 'adam', 1000),  # projected Adam
    ('tanh', 'lbfgs', 100),  # squashing reparameterisation; L-BFGS because tanh saturates slowly under Adam
])
def test_gradient_planner_box_bounds(bound_mode, optimizer, iterations):
  p = make_problem(1)
  qp, (params, cost, z0, g) = QP(p), jax_problem(p)
  a_star = qp.optimum()
  bound = float(np.float32(0.3 * np.abs(a_star).max()))
  ref = qp.box_optimum(bound)
  active = np.isclose(np.abs(ref), bound)
  assert 0 < active.sum() < ref.size  # the constraint actually binds
  cfg = P.GradientMPCConfig(horizon=H, iterations=iterations, restarts=4, optimizer=optimizer,
                            learning_rate=0.1, final_lr_fraction=0.0, bound_mode=bound_mode,
                            action_low=-bound, action_high=bound)
  a, info = jax.jit(P.make_gradient_planner(linear_step, cost, cfg))(params, z0, g, KEY, ZEROS_HA)
  a = np.asarray(a)
  assert np.abs(a).max() <= np.float32(bound)
  assert qp.cost(a) < qp.cost(np.clip(a_star, -bound, bound))  # beats clipping the unconstrained plan
  assert qp.cost(a) == pytest.approx(qp.cost(ref), rel=1e-4)
  assert rel_err(a, ref) < 1e-3
  # KKT: zero gradient on free coordinates; on active ones the gradient pushes outwards.
  grad = (qp.hess @ a.ravel() + qp.b).reshape(H, A)
  scale = np.abs(qp.b).max()
  assert np.abs(grad[~active]).max() < 1e-2 * scale
  assert np.all(-grad[active] * np.sign(a[active]) > -1e-2 * scale)


def test_gradient_config_errors():
  with pytest.raises(ValueError, match='bound_mode'):
    P.GradientMPCConfig(horizon=H, bound_mode='sigmoid')
  with pytest.raises(ValueError, match='optimizer'):
    P.GradientMPCConfig(horizon=H, optimizer='not_an_optimizer')
  with pytest.raises(ValueError, match='lbfgs'):
    P.GradientMPCConfig(horizon=H, optimizer='lbfgs', action_low=-1.0, action_high=1.0)
  with pytest.raises(ValueError, match='action_high'):
    P.GradientMPCConfig(horizon=H, action_low=-1.0)
  with pytest.raises(ValueError, match='restarts'):
    P.GradientMPCConfig(horizon=H, restarts=0)
  plan = P.make_gradient_planner(linear_step, P.action_energy(), P.GradientMPCConfig(horizon=H))
  params, _, z0, g = jax_problem(make_problem(0))
  with pytest.raises(ValueError, match='horizon=8'):
    plan(params, z0, g, KEY, jnp.zeros((H + 1, A)))


# --------------------------------------------------------------------------- sampling planners


SAMPLERS = {
    'cem': (P.make_cem_planner, P.CEMConfig(horizon=H, population=256, elites=32, iterations=15,
                                            init_std=1.0, min_std=0.01)),
    'mppi': (P.make_mppi_planner, P.MPPIConfig(horizon=H, samples=256, iterations=15, temperature=0.5,
                                               noise_std=0.5, noise_decay=0.9)),
}


@pytest.mark.parametrize('name', sorted(SAMPLERS))
def test_sampling_planner_improves_monotonically_and_nears_optimum(name):
  p = make_problem(2)
  qp, (params, cost, z0, g) = QP(p), jax_problem(p)
  make, cfg = SAMPLERS[name]
  plan = jax.vmap(make(linear_step, cost, cfg), in_axes=(None, None, None, 0, None))
  a_SHA, info = jax.jit(plan)(params, z0, g, jax.random.split(KEY, 32), ZEROS_HA)
  mean_hist = np.asarray(info['mean_cost_history']).mean(axis=0)  # over 32 seeds
  assert mean_hist.shape == (cfg.iterations + 1,)
  assert np.all(np.diff(mean_hist) <= 0), mean_hist
  c_star = qp.cost(qp.optimum())
  assert mean_hist[-1] < 1.03 * c_star
  assert mean_hist[0] > 3 * c_star  # it started far away
  assert np.all(np.diff(np.asarray(info['cost_history']), axis=1) <= 0)  # best-so-far
  costs = np.array([qp.cost(a) for a in np.asarray(a_SHA)])
  np.testing.assert_allclose(costs, info['cost'], rtol=1e-4)
  assert costs.mean() < 1.03 * c_star


def test_mppi_noise_scales_multiply_the_noise():
  """One scale s with noise_std x is exactly noise_std s * x; a mixed population keeps wide
  samples for exploring and narrow ones for the last digits: started next to the optimum, the
  narrow half refines it, where a wide-only population of the same size stalls."""
  p = make_problem(3)
  qp, (params, cost, z0, g) = QP(p), jax_problem(p)
  mk = lambda temperature=0.5, **kw: jax.jit(P.make_mppi_planner(linear_step, cost, P.MPPIConfig(
      horizon=H, samples=64, iterations=4, temperature=temperature, **kw)))
  a1, _ = mk(noise_std=1.0, noise_scales=(0.25,))(params, z0, g, KEY, ZEROS_HA)
  a2, _ = mk(noise_std=0.25)(params, z0, g, KEY, ZEROS_HA)
  np.testing.assert_allclose(a1, a2, rtol=1e-6, atol=1e-7)
  start = jnp.asarray(qp.optimum() + 0.05 * np.random.default_rng(0).standard_normal((H, A)),
                      jnp.float32)
  gap = lambda plan: np.mean([qp.cost(plan(params, z0, g, k, start)[0]) - qp.cost(qp.optimum())
                              for k in jax.random.split(KEY, 8)])
  wide = gap(mk(0.01, noise_std=2.0))
  mixed = gap(mk(0.01, noise_std=2.0, noise_scales=(1.0, 0.01)))
  assert mixed < 0.5 * wide, (mixed, wide)
  with pytest.raises(ValueError, match='noise_scales'):
    P.MPPIConfig(horizon=H, noise_scales=(1.0, 0.0))
  with pytest.raises(ValueError, match='noise_scales'):
    P.MPPIConfig(horizon=H, noise_scales=())


def test_sampling_config_errors():
  with pytest.raises(ValueError, match='CEMConfig.elites=64 must be <= CEMConfig.population=32'):
    P.CEMConfig(horizon=H, population=32, elites=64)
  with pytest.raises(ValueError, match='momentum'):
    P.CEMConfig(horizon=H, momentum=1.0)
  with pytest.raises(ValueError, match='MPPIConfig.temperature'):
    P.MPPIConfig(horizon=H, temperature=0.0)
  with pytest.raises(ValueError, match='action_low < action_high'):
    P.MPPIConfig(horizon=H, action_low=1.0, action_high=-1.0)
  cem, grad = P.CEMConfig(horizon=H), P.GradientMPCConfig(horizon=H)
  with pytest.raises(ValueError, match='gradient.horizon'):
    P.HybridConfig(cem=cem, gradient=P.GradientMPCConfig(horizon=H + 1))
  with pytest.raises(ValueError, match='gradient.restarts'):
    P.HybridConfig(cem=cem, gradient=P.GradientMPCConfig(horizon=H, restarts=2))
  with pytest.raises(ValueError, match='action_low'):
    P.HybridConfig(cem=P.CEMConfig(horizon=H, action_low=-1.0, action_high=1.0), gradient=grad)


# --------------------------------------------------------------------------- all planners
# Every planner in a small config with a per-dimension, asymmetric box that contains the
# optimum of problem 0. Jitted planners are cached so each compiles once for the whole file.

LOW, HIGH = (-2.0, -2.5), (2.5, 2.0)
COST = jax_problem(make_problem(0))[1]  # Q = I, R = 0.5 I for every make_problem seed


def _small_configs():
  b = dict(action_low=LOW, action_high=HIGH)
  grad = P.GradientMPCConfig(horizon=H, iterations=20, restarts=3, **b)
  cem = P.CEMConfig(horizon=H, population=32, elites=4, iterations=3, **b)
  return {
      'gradient': (P.make_gradient_planner, grad),
      'gradient_tanh': (P.make_gradient_planner, dataclasses.replace(grad, bound_mode='tanh')),
      'cem': (P.make_cem_planner, cem),
      'mppi': (P.make_mppi_planner, P.MPPIConfig(horizon=H, samples=32, iterations=3, **b)),
      'hybrid': (P.make_hybrid_planner,
                 P.HybridConfig(cem=cem, gradient=dataclasses.replace(grad, restarts=1), refine=3)),
  }


NAMES = ['cem', 'gradient', 'hybrid', 'mppi']  # gradient_tanh only in the bounds test (compile time)


@functools.cache
def single(name):
  """jit(plan), asserting it is traced once over the whole test file."""
  make, cfg = _small_configs()[name]
  plan = make(linear_step, COST, cfg)
  plan.__name__ = f'plan_{name}'  # chex keys its trace counter on the function name + source
  return jax.jit(chex.assert_max_traces(plan, n=1))


@functools.cache
def batched(name):
  make, cfg = _small_configs()[name]
  return jax.jit(jax.vmap(make(linear_step, COST, cfg), in_axes=(None, 0, 0, 0, 0)))


def random_episodes(goal_scale, init_scale, seed, n=8):  # always 8: one compile of batched()
  ks = jax.random.split(jax.random.key(seed), 4)
  return (jax.random.normal(ks[0], (n, D)), goal_scale * jax.random.normal(ks[1], (n, D)),
          jax.random.split(ks[2], n), init_scale * jax.random.normal(ks[3], (n, H, A)))


@pytest.mark.parametrize('name', sorted(_small_configs()))
def test_bounds_hold_on_random_problems(name):
  params = jax_problem(make_problem(0))[0]
  # Far goals want large actions; warm starts are infeasible too.
  z0, g, keys, init = random_episodes(goal_scale=20.0, init_scale=5.0, seed=1)
  a, info = batched(name)(params, z0, g, keys, init)
  a = np.asarray(a)
  assert np.all(np.isfinite(a)) and np.all(np.isfinite(info['cost']))
  assert np.all(a >= np.float32(LOW)) and np.all(a <= np.float32(HIGH))
  at_bound = np.isclose(a, np.float32(LOW), atol=1e-2) | np.isclose(a, np.float32(HIGH), atol=1e-2)
  assert at_bound.any()  # the box really constrains these plans


@pytest.mark.parametrize('name', NAMES)
def test_planner_traces_once(name):
  params, _, z0, g = jax_problem(make_problem(0))
  for i in range(3):  # new values, same shapes and dtypes: no retrace
    a, info = single(name)(params, z0 + i, g - i, jax.random.key(i), ZEROS_HA + 0.1 * i)
    assert a.shape == (H, A) and a.dtype == jnp.float32 and info['cost'].shape == ()
    assert info['cost_history'].ndim == 1


@pytest.mark.parametrize('name', NAMES)
def test_vmap_equals_python_loop(name):
  params = jax_problem(make_problem(0))[0]
  z0, g, keys, init = random_episodes(goal_scale=2.0, init_scale=0.3, seed=2)
  a_b, info_b = batched(name)(params, z0, g, keys, init)
  for i in range(3):
    a_i, info_i = single(name)(params, z0[i], g[i], keys[i], init[i])
    np.testing.assert_allclose(a_b[i], a_i, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(info_b['cost'][i], info_i['cost'], rtol=1e-5)
  assert not np.allclose(a_b[0], a_b[1])  # episodes really differ


@pytest.mark.parametrize('name', NAMES)
def test_warm_start_at_optimum_stays_there(name):
  p = make_problem(0)
  qp, (params, _, z0, g) = QP(p), jax_problem(p)
  a_star = qp.optimum()
  assert np.all(a_star > LOW) and np.all(a_star < HIGH)
  a, info = single(name)(params, z0, g, KEY, jnp.asarray(a_star, jnp.float32))
  np.testing.assert_allclose(a, a_star, atol=1e-3)
  assert float(info['cost']) == pytest.approx(qp.cost(a_star), rel=1e-5)
  # ...whereas a cold start with the same budget is not there yet (so this test can fail).
  a_cold, _ = single(name)(params, z0, g, KEY, ZEROS_HA)
  assert rel_err(a_cold, a_star) > 1e-2


def test_receding_horizon_warm_start_beats_cold_start():
  """Closed loop: execute one action, shift the plan, re-plan from the new state."""
  p = make_problem(3)
  params, _, z0, g = jax_problem(p)
  plan = single('gradient')
  a, _ = plan(params, z0, g, KEY, ZEROS_HA)
  z1 = linear_step(params, z0, a[0])
  _, info_warm = plan(params, z1, g, KEY, P.shift_plan(a, 1))
  _, info_cold = plan(params, z1, g, KEY, ZEROS_HA)
  assert float(info_warm['cost']) < float(info_cold['cost'])


def test_hybrid_refines_cem_to_the_optimum():
  p = make_problem(2)
  qp, (params, cost, z0, g) = QP(p), jax_problem(p)
  cfg = P.HybridConfig(
      cem=P.CEMConfig(horizon=H, population=64, elites=8, iterations=4, init_std=1.0),
      gradient=P.GradientMPCConfig(horizon=H, iterations=300, learning_rate=0.1, final_lr_fraction=0.0),
      refine=4)
  a, info = jax.jit(P.make_hybrid_planner(linear_step, cost, cfg))(params, z0, g, KEY, ZEROS_HA)
  c_star = qp.cost(qp.optimum())
  assert float(info['cem_cost']) > 1.01 * c_star  # CEM alone is coarse...
  assert rel_err(a, qp.optimum()) < 1e-3  # ...the refinement is exact
  assert float(info['cost']) == pytest.approx(c_star, rel=1e-4)
  hist = np.asarray(info['cost_history'])
  assert hist.shape == (4 + 300 + 1,) and np.all(np.diff(hist) <= 0)
