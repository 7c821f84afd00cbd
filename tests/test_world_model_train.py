"""World-model train step (trace once, jit == eager), configs, protocol, debug runs end to end."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import world_model as wm_configs
from jepa_jax.eval import rollout_probe
from jepa_jax.train import world_model as wmt
from jepa_jax.world_model import WorldModel, load_world_model


def _cfg(preset="debug", **loss):
  c = wm_configs.get_config(preset)
  c.loss.update(loss)
  return c


@pytest.fixture(scope="module")
def batches():
  c = _cfg()
  data = wmt.train_walks(c, 2 * c.batch_size, c.data.num_frames)
  split = lambda i: {k: data[k][i * c.batch_size:(i + 1) * c.batch_size]
                     for k in ("obs", "act", "state")}
  return split(0), split(1)


@pytest.mark.parametrize("recipe_loss", [
    {},                                               # pldm
    dict(var=0.0, cov=0.0, sigreg=0.1),               # sigreg
    dict(teacher_forcing=1.0, rollout_steps=2),
])
def test_train_step_traces_once(batches, recipe_loss):
  chex.clear_trace_counter()  # counters are per code object, shared by the parametrized cases
  c = _cfg(**recipe_loss)
  models = wmt.make_models(c)
  state = wmt.init_state(models, c, jax.random.key(0))
  step = jax.jit(chex.assert_max_traces(wmt.make_train_step(models, c), n=1))
  losses = []
  for i in range(3):
    state, metrics = step(state, batches[i % 2])
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 3
  assert all(np.isfinite(losses))
  for k in ("rollout", "idm", "smooth", "z/effective_rank", "grad_norm"):
    assert k in metrics
  assert ("sigreg" in metrics) == bool(recipe_loss.get("sigreg"))


def test_train_step_jit_matches_eager(batches):
  """Loss and gradients, jitted vs op-by-op. (Compared before Adam: conv biases in front of a
  GroupNorm have exactly-zero true gradients, so their rounding noise becomes lr-sized updates.)"""
  c = _cfg()
  models = wmt.make_models(c)
  state = wmt.init_state(models, c, jax.random.key(0))
  key = jax.random.key(5)
  fn = jax.value_and_grad(
      lambda p: wmt.world_model_losses(models, c, p, state.target_params, batches[0], key)[0])
  loss_jit, g_jit = jax.jit(fn)(state.params)
  with jax.disable_jit():
    loss_eager, g_eager = fn(state.params)
  np.testing.assert_allclose(loss_jit, loss_eager, rtol=1e-5)
  chex.assert_trees_all_close(g_jit, g_eager, rtol=1e-3, atol=1e-5)
  _, m_jit = jax.jit(wmt.make_train_step(models, c))(state, batches[0])
  with jax.disable_jit():
    _, m_eager = wmt.make_train_step(models, c)(state, batches[0])
  np.testing.assert_allclose(m_jit["loss"], m_eager["loss"], rtol=1e-5)


@pytest.mark.parametrize("key,value,match", [
    ("recipe", "dreamer", "config.recipe"),
    ("model.predictor.stride", 3, "stride"),
    ("loss.rollout_steps", 9, "rollout_steps"),
    ("data.source", "web", "data.source"),
    ("model.predictor.kind", "lstm", "model.predictor.kind"),
])
def test_bad_config_values_name_the_key(key, value, match):
  c = _cfg()
  node = c
  *path, last = key.split(".")
  for p in path:
    node = node[p]
  node[last] = value
  with pytest.raises(ValueError, match=match):
    wmt.validate(c)
    wmt.make_models(c)


def test_two_stage_requires_encoder_workdir():
  c = _cfg()
  c.recipe = "two_stage"
  with pytest.raises(ValueError, match="two_stage.encoder_workdir"):
    wmt.validate(c)


def test_protocol_shapes_jit_and_vmap():
  c = _cfg()
  models = wmt.make_models(c)
  params = wmt.init_params(models, c, jax.random.key(0))
  wm = WorldModel(models.encoder, models.predictor, models.stride)
  obs = wmt.train_walks(c, 3, 4)["obs"]
  z0 = jax.jit(wm.encode)(params, obs[0, 0])
  chex.assert_shape(z0, (16, 4))                    # 4x4 grid x out_dim 4 (debug)
  float_obs = obs[0, 0].astype(np.float32) / 255.0  # env.render() output is accepted too
  np.testing.assert_allclose(wm.encode(params, float_obs), z0, rtol=1e-5, atol=1e-5)
  z1 = jax.jit(wm.step)(params, z0, jnp.array([1.0, 0.0]))
  chex.assert_shape(z1, z0.shape)
  zb = jax.vmap(wm.step, in_axes=(None, 0, 0))(params, jnp.stack([z0, z0]), jnp.ones((2, 2)))
  chex.assert_shape(zb, (2, 16, 4))
  zs = jax.jit(wm.rollout)(params, z0, jnp.ones((5, 2)))
  chex.assert_shape(zs, (5, 16, 4))
  # The planners' unroll (lax.scan over wm.step) agrees with wm.rollout.
  from jepa_jax.planning import unroll
  np.testing.assert_allclose(unroll(wm.step, params, z0, jnp.ones((5, 2)))[1:], zs,
                             rtol=1e-5, atol=1e-5)


def test_debug_experiment_end_to_end_then_two_stage(tmp_path):
  """debug preset through loop.train (checkpoints, metrics, curves) + rollout probe; then the
  two-stage recipe on its frozen encoder; then load_world_model on both."""
  from experiments import world_model as exp
  from jepa_jax.train import loop
  from jepa_jax.world_model import params_from_state
  workdir = str(tmp_path / "pldm")
  c = _cfg()
  task, models = wmt.make_task(c)
  result = loop.train(task, c, workdir, progress=False)
  assert result.step == c.total_steps
  for f in ("metrics.jsonl", "curves.png"):
    assert os.path.exists(os.path.join(workdir, f)), f
  r = exp.run_probe(c, models, jax.device_get(params_from_state(result.state)), workdir)
  assert len(r["err_px"]) == c.probe.horizon and np.all(np.isfinite(r["err_px"]))
  assert os.path.exists(os.path.join(workdir, "rollout_probe.png"))
  saved = json.load(open(os.path.join(workdir, "rollout_probe.json")))
  assert saved["recipe"] == "pldm"
  assert 0.0 <= saved["wall_push"]["left_to_right"]["tunnel_frac"] <= 1.0

  wm, params = load_world_model(workdir)
  obs = wmt.held_out_walks(c, 1, 2)["obs"][0, 0]
  np.testing.assert_allclose(wm.encode(params, obs),
                             wm.encode(jax.device_get(params_from_state(result.state)), obs),
                             rtol=1e-6)

  c2 = _cfg()
  c2.recipe = "two_stage"
  c2.two_stage.encoder_workdir = workdir
  c2.model.predictor.update(kind="transformer")
  c2.loss.update(teacher_forcing=1.0, rollout_steps=2, kind="l1")
  c2.total_steps = 3
  task2, _ = wmt.make_task(c2)
  loop.train(task2, c2, str(tmp_path / "two_stage"), progress=False)
  wm2, params2 = load_world_model(str(tmp_path / "two_stage"))
  chex.assert_trees_all_close(params2["encoder"], params["encoder"])  # frozen
  chex.assert_shape(wm2.rollout(params2, wm2.encode(params2, obs), jnp.ones((3, 2))),
                    (3, 16, 4))


def test_rollout_probe_on_analytic_latents():
  """The evaluation itself: a 'world model' whose latent is the dot's centroid and whose dynamics
  is free-space motion (walls ignored) must score ~0 on real frames and beat no-motion."""
  c = _cfg()
  data = wmt.held_out_walks(c, 32, 5)

  class _Centroid:
    def apply(self, params, x):
      w = x[..., 0].astype(jnp.float32)
      ys, xs = jnp.meshgrid(jnp.arange(64) + 0.5, jnp.arange(64) + 0.5, indexing="ij")
      tot = w.sum((1, 2))
      xy = jnp.stack([(w * xs).sum((1, 2)) / tot, (w * ys).sum((1, 2)) / tot], -1)
      return (xy[:, None] - 32.0) / 16.0  # px -> O(1) latent

  class _FreeMotion(WorldModel):
    def rollout(self, params, z0_ND, actions_HA):
      return z0_ND[:, None] + jnp.cumsum(actions_HA, 1)[:, :, None] / 16.0

  wm = _FreeMotion(_Centroid(), None, 1)
  c.probe.update(hidden=(), steps=1500, lr=3e-2)  # a linear probe recovers (x, y) ...
  c.probe.layer_norm = False                       # ... unless a 2-D input is layer-normed
  r = rollout_probe.evaluate(wm, {"encoder": None}, data, data, c.probe)
  assert r["enc_err_px"] < 1.0
  assert r["err_px"][-1] < 0.5 * r["static_err_px"][-1]


class _AnalyticWM:
  """The analytic stand-in (eval/analytic_world_model) behind the WorldModel protocol: one token
  z = (x, y, wall_x, door_y) read from the image, moved with the env's wall stopping (or not)."""
  stride = 1

  def __init__(self, env_cfg, walls: bool):
    from jepa_jax.eval import analytic_world_model as awm
    self._params, self._encode = awm.init_params(walls=walls), awm.encode
    self._step = awm.make_step(env_cfg)

  def encode(self, params, obs):
    z = jax.vmap(lambda o: self._encode(self._params, o))(obs.reshape(-1, *obs.shape[-3:]))
    return z.reshape(*obs.shape[:-3], 1, 4)

  def rollout(self, params, z0_BND, actions_BHA):
    def one(z_ND, a_HA):
      body = lambda z, a: (self._step(self._params, z, a),) * 2
      return jax.lax.scan(body, z_ND[0], a_HA)[1][:, None]
    return jax.vmap(one)(z0_BND, actions_BHA)


def test_wall_push_check_on_the_analytic_model():
  """The analytic model stops at the wall like the env (nothing tunnels, final x exact); its
  free-space variant (walls ignored) tunnels every time."""
  from jepa_jax.envs import two_rooms
  env = two_rooms.TwoRoomsConfig(fixed_layout=False)
  probe = lambda z_MKD: z_MKD[:, 0, :2]  # the analytic latent is the position
  r = rollout_probe.wall_push_check(_AnalyticWM(env, walls=True), None, probe, env, num=64)
  for d in ("left_to_right", "right_to_left"):
    assert r[d]["tunnel_frac"] == 0.0
    assert r[d]["final_x_err_px"] < 0.05
    assert abs(r[d]["true_final_x_rel_face_px"]) < 1e-4  # 32 x 1.5 px: every agent at the face
  free = rollout_probe.wall_push_check(_AnalyticWM(env, walls=False), None, probe, env, num=64)
  for d in ("left_to_right", "right_to_left"):
    assert free[d]["tunnel_frac"] == 1.0 and free[d]["final_x_err_px"] > 10.0
  assert "tunnelled 0%" in rollout_probe.wall_push_summary("analytic", r)
