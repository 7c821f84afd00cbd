"""Planning costs against hand-computed values (trajectory convention: z_traj[0] = z0)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.planning import costs as C
from jepa_jax.planning.rollout import shift_plan, trajectory_cost, unroll

# z0 = (0, 0), z1 = (1, 2), z2 = (3, -1); goal (1, 1) -> diffs d1 = (0, 1), d2 = (2, -2).
Z_TD = jnp.array([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0]])
G_D = jnp.array([1.0, 1.0])
A_HA = jnp.array([[1.0, -2.0], [0.5, 0.5]])


def _c(cost_fn, z=Z_TD, a=A_HA, g=G_D):
  return float(jax.jit(cost_fn)(z, a, g))


@pytest.mark.parametrize('kwargs, expected', [
    (dict(metric='l2sq'), 8.0),
    (dict(metric='l2sq', reduction='sum'), 1.0 + 8.0),
    (dict(metric='l2sq', reduction='sum', discount=0.5), 1.0 + 0.5 * 8.0),
    (dict(metric='l1'), 4.0),
    (dict(metric='l1', reduction='sum'), 1.0 + 4.0),
    (dict(metric='l2'), np.sqrt(8.0)),
    (dict(metric='l2', reduction='sum'), 1.0 + np.sqrt(8.0)),
    (dict(metric='l2sq', average=True), 4.0),
    (dict(metric='l1', reduction='sum', average=True), 0.5 + 2.0),
    (dict(metric='l2', average=True), 2.0),
])
def test_goal_energy_values(kwargs, expected):
  assert _c(C.goal_energy(**kwargs)) == pytest.approx(expected, rel=1e-6)


def test_goal_energy_flattens_token_latents():
  z_TND = Z_TD.reshape(3, 1, 2) * jnp.ones((1, 2, 1))  # two identical tokens per step
  g_ND = jnp.stack([G_D, G_D])
  assert _c(C.goal_energy('l2sq', 'sum'), z=z_TND, g=g_ND) == pytest.approx(18.0)
  assert _c(C.goal_energy('l2sq', 'sum', average=True), z=z_TND, g=g_ND) == pytest.approx(4.5)


def test_quadratic_goal_cost_values():
  Q = jnp.diag(jnp.array([1.0, 3.0]))
  assert _c(C.quadratic_goal_cost(Q)) == pytest.approx(3.0 + 16.0)
  assert _c(C.quadratic_goal_cost(Q, reduction='final')) == pytest.approx(16.0)
  assert _c(C.quadratic_goal_cost(Q, discount=0.5)) == pytest.approx(3.0 + 8.0)


def test_action_costs_values():
  assert _c(C.action_energy()) == pytest.approx(5.5)
  assert _c(C.action_energy(jnp.diag(jnp.array([2.0, 1.0])))) == pytest.approx(6.75)
  assert _c(C.action_energy(jnp.array([[1.0, 0.5], [0.5, 1.0]]))) == pytest.approx(3.0 + 0.75)
  assert _c(C.action_bound_penalty(-1.0, 1.0)) == pytest.approx(1.0)  # a=-2 exceeds -1 by 1
  assert _c(C.action_bound_penalty(jnp.array([-1.0, -3.0]), jnp.array([0.5, 1.0]))) == pytest.approx(0.25)
  assert _c(C.action_bound_penalty(-2.0, 1.0)) == 0.0
  assert _c(C.smoothness_penalty()) == pytest.approx(0.25 + 6.25)


def test_keep_out_values_skip_z0():
  # z0 = (0, 0) is inside this ball but is not controllable, so it must not count.
  expected = (2.0 - np.sqrt(1.0 + 1.5 ** 2)) ** 2  # only z1 is inside
  assert _c(C.keep_out(C.ball_penalty(jnp.array([0.0, 0.5]), 2.0))) == pytest.approx(expected, rel=1e-5)
  # z1 = (1, 2) inside [0.5, 2] x [1.5, 4]: nearest faces at distance 0.5.
  assert _c(C.keep_out(C.box_penalty(jnp.array([0.5, 1.5]), jnp.array([2.0, 4.0])))) == pytest.approx(0.25)
  # Region defined on a projection of the latent (first coordinate only): z2[0] = 3 at the centre.
  cost = C.keep_out(C.ball_penalty(jnp.array([3.0]), 1.0), project=lambda z: z[:1])
  assert _c(cost) == pytest.approx(1.0, rel=1e-5)


def test_penalties_have_finite_gradients_at_singular_points():
  z = jnp.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])  # at the goal and at the ball centre
  for cost in (C.goal_energy('l2', 'sum'), C.keep_out(C.ball_penalty(G_D, 1.0))):
    g = jax.grad(cost)(z, A_HA, G_D)
    assert np.all(np.isfinite(g))


def test_weighted_sum_values_and_errors():
  cost = C.weighted_sum([(2.0, C.goal_energy('l2sq')), (0.5, C.smoothness_penalty())])
  assert _c(cost) == pytest.approx(2.0 * 8.0 + 0.5 * 6.5)
  with pytest.raises(ValueError, match='at least one'):
    C.weighted_sum([])
  with pytest.raises(ValueError, match='term 0'):
    C.weighted_sum([C.smoothness_penalty()])


def test_cost_config_errors_name_the_field():
  with pytest.raises(ValueError, match='metric'):
    C.goal_energy(metric='l3')
  with pytest.raises(ValueError, match='discount'):
    C.goal_energy(reduction='final', discount=0.9)
  with pytest.raises(ValueError, match='reduction'):
    C.quadratic_goal_cost(jnp.eye(2), reduction='mean')


def test_unroll_matches_python_loop_and_supports_pytrees():
  A = jnp.array([[0.9, 0.2], [-0.1, 1.0]])
  Bm = jnp.array([[1.0], [0.5]])
  step = lambda p, z, a: p[0] @ z + p[1] @ a
  acts = jnp.array([[1.0], [-2.0], [0.5]])
  z, expected = jnp.array([1.0, -1.0]), [jnp.array([1.0, -1.0])]
  for a in acts:
    z = A @ z + Bm @ a
    expected.append(z)
  np.testing.assert_allclose(unroll(step, (A, Bm), expected[0], acts), jnp.stack(expected), rtol=1e-6)
  # pytree latent: (position, step counter)
  tree_step = lambda p, z, a: {'x': p[0] @ z['x'] + p[1] @ a, 'n': z['n'] + 1}
  traj = unroll(tree_step, (A, Bm), {'x': expected[0], 'n': jnp.int32(0)}, acts)
  np.testing.assert_array_equal(traj['n'], [0, 1, 2, 3])
  np.testing.assert_allclose(traj['x'], jnp.stack(expected), rtol=1e-6)
  total = trajectory_cost(step, C.goal_energy('l2sq'), (A, Bm), expected[0], jnp.zeros(2), acts)
  assert float(total) == pytest.approx(float(jnp.sum(expected[-1] ** 2)), rel=1e-6)


def test_shift_plan_semantics():
  plan = jnp.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
  np.testing.assert_array_equal(shift_plan(plan, 1), [[2, 20], [3, 30], [3, 30]])
  np.testing.assert_array_equal(shift_plan(plan, 2, fill='zeros'), [[3, 30], [0, 0], [0, 0]])
  np.testing.assert_array_equal(shift_plan(plan, 0), plan)
  np.testing.assert_array_equal(shift_plan(plan, 5), [[3, 30]] * 3)
  np.testing.assert_array_equal(jax.jit(shift_plan, static_argnums=1)(plan, 1), shift_plan(plan, 1))
  with pytest.raises(ValueError, match='fill'):
    shift_plan(plan, 1, fill='mean')
