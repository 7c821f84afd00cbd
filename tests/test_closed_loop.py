"""Closed-loop MPC: one trace, vmap == loop, the planner only ever sees encoded renders."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import planning as P
from jepa_jax.envs import two_rooms as tr
from jepa_jax.eval import analytic_world_model as awm
from jepa_jax.eval import planning_tasks as T
from jepa_jax.planning.closed_loop import (ClosedLoopConfig, clip_norm, make_closed_loop,
                                           planning_step)

ENV = tr.TwoRoomsConfig(size=32, border=3, wall_padding=10, door_padding=3, door_half_height=3)
CL = ClosedLoopConfig(episode_steps=8, replan_every=2, horizon=3, action_repeat=2, action_max_norm=1.8)
PARAMS = awm.init_params()
ENV_STEP = lambda s, a: tr.step(s, a, ENV)
OBSERVE = lambda s: tr.render(s, ENV)


def cem_loop(encode=awm.encode):
  cost = P.goal_energy('l2', 'sum')
  cfg = P.CEMConfig(horizon=CL.horizon, population=8, elites=2, iterations=2, init_std=1.0,
                    action_low=-1.8, action_high=1.8)
  plan = P.make_cem_planner(planning_step(awm.make_step(ENV), CL), cost, cfg)
  return make_closed_loop(encode, plan, ENV_STEP, OBSERVE, CL)


RUN = jax.jit(cem_loop())  # compiled once, shared by the tests below
TASKS = T.sample_tasks(jax.random.key(3), 3, ENV, margin=1.0)
KEYS = jax.random.split(jax.random.key(4), 3)
task = lambda i: jax.tree.map(lambda x: x[i], TASKS)


def test_episode_shapes_and_env_consistency():
  ep = RUN(PARAMS, KEYS[0], task(0).state0, task(0).goal_obs)
  T_ = CL.episode_steps
  assert ep.states.pos.shape == (T_ + 1, 2) and ep.actions_TA.shape == (T_, 2)
  assert ep.plan_cost_R.shape == (CL.num_replans,) and ep.z_R.shape == (CL.num_replans, 4)
  # Replaying the executed actions in the environment reproduces the trajectory.
  s, pos = task(0).state0, [task(0).state0.pos]
  for a in ep.actions_TA:
    s = ENV_STEP(s, a)
    pos.append(s.pos)
  np.testing.assert_allclose(np.stack(pos), ep.states.pos, atol=1e-5)
  # Actions come in held pairs (action_repeat=2) and respect the norm clip.
  np.testing.assert_array_equal(ep.actions_TA[0::2], ep.actions_TA[1::2])
  assert np.all(np.linalg.norm(ep.actions_TA, axis=-1) <= 1.8 + 1e-5)


def test_closed_loop_traces_once():
  run = cem_loop()
  run.__name__ = 'closed_loop_run'
  f = jax.jit(chex.assert_max_traces(run, n=1))
  for i in range(3):  # new tasks and keys, same shapes: no retrace
    f(PARAMS, KEYS[i], task(i).state0, task(i).goal_obs)


def test_vmapped_episodes_equal_looped_episodes():
  run = RUN
  batched = jax.jit(jax.vmap(cem_loop(), in_axes=(None, 0, 0, 0)))(PARAMS, KEYS, TASKS.state0,
                                                                  TASKS.goal_obs)
  for i in range(3):
    one = run(PARAMS, KEYS[i], task(i).state0, task(i).goal_obs)
    np.testing.assert_allclose(batched.states.pos[i], one.states.pos, atol=1e-4)
    np.testing.assert_allclose(batched.actions_TA[i], one.actions_TA, atol=1e-4)


def test_planner_input_is_the_encoded_render():
  """Structural check: the z the planner received at each replan is encode(render(state)) of the
  state at that replan, and the goal latent is encode(goal image)."""
  ep = RUN(PARAMS, KEYS[1], task(1).state0, task(1).goal_obs)
  block_starts = jax.tree.map(lambda x: x[:-1:CL.steps_per_block], ep.states)
  expect = jax.vmap(lambda s: awm.encode(PARAMS, OBSERVE(s)))(block_starts)
  np.testing.assert_allclose(ep.z_R, expect, atol=1e-5)
  np.testing.assert_allclose(ep.z_goal, awm.encode(PARAMS, task(1).goal_obs), atol=1e-5)


def test_blind_encoder_makes_a_blind_planner():
  """If the encoder ignores the image, the plan cannot depend on where the agent truly is: the
  loop hands the planner nothing else (no position, no layout)."""
  blind = lambda params, obs: jnp.zeros(4) + 0.0 * jnp.sum(obs)
  run = jax.jit(cem_loop(encode=blind))
  a = run(PARAMS, KEYS[0], task(0).state0, task(0).goal_obs)
  b = run(PARAMS, KEYS[0], task(1).state0, task(2).goal_obs)  # other start, goal and layout
  np.testing.assert_array_equal(a.actions_TA, b.actions_TA)


def test_clip_norm_has_finite_gradient_at_zero():
  g = jax.grad(lambda a: jnp.sum(clip_norm(a, 1.0)))(jnp.zeros(2))
  assert np.all(np.isfinite(g))
  np.testing.assert_allclose(clip_norm(jnp.array([3.0, 4.0]), 1.0), [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize('kw, key', [
    (dict(replan_every=5, horizon=4), 'replan_every'),
    (dict(episode_steps=10, replan_every=3), 'episode_steps'),
    (dict(action_repeat=0), 'action_repeat'),
    (dict(action_max_norm=0.0), 'action_max_norm'),
])
def test_config_errors_name_the_key(kw, key):
  with pytest.raises(ValueError, match=key):
    ClosedLoopConfig(**kw)


@pytest.mark.parametrize('cold_cost, later', [(0.1, 0.5), (0.9, -0.5)])
def test_cold_restart_keeps_the_cheaper_of_warm_and_cold_plans(cold_cost, later):
  # Stub planner: from an all-zero plan it returns +0.5 actions at cost `cold_cost`; from any other
  # (warm) plan it returns -0.5 actions at cost 0.5. Block 0 starts from zeros either way.
  def plan(params, z0, z_goal, key, init_HA):
    zero = jnp.all(init_HA == 0)
    return (jnp.where(zero, 0.5, -0.5) * jnp.ones_like(init_HA),
            dict(cost=jnp.where(zero, cold_cost, 0.5)))

  def run(cold):
    cl = ClosedLoopConfig(episode_steps=8, replan_every=1, horizon=2, action_repeat=2,
                          action_max_norm=1.8, cold_restart=cold)
    loop = jax.jit(make_closed_loop(awm.encode, plan, ENV_STEP, OBSERVE, cl))
    return loop(PARAMS, KEYS[0], task(0).state0, task(0).goal_obs)

  warm, cold = run(False), run(True)
  np.testing.assert_allclose(warm.actions_TA[2:], -0.5)  # warm start only: the shifted plan wins
  np.testing.assert_allclose(warm.plan_cost_R[1:], 0.5)
  np.testing.assert_allclose(cold.actions_TA[:2], 0.5)
  np.testing.assert_allclose(cold.actions_TA[2:], later)  # the cheaper of the two searches
  np.testing.assert_allclose(cold.plan_cost_R[1:], min(cold_cost, 0.5))
