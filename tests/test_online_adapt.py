"""Online adaptation of the world model: the transition buffer, the error and the update by hand,
the closed loop's per-episode parameters, and the evaluation's wiring of `adapt`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import plan as plan_config
from jepa_jax.eval import planning_eval as PE
from jepa_jax.eval.world_models import WorldModel, load_world_model
from jepa_jax.planning import online_adapt as OA
from jepa_jax.planning.closed_loop import ClosedLoopConfig, make_closed_loop


def gain_step(params, z, a_A):
  """A model that believes an action moves the point by gain * action."""
  return z + params['predictor']['gain'] * a_A


def params_with_gain(gain):
  return {'encoder': {'scale': jnp.float32(7.0)}, 'predictor': {'gain': jnp.float32(gain)}}


def test_record_fills_a_ring_oldest_first_and_marks_written_slots():
  buf = OA.empty_transitions(jnp.zeros(2), 3, jnp.zeros((1, 2)))
  np.testing.assert_array_equal(buf.valid_M, 0.0)
  for i in range(5):
    buf = OA.record(buf, jnp.full((2,), float(i)), jnp.full((1, 2), -float(i)),
                    jnp.full((2,), 10.0 + i), i, valid=float(i != 4))
  np.testing.assert_array_equal(buf.starts[:, 0], [3.0, 4.0, 2.0])  # slots 0 and 1 overwritten
  np.testing.assert_array_equal(buf.actions_MKA[:, 0, 0], [-3.0, -4.0, -2.0])
  np.testing.assert_array_equal(buf.ends[:, 0], [13.0, 14.0, 12.0])
  np.testing.assert_array_equal(buf.valid_M, [1.0, 0.0, 1.0])
  with pytest.raises(ValueError, match='slots'):
    OA.empty_transitions(jnp.zeros(2), 0, jnp.zeros((1, 2)))


def test_transition_error_by_hand_counts_only_written_slots():
  buf = OA.empty_transitions(jnp.zeros(2), 4, jnp.zeros((2, 2)))
  acts = jnp.array([[1.0, 0.0], [1.0, 2.0]])  # two plan actions per block: the model sums them
  buf = OA.record(buf, jnp.zeros(2), acts, jnp.array([1.0, 1.0]), 0)
  buf = OA.record(buf, jnp.ones(2), -acts, jnp.array([1.0, 1.0]), 1)
  got = OA.transition_error(gain_step, params_with_gain(0.5), buf)
  pred0, pred1 = 0.5 * acts.sum(0), 1.0 - 0.5 * acts.sum(0)  # (1, 1) and (0, 0)
  want = 0.5 * (np.mean(np.square(pred0 - 1.0)) + np.mean(np.square(pred1 - 1.0)))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  empty = OA.empty_transitions(jnp.zeros(2), 4, jnp.zeros((2, 2)))
  assert float(OA.transition_error(gain_step, params_with_gain(0.5), empty)) == 0.0


@pytest.mark.parametrize('jit', [True, False])
def test_adapter_takes_clipped_steps_on_the_predictor_only(jit):
  buf = OA.empty_transitions(jnp.zeros(1), 2, jnp.zeros((1, 1)))
  buf = OA.record(buf, jnp.zeros(1), jnp.ones((1, 1)), jnp.ones(1), 0)  # the world's gain is 1
  trained = params_with_gain(0.25)
  # d/dg (g - 1)^2 = 2 (g - 1) = -1.5: one unclipped step of 0.1 -> 0.4
  step_once = OA.make_adapter(gain_step, OA.AdaptConfig(steps=1, learning_rate=0.1, clip=10.0))
  got = (jax.jit(step_once) if jit else step_once)(trained, trained, buf)
  np.testing.assert_allclose(got['predictor']['gain'], 0.25 + 0.1 * 1.5, rtol=1e-6)
  assert float(got['encoder']['scale']) == 7.0  # the encoder never adapts
  # clip 0.5: the step is 0.1 * 0.5 in the gradient's direction
  clipped = OA.make_adapter(gain_step, OA.AdaptConfig(steps=1, learning_rate=0.1, clip=0.5))
  np.testing.assert_allclose(clipped(trained, trained, buf)['predictor']['gain'], 0.30, rtol=1e-6)
  # many steps converge on the world's gain; a strong anchor holds the trained one
  many = OA.make_adapter(gain_step, OA.AdaptConfig(steps=200, learning_rate=0.1))
  np.testing.assert_allclose(many(trained, trained, buf)['predictor']['gain'], 1.0, atol=1e-3)
  held = OA.make_adapter(gain_step, OA.AdaptConfig(steps=200, learning_rate=0.01, anchor=10.0))
  # minimiser of (g - 1)^2 + 10 (g - 0.25)^2
  np.testing.assert_allclose(held(trained, trained, buf)['predictor']['gain'],
                             (1.0 + 10 * 0.25) / 11, atol=1e-3)


def test_adapter_config_and_params_errors_name_the_key():
  for kw, key in [(dict(steps=-1), 'steps'), (dict(learning_rate=0.0), 'learning_rate'),
                  (dict(clip=-1.0), 'clip'), (dict(anchor=-0.5), 'anchor')]:
    with pytest.raises(ValueError, match=f'AdaptConfig.{key}'):
      OA.AdaptConfig(**kw)
  adapt = OA.make_adapter(gain_step, OA.AdaptConfig(steps=1, params_key='dynamics'))
  buf = OA.empty_transitions(jnp.zeros(1), 2, jnp.zeros((1, 1)))
  with pytest.raises(ValueError, match='adapt.params_key'):
    adapt(params_with_gain(1.0), params_with_gain(1.0), buf)


CL = ClosedLoopConfig(episode_steps=6, replan_every=1, horizon=2, action_dim=1, adapt_slots=6)


def gain_drift_step(params, z, a_A):
  """gain_step plus a drift that does not depend on the action."""
  return gain_step(params, z, a_A) + params['predictor']['drift']


def run_gain_episodes(world_gains, adapt_steps, goal=0.0, learning_rate=0.2, anchor=0.0):
  """Toy world: the state is (position, the world's gain); the point moves gain * action. A
  'planner' that always moves +1 and reports the move its model now predicts for that. The
  model may also drift (trained drift 0; the world has none)."""
  def plan(params, z0, goal, key, init_plan_HA):
    del goal, key
    return (jnp.ones_like(init_plan_HA),
            dict(cost=jnp.sum(gain_drift_step(params, z0, jnp.ones_like(z0)) - z0)))

  env_step = lambda s, a: (s[0] + s[1] * a, s[1])
  adapt = OA.make_adapter(gain_drift_step, OA.AdaptConfig(
      steps=adapt_steps, learning_rate=learning_rate, anchor=anchor))
  cl = CL if adapt_steps else ClosedLoopConfig(episode_steps=6, replan_every=1, horizon=2,
                                                action_dim=1)
  run = make_closed_loop(lambda p, obs: obs, plan, env_step, lambda s: s[0], cl,
                         predict=gain_drift_step, adapt=adapt if adapt_steps else None)
  n = len(world_gains)
  state0 = (jnp.zeros((n, 1)), jnp.asarray(world_gains, jnp.float32)[:, None])
  trained = params_with_gain(0.25)
  trained['predictor']['drift'] = jnp.float32(0.0)
  return jax.jit(jax.vmap(run, in_axes=(None, 0, 0, 0)))(
      trained, jax.random.split(jax.random.key(0), n), state0, jnp.full((n, 1), goal))


def test_each_episode_adapts_its_own_model_to_what_it_observed():
  ep = run_gain_episodes([1.0, 2.0], adapt_steps=3)
  predicted = np.asarray(ep.plan_cost_R)  # (episodes, replans): the model's move for action +1
  np.testing.assert_allclose(predicted[:, 0], 0.25)  # nothing observed before the first block
  for e, gain in enumerate([1.0, 2.0]):
    err = np.abs(predicted[e] - gain)
    assert np.all(np.diff(err) <= 1e-6), (e, predicted[e])  # never farther from its own world
    assert err[-1] < 0.1 * err[0]
  still = run_gain_episodes([1.0, 2.0], adapt_steps=0)
  np.testing.assert_allclose(still.plan_cost_R, 0.25)  # off: the trained model throughout
  # the world itself never depended on the model here: same trajectory either way
  np.testing.assert_allclose(ep.states[0], still.states[0])


def test_the_stand_in_before_the_first_block_is_never_learned_from():
  """Before block 0 there is no executed block; the loop writes a stand-in (the goal's latent,
  zero actions) marked invalid. Were it learned from, the model's drift would be pulled towards
  the goal, and the adapted model would depend on where the goal is."""
  near = run_gain_episodes([1.0], adapt_steps=3, goal=0.0)
  far = run_gain_episodes([1.0], adapt_steps=3, goal=50.0)
  np.testing.assert_allclose(near.plan_cost_R, far.plan_cost_R, rtol=1e-6)


def test_the_anchor_pulls_back_to_the_trained_params_not_the_last_ones():
  free = run_gain_episodes([1.0], adapt_steps=3, learning_rate=0.05)
  held = run_gain_episodes([1.0], adapt_steps=3, learning_rate=0.05, anchor=10.0)
  assert float(free.plan_cost_R[0, -1]) > 0.6  # unanchored, it heads for the world's gain 1
  # anchored to the trained gain 0.25 (and drift 0), the predicted move stays near the minimiser
  # of the error and the pull; anchoring to the last params instead would not hold it
  assert float(held.plan_cost_R[0, -1]) < 0.45


def test_closed_loop_needs_predict_and_adapt_for_adaptation():
  with pytest.raises(ValueError, match='adapt='):
    make_closed_loop(lambda p, o: o, None, None, None, CL, predict=gain_step)
  with pytest.raises(ValueError, match='predict='):
    make_closed_loop(lambda p, o: o, None, None, None, CL, adapt=lambda *a: a[1])
  no_slots = ClosedLoopConfig(episode_steps=6, replan_every=1, horizon=2, action_dim=1)
  with pytest.raises(ValueError, match='adapt_slots is 0'):
    make_closed_loop(lambda p, o: o, None, None, None, no_slots, predict=gain_step,
                     adapt=lambda *a: a[1])
  with pytest.raises(ValueError, match='adapt_slots'):
    ClosedLoopConfig(adapt_slots=-1)


def debug_cfg(**adapt):
  cfg = plan_config.get_config('debug')
  cfg.adapt.update(adapt)
  return cfg


def test_adapt_off_by_default_and_slots_follow_the_config():
  assert PE.adapt_config(debug_cfg()) is None
  assert PE.control_config(debug_cfg()).adapt_slots == 0
  assert PE.adapt_config(plan_config.get_config('cpu_learned')) is None
  cl = PE.control_config(debug_cfg(steps=2))
  assert cl.adapt_slots == cl.num_replans  # slots 0: every block of the episode
  assert PE.control_config(debug_cfg(steps=2, slots=3)).adapt_slots == 3
  assert PE.adapt_config(debug_cfg(steps=2, learning_rate=0.5)).learning_rate == 0.5


def test_adapt_config_errors_name_the_key():
  cfg = debug_cfg(steps=2)
  cfg.adapt.unlock()
  cfg.adapt.rate = 0.1
  with pytest.raises(ValueError, match=r"adapt: unknown keys \['rate'\]"):
    PE.adapt_config(cfg)
  with pytest.raises(ValueError, match='adapt.slots'):
    PE.adapt_config(debug_cfg(steps=2, slots=-1))
  cfg = debug_cfg()  # a mistyped key is refused even with adaptation off
  cfg.adapt.unlock()
  cfg.adapt.step = 2
  with pytest.raises(ValueError, match=r"adapt: unknown keys \['step'\]"):
    PE.adapt_config(cfg)
  cfg = debug_cfg(steps=2)  # the debug preset plans on the analytic model: nothing to adapt
  wm = load_world_model(cfg.world_model, PE.env_config(cfg, 'fixed'))
  with pytest.raises(ValueError, match='adapt.steps'):
    PE.build(cfg, wm, 'mppi', 'fixed')


def test_evaluation_runs_with_adaptation_on_a_learned_style_model():
  """A stand-in 'learned' model (its params have a predictor entry) through the evaluation."""
  cfg = debug_cfg(steps=1, learning_rate=0.05)
  cfg.cost.blocked.weight = 2.0  # with the memory as well, as the learned preset plans
  cfg.episodes, cfg.chunk = 2, 2
  from jepa_jax.eval import analytic_world_model as awm
  env_cfg = PE.env_config(cfg, 'fixed')
  analytic = awm.make_step(env_cfg)
  # the analytic model with a learnable action gain: the world's is 1
  step = lambda p, z, a: analytic(p['encoder'], z, p['predictor']['gain'] * a)
  wm = WorldModel('learned', lambda p, obs: awm.encode(p['encoder'], obs), step,
                  {'encoder': awm.init_params(), 'predictor': {'gain': jnp.float32(0.5)}})
  _, _, _, cl = PE.build(cfg, wm, 'mppi', 'fixed')
  assert cl.adapt_slots == cl.num_replans and cl.move_memory == cl.num_replans
  res = PE.evaluate(cfg, wm, 'mppi', 'fixed', progress=False)
  assert res.pos_NT2.shape == (2, cfg.control.episode_steps + 1, 2)
  assert np.all(np.isfinite(res.plan_cost_NR))
