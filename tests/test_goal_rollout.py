"""Goal targets unrolled by the model (planning/goal_rollout.py): action-independent drift cancels."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jepa_jax import planning as P
from jepa_jax.planning.goal_rollout import corrected_cost, goal_rollout_cost, with_goal_rollout

H, D, A = 6, 4, 2
RNG = np.random.default_rng(0)
B = jnp.asarray(RNG.standard_normal((D, A)), jnp.float32)
DRIFT = jnp.asarray(RNG.standard_normal(D), jnp.float32)  # what the model adds every step
COST = P.weighted_sum([(1.0, P.goal_energy('l2sq', 'sum')), (0.1, P.action_energy())])


def integrator(params, z, a):
  return z + params['B'] @ a


def drifting(params, z, a):
  return z + params['B'] @ a + params['drift']


PARAMS = dict(B=B, drift=DRIFT)


def test_staying_on_the_goal_costs_nothing_despite_drift():
  g = jnp.asarray(RNG.standard_normal(D), jnp.float32)
  zeros = jnp.zeros((H, A))
  goal_traj = P.unroll(drifting, PARAMS, g, zeros)
  plain = P.trajectory_cost(drifting, COST, PARAMS, g, g, zeros)
  corrected = P.trajectory_cost(drifting, goal_rollout_cost(COST), PARAMS, g, goal_traj, zeros)
  # drift t*d at step t: sum_t t^2 |d|^2
  np.testing.assert_allclose(plain, sum(t * t for t in range(1, H + 1)) * float(DRIFT @ DRIFT),
                             rtol=1e-5)
  assert float(corrected) == pytest.approx(0.0, abs=1e-5)


def test_corrected_cost_by_hand_on_a_pytree_latent():
  z_traj = dict(u=jnp.arange(3 * 2.0).reshape(3, 2), v=jnp.ones((3, 2, 2)))
  goal_traj = dict(u=jnp.array([[1.0, 1.0], [2.0, 1.0], [3.0, 3.0]]), v=jnp.zeros((3, 2, 2)))
  acts = jnp.zeros((2, A))

  def cost(zt, a, g):  # sum over steps 1..H of squared distance, on a pytree
    del a
    return sum(jnp.sum(jnp.square(zt[k][1:] - g[k][None])) for k in zt)

  # u: z - (g_t - g_0) = [[0,1],[1,3],[2,3]] vs g_0 = [1,1]: steps 1,2 -> (0+4) + (1+4) = 9;
  # v: ones vs zeros, 2 steps x 4 entries = 8.
  assert float(goal_rollout_cost(cost)(z_traj, acts, goal_traj)) == pytest.approx(17.0)


def test_corrected_cost_on_drifting_model_equals_plain_cost_on_drift_free_model():
  z0, g = (jnp.asarray(RNG.standard_normal(D), jnp.float32) for _ in range(2))
  acts = jnp.asarray(RNG.standard_normal((H, A)), jnp.float32)
  corrected = corrected_cost(drifting, COST, PARAMS, P.unroll(drifting, PARAMS, z0, acts), acts, g)
  plain = P.trajectory_cost(integrator, COST, PARAMS, z0, g, acts)
  np.testing.assert_allclose(corrected, plain, rtol=1e-5)
  assert float(P.trajectory_cost(drifting, COST, PARAMS, z0, g, acts)) != pytest.approx(
      float(plain), rel=1e-3)  # the drift is large enough to matter without the correction


@pytest.mark.parametrize('name', ['gradient', 'cem'])
def test_planner_on_drifting_model_equals_planner_on_drift_free_model(name):
  """With z' = z + B a + d the corrected objective is exactly the drift-free one, so the same
  planner (same key) returns the same plan; without the correction it plans against the drift."""
  cfg = ml_collections.ConfigDict(dict(
      horizon=H, action_bound=3.0, gradient=dict(iterations=200, learning_rate=0.1, restarts=1),
      cem=dict(population=64, elites=8, iterations=5, init_std=1.0)))
  z0 = jnp.zeros(D)
  goal = B @ jnp.array([2.0, -1.0])  # reachable
  key = jax.random.key(3)
  make = lambda step, cost: P.make_planner(name, cfg, step, cost)
  ref, _ = jax.jit(make(integrator, COST))(PARAMS, z0, goal, key, jnp.zeros((H, A)))
  corrected = with_goal_rollout(make, drifting, COST)
  got, info = jax.jit(corrected)(PARAMS, z0, goal, key, jnp.zeros((H, A)))
  np.testing.assert_allclose(got, ref, atol=1e-4)
  plain, _ = jax.jit(make(drifting, COST))(PARAMS, z0, goal, key, jnp.zeros((H, A)))
  assert np.abs(np.asarray(plain) - np.asarray(ref)).max() > 0.1
  assert np.isfinite(float(info['cost']))


def test_vmapped_goal_rollout_planner_equals_loop():
  cfg = ml_collections.ConfigDict(dict(horizon=H, action_bound=3.0,
                                       gradient=dict(iterations=20, learning_rate=0.1)))
  plan = with_goal_rollout(lambda s, c: P.make_planner('gradient', cfg, s, c), drifting, COST)
  z0s = jnp.asarray(RNG.standard_normal((3, D)), jnp.float32)
  goals = jnp.asarray(RNG.standard_normal((3, D)), jnp.float32)
  keys = jax.random.split(jax.random.key(0), 3)
  inits = jnp.zeros((3, H, A))
  batched, _ = jax.jit(jax.vmap(plan, in_axes=(None, 0, 0, 0, 0)))(PARAMS, z0s, goals, keys, inits)
  for i in range(3):
    one, _ = jax.jit(plan)(PARAMS, z0s[i], goals[i], keys[i], inits[i])
    np.testing.assert_allclose(batched[i], one, atol=1e-5)
