"""Frame-level video JEPA (nn/frame_jepa.py, train/frame_jepa.py): shapes, stop-gradient, EMA
inside the step, one trace, the surprise window error against a hand computation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jepa_jax import losses
from jepa_jax.data import physics as ph
from jepa_jax.train import frame_jepa as fj

K, D, FRAME = 2, 4, (32, 32, 3)


@pytest.fixture(scope="module")
def model_params():
  model = fj.make_model(context=K, width=8, dim=D)
  return model, fj.init_params(model, FRAME, seed=0)


def _clips(b, t, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (b, t, *FRAME), dtype=np.uint8)


def test_shapes_and_target_copy(model_params):
  model, params = model_params
  z = model.encode(params["encoder"], _clips(3, 5))
  chex.assert_shape(z, (3, 5, 8, 8, D))  # 4-px token grid
  chex.assert_shape(model.predict(params["predictor"], z[:, :K]), (3, 1, 8, 8, D))
  chex.assert_trees_all_equal(params["encoder"], params["target_encoder"])


def test_target_encoder_gets_no_gradient(model_params):
  model, params = model_params
  grads = jax.grad(lambda p: fj.loss_fn(model, p, _clips(4, K + 1), 1.0, 0.04)[0])(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["target_encoder"]))
  assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads["encoder"]))


def test_step_updates_target_by_ema_and_traces_once(model_params):
  model, params = model_params
  tx = optax.adam(1e-3)
  online = {k: params[k] for k in ("encoder", "predictor")}
  ema = 0.9
  step = jax.jit(chex.assert_max_traces(fj.make_train_step(model, tx, ema, 1.0, 0.04), n=1))
  new, opt_state, loss, metrics = step(params, tx.init(online), _clips(4, K + 1, 1))
  expected = jax.tree.map(lambda t, o: ema * t + (1 - ema) * o, params["target_encoder"],
                          new["encoder"])
  chex.assert_trees_all_close(new["target_encoder"], expected, rtol=1e-6, atol=1e-7)
  assert not np.allclose(new["encoder"]["head"]["kernel"], params["encoder"]["head"]["kernel"])
  assert set(metrics) == {"pred_loss", "var_loss", "cov_loss", "latent_std"}
  assert np.isfinite(float(loss))
  step(new, opt_state, _clips(4, K + 1, 2))  # same shapes: no retrace


class WindowErrorTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_against_hand_rollout(self):
    model = fj.make_model(context=K, width=8, dim=D, input_norm=True)
    params = fj.init_params(model, FRAME, seed=3)
    params["target_encoder"] = fj.init_params(model, FRAME, seed=4)["encoder"]  # differ
    clips = _clips(2, 5, 7)
    err = self.variant(fj.window_error_fn(model), static_argnums=2)(params, clips, 3)
    # By hand: context frames 1..2 (the last K of 3), predict frames 3 and 4, feeding back.
    z = losses.layer_norm_no_affine(model.encode(params["encoder"], clips[:, 1:3]))
    tgt = losses.layer_norm_no_affine(model.encode(params["target_encoder"], clips[:, 3:]))
    p3 = model.predict(params["predictor"], z)[:, 0]
    p4 = model.predict(params["predictor"], jnp.stack([z[:, 1], p3], 1))[:, 0]
    want = (jnp.abs(p3 - tgt[:, 0]).mean((1, 2, 3)) + jnp.abs(p4 - tgt[:, 1]).mean((1, 2, 3))) / 2
    chex.assert_shape(err, (2,))
    np.testing.assert_allclose(err, want, rtol=1e-5)


  @chex.variants(with_jit=True, without_jit=True)
  def test_residual_predicts_changes_from_the_last_context_frame(self):
    model = fj.make_model(context=K, width=8, dim=D, input_norm=True, residual=True)
    params = fj.init_params(model, FRAME, seed=3)
    params["target_encoder"] = fj.init_params(model, FRAME, seed=4)["encoder"]
    clips = _clips(2, 5, 7)
    err = self.variant(fj.window_error_fn(model), static_argnums=2)(params, clips, 3)
    # By hand: base = target latents of frame 2 (last context frame); each prediction is the
    # previous one plus the predictor's change.
    z = losses.layer_norm_no_affine(model.encode(params["encoder"], clips[:, 1:3]))
    tgt = losses.layer_norm_no_affine(model.encode(params["target_encoder"], clips[:, 2:]))
    p3 = tgt[:, 0] + model.predict(params["predictor"], z)[:, 0]
    p4 = p3 + model.predict(params["predictor"], jnp.stack([z[:, 1], p3], 1))[:, 0]
    want = (jnp.abs(p3 - tgt[:, 1]).mean((1, 2, 3)) + jnp.abs(p4 - tgt[:, 2]).mean((1, 2, 3))) / 2
    np.testing.assert_allclose(err, want, rtol=1e-5)
    with pytest.raises(ValueError, match="base_BhwD"):
      model.rollout(params["predictor"], z, 1)

  def test_ahead_predicts_several_frames_at_once_then_feeds_back(self):
    model = fj.make_model(context=K, width=8, dim=D, input_norm=True, ahead=2)
    params = fj.init_params(model, FRAME, seed=5)
    z = losses.layer_norm_no_affine(model.encode(params["encoder"], _clips(2, K, 8)))
    first = model.predict(params["predictor"], z)
    chex.assert_shape(first, (2, 2, 8, 8, D))
    # 3 frames: both of the first call, then the first of a call on the last K = 2 frames,
    # which are the two predictions.
    second = model.predict(params["predictor"], first)
    out = model.rollout(params["predictor"], z, 3)
    np.testing.assert_allclose(out, jnp.concatenate([first, second[:, :1]], 1), rtol=1e-6)


def test_direct_prediction_needs_no_input_norm_up_to_ahead():
  model = fj.make_model(context=K, width=8, dim=D, ahead=3)
  params = fj.init_params(model, FRAME, seed=6)
  clips = _clips(2, K + 3, 2)
  err = fj.window_error_fn(model)(params, clips, K)
  z = model.encode(params["encoder"], clips[:, :K])
  tgt = losses.layer_norm_no_affine(model.encode(params["target_encoder"], clips[:, K:]))
  want = jnp.abs(model.predict(params["predictor"], z) - tgt).mean((1, 2, 3, 4))
  np.testing.assert_allclose(err, want, rtol=1e-5)
  with pytest.raises(ValueError, match="frame.ahead \\(3\\)"):
    fj.window_error_fn(model)(params, _clips(1, K + 4), K)


@pytest.mark.parametrize("input_norm,rollout,ahead,residual",
                         [(False, 1, 1, False), (True, 3, 1, False), (False, 3, 3, False),
                          (False, 1, 1, True), (True, 3, 1, True)])
def test_loss_is_the_surprise_of_the_same_window(input_norm, rollout, ahead, residual):
  """Training on clips of K + R frames minimises exactly the mean window error of surprise."""
  model = fj.make_model(context=K, width=8, dim=D, input_norm=input_norm, ahead=ahead,
                        residual=residual)
  params = fj.init_params(model, FRAME, seed=1)
  params["target_encoder"] = fj.init_params(model, FRAME, seed=7)["encoder"]  # differ
  clips = _clips(3, K + rollout, 5)
  _, metrics = fj.loss_fn(model, params, clips, 1.0, 0.04)
  window = fj.window_error_fn(model)(params, clips, K)
  np.testing.assert_allclose(metrics["pred_loss"], window.mean(), rtol=1e-5)


@pytest.mark.parametrize("input_norm,rollout,ahead,residual",
                         [(False, 1, 1, False), (True, 2, 1, False), (True, 2, 1, True),
                          (True, 3, 2, True), (False, 2, 2, False)])
def test_windows_per_clip_loss_is_the_mean_surprise_of_every_window(input_norm, rollout, ahead,
                                                                      residual):
  """A clip of K + R + n - 1 frames trains its n windows: the loss is their mean surprise."""
  n = 3
  model = fj.make_model(context=K, width=8, dim=D, input_norm=input_norm, ahead=ahead,
                        residual=residual)
  params = fj.init_params(model, FRAME, seed=2)
  params["target_encoder"] = fj.init_params(model, FRAME, seed=8)["encoder"]  # differ
  clips = _clips(2, fj.clip_frames(K, rollout, n), 6)
  _, metrics = fj.loss_fn(model, params, clips, 1.0, 0.04, rollout)
  each = [fj.window_error_fn(model)(params, clips[:, j:j + K + rollout], K) for j in range(n)]
  np.testing.assert_allclose(metrics["pred_loss"], np.mean(each), rtol=1e-5)
  with pytest.raises(ValueError, match="cannot hold"):
    fj.loss_fn(model, params, clips[:, :K], 1.0, 0.04, rollout)
  with pytest.raises(ValueError, match="frame.windows_per_clip=0"):
    fj.clip_frames(K, rollout, 0)


def test_hard_weight_weights_tokens_by_their_relative_error(model_params):
  """hard_weight a: the fit term is mean(w * e) with w = (e / mean e)^a over token errors e;
  a = 1 gives mean(e^2) / mean(e). The reported pred_loss stays the plain mean."""
  model, params = model_params
  clips = _clips(2, K + 1, 4)
  z = model.predictor_inputs(model.encode(params["encoder"], clips[:, :K]))
  target = model.target_latents(params["target_encoder"], clips[:, K:])
  e = np.abs(np.asarray(model.rollout(params["predictor"], z, 1) - target)).mean(-1)
  for a, expected in ((0.0, e.mean()), (1.0, (e ** 2).mean() / e.mean()),
                      (2.0, (e ** 3).mean() / e.mean() ** 2)):
    loss, metrics = fj.loss_fn(model, params, clips, 0.0, 0.0, 1, hard_weight=a)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["pred_loss"], e.mean(), rtol=1e-5)
  # No gradient through the weight: the gradient is that of mean(w * e) with w held fixed.
  w = jnp.asarray((e / e.mean()) ** 1.0)

  def fixed_weight_loss(p):
    z = model.predictor_inputs(model.encode(p["encoder"], clips[:, :K]))
    pred = model.rollout(p["predictor"], z, 1)
    return jnp.mean(w * jnp.abs(pred - target).mean(-1))

  online = {k: params[k] for k in fj.TRAINED}
  got = jax.grad(lambda p: fj.loss_fn(model, {**params, **p}, clips, 0.0, 0.0, 1,
                                      hard_weight=1.0)[0])(online)
  chex.assert_trees_all_close(got, jax.grad(fixed_weight_loss)(online), rtol=1e-4, atol=1e-7)
  # The train step passes it on.
  step = fj.make_train_step(model, optax.sgd(0.0), 0.99, 0.0, 0.0, 1, hard_weight=2.0)
  _, _, loss, _ = step(params, optax.sgd(0.0).init(online), clips)
  np.testing.assert_allclose(loss, (e ** 3).mean() / e.mean() ** 2, rtol=1e-5)
  with pytest.raises(ValueError, match="frame.hard_weight=-1"):
    fj.check_hard_weight(-1.0)


def test_hard_weight_is_relative_to_each_predicted_frame():
  """With several predicted frames (here a 2-ahead predictor), each token's weight is its error
  over the mean error of its own frame: far frames, whose errors are larger, do not take every
  weight."""
  model = fj.make_model(context=K, width=8, dim=D, ahead=2)
  params = fj.init_params(model, FRAME, seed=0)
  clips = _clips(2, K + 2, 5)
  z = model.predictor_inputs(model.encode(params["encoder"], clips[:, :K]))
  target = model.target_latents(params["target_encoder"], clips[:, K:])
  e = np.abs(np.asarray(model.rollout(params["predictor"], z, 2) - target)).mean(-1)  # (B,2,h,w)
  per_frame = e.mean(axis=(0, 2, 3), keepdims=True)
  loss, _ = fj.loss_fn(model, params, clips, 0.0, 0.0, 2, hard_weight=2.0)
  np.testing.assert_allclose(loss, np.mean((e / per_frame) ** 2 * e), rtol=1e-5)


def test_separate_trunks_give_each_horizon_its_own_weights():
  """separate_trunks: output j of a 2-ahead predictor depends only on trunk h{j}_; the one-trunk
  layout keeps the unprefixed names every saved model has (and ahead 1 ignores the option)."""
  names = ["conv0", "conv1", "conv2", "conv3", "inp", "mix0", "mix1", "mix2", "mix3", "out"]
  one = fj.make_model(context=K, width=8, dim=D, ahead=2)
  assert sorted(fj.init_params(one, FRAME, 0)["predictor"]) == names
  single = fj.make_model(context=K, width=8, dim=D, separate_trunks=True)
  assert sorted(fj.init_params(single, FRAME, 0)["predictor"]) == names
  model = fj.make_model(context=K, width=8, dim=D, ahead=2, separate_trunks=True)
  params = fj.init_params(model, FRAME, seed=0)
  pred = params["predictor"]
  assert {n[:3] for n in pred} == {"h1_", "h2_"} and len(pred) == 20
  z = model.encode(params["encoder"], _clips(2, K))
  out = model.predict(pred, z)
  chex.assert_shape(out, (2, 2, 8, 8, D))
  bumped = {n: jax.tree.map(lambda w: w + 0.1, v) if n.startswith("h2_") else v
            for n, v in pred.items()}
  moved = model.predict(bumped, z)
  np.testing.assert_array_equal(moved[:, 0], out[:, 0])
  assert float(jnp.abs(moved[:, 1] - out[:, 1]).max()) > 1e-3
  assert fj.architecture(model)["separate_trunks"] is True


def test_frame_weights_weigh_the_predicted_frames():
  """frame_weights scale each predicted frame's term (to mean 1): equal weights change nothing;
  (1, 0) with separate trunks leaves the 2-ahead trunk without gradient; with focal weights the
  loss is the weighted mean of each frame's focal term."""
  assert fj.check_frame_weights((), 2) is None
  assert fj.check_frame_weights((3, 1), 2) == (1.5, 0.5)
  for bad in ((1.0,), (1.0, -1.0), (0.0, 0.0), (1.0, float("nan"))):
    with pytest.raises(ValueError, match="frame.frame_weights="):
      fj.check_frame_weights(bad, 2)
  model = fj.make_model(context=K, width=8, dim=D, ahead=2, separate_trunks=True)
  params = fj.init_params(model, FRAME, seed=0)
  clips = _clips(2, K + 2, 6)
  plain = fj.loss_fn(model, params, clips, 1.0, 0.04, 2, 2.0)
  equal = fj.loss_fn(model, params, clips, 1.0, 0.04, 2, 2.0, (5.0, 5.0))
  chex.assert_trees_all_close(plain, equal, rtol=1e-6)
  z = model.predictor_inputs(model.encode(params["encoder"], clips[:, :K]))
  target = model.target_latents(params["target_encoder"], clips[:, K:])
  e = np.abs(np.asarray(model.rollout(params["predictor"], z, 2) - target)).mean(-1)
  focal = ((e / e.mean(axis=(0, 2, 3), keepdims=True)) ** 2 * e).mean(axis=(0, 2, 3))
  loss, metrics = fj.loss_fn(model, params, clips, 0.0, 0.0, 2, 2.0, (3.0, 1.0))
  np.testing.assert_allclose(loss, (1.5 * focal[0] + 0.5 * focal[1]) / 2, rtol=1e-5)
  np.testing.assert_allclose(metrics["pred_loss"], e.mean(), rtol=1e-5)
  grads = jax.grad(lambda p: fj.loss_fn(model, {**params, "predictor": p}, clips, 0.0, 0.0, 2,
                                        2.0, (1.0, 0.0))[0])(params["predictor"])
  for name, g in grads.items():
    biggest = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g))
    assert (biggest == 0.0) == name.startswith("h2_"), name


def test_windows_are_consecutive_runs():
  x = np.arange(2 * 5).reshape(2, 5)
  np.testing.assert_array_equal(fj.windows(x, 3), [[0, 1, 2], [1, 2, 3], [2, 3, 4],
                                                   [5, 6, 7], [6, 7, 8], [7, 8, 9]])


def test_top_k_pooling_against_hand_computation():
  err = np.zeros((2, 3, 4, 4, 2), np.float32)   # (B, frames, h, w, D)
  err[0, 0, 1, 2] = [4.0, 2.0]                  # one token of frame 0: mean over D 3
  err[0, 1, 0, 0] = [1.0, 1.0]
  err[0, 1, 3, 3] = [2.0, 0.0]
  err[1] = 0.5
  np.testing.assert_allclose(fj.pool_tokens(err, 0), [(3 + 2) / 16 / 3, 0.5])
  np.testing.assert_allclose(fj.pool_tokens(err, 1), [(3 + 1 + 0) / 3, 0.5])
  np.testing.assert_allclose(fj.pool_tokens(err, 2), [(3 / 2 + 1 + 0) / 3, 0.5])
  for bad in (17, -1):
    with pytest.raises(ValueError, match=f"frame.top_k={bad}"):
      fj.pool_tokens(err, bad)


def test_token_power_pooling_against_hand_computation():
  err = np.zeros((2, 2, 2, 2, 1), np.float32)   # (B, frames, h, w, D): 4 tokens per frame
  err[0, 0, :, :, 0] = [[1.0, 3.0], [0.0, 0.0]]
  err[0, 1, 0, 0] = 2.0
  err[1] = 0.5
  quadratic = [(np.sqrt((1 + 9) / 4) + np.sqrt(4 / 4)) / 2, 0.5]
  np.testing.assert_allclose(fj.pool_tokens(err, 0, 2.0), quadratic, rtol=1e-6)
  np.testing.assert_allclose(fj.pool_tokens(err, 0, 1.0), fj.pool_tokens(err, 0), rtol=1e-6)
  # Over the top 2 tokens, order 3; a huge order tends to the top token (no overflow).
  top2 = [((((27 + 1) / 2) ** (1 / 3)) + ((8 + 0) / 2) ** (1 / 3)) / 2, 0.5]
  np.testing.assert_allclose(fj.pool_tokens(err, 2, 3.0), top2, rtol=1e-6)
  np.testing.assert_allclose(fj.pool_tokens(err * 1e30, 0, 1e4), [(3e30 + 2e30) / 2, 0.5e30],
                             rtol=1e-3)
  np.testing.assert_array_equal(fj.pool_tokens(np.zeros_like(err), 0, 2.0), [0.0, 0.0])
  for bad in (0.5, float("inf"), float("nan")):
    with pytest.raises(ValueError, match="frame.token_power="):
      fj.pool_tokens(err, 0, bad)
  with pytest.raises(ValueError, match="frame.token_power=0"):
    fj.window_error_fn(fj.make_model(context=K, width=8, dim=D), 0, 0)


class TokenPowerWindowErrorTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_between_the_mean_and_the_largest_token(self):
    model = fj.make_model(context=K, width=8, dim=D)
    params = fj.init_params(model, FRAME, seed=0)
    clips = _clips(3, K + 1, 9)
    fns = {q: self.variant(fj.window_error_fn(model, 0, q), static_argnums=2)
           for q in (1.0, 2.0, 64.0)}
    mean, quadratic, high = (np.asarray(fns[q](params, clips, K)) for q in (1.0, 2.0, 64.0))
    np.testing.assert_array_less(mean, quadratic)   # the power-mean inequality
    np.testing.assert_array_less(quadratic, high)
    top = np.asarray(fj.window_error_fn(model, top_k=1)(params, clips, K))
    np.testing.assert_array_less(high, top * (1 + 1e-6))


def test_top_k_window_error_is_at_least_the_mean(model_params):
  model, params = model_params
  clips = _clips(3, K + 1, 9)
  mean = fj.window_error_fn(model)(params, clips, K)
  top = fj.window_error_fn(model, top_k=4)(params, clips, K)
  every = fj.window_error_fn(model, top_k=64)(params, clips, K)  # all 8 x 8 tokens
  np.testing.assert_array_less(mean, top)
  np.testing.assert_allclose(every, mean, rtol=1e-5)


def test_save_load_round_trip(tmp_path):
  model = fj.make_model(context=K, width=8, dim=D, input_norm=True, dilations=(1, 3), ahead=2,
                        separate_trunks=True)
  params = fj.init_params(model, FRAME, seed=2)
  fj.save(str(tmp_path), model, params, FRAME, {"training": {"steps": 3}})
  assert fj.exists(str(tmp_path))
  loaded, loaded_params, meta = fj.load(str(tmp_path))
  assert loaded == model and meta["training"] == {"steps": 3}
  chex.assert_trees_all_equal(loaded_params, params)
  with pytest.raises(FileNotFoundError, match="frame_jepa.json missing"):
    fj.load(str(tmp_path / "nothing"))


def test_dilations_set_the_predictor_and_bad_ones_are_refused():
  model = fj.make_model(context=K, width=8, dim=D, dilations=[1, 1])
  assert model.predictor.dilations == (1, 1)
  assert fj.architecture(model)["dilations"] == [1, 1]
  for bad in ((), (1, 0), (1.5,)):
    with pytest.raises(ValueError, match="frame.dilations="):
      fj.make_model(context=K, width=8, dim=D, dilations=bad)


def test_window_error_rejects_short_context(model_params):
  model, params = model_params
  with pytest.raises(ValueError, match="at least its 2 context frames"):
    fj.window_error_fn(model)(params, _clips(1, 4), 1)
  with pytest.raises(ValueError, match="at least one frame to predict"):
    fj.window_error_fn(model)(params, _clips(1, 4), 4)
  # Raw (not layer-normed) inputs: predictions cannot be fed back.
  with pytest.raises(ValueError, match="needs frame.input_norm=True"):
    fj.window_error_fn(model)(params, _clips(1, 4), 2)
  with pytest.raises(ValueError, match="needs frame.input_norm=True"):
    fj.train_frame_jepa([{"frames": _clips(1, 4)[0]}], context=K, width=8, dim=D, steps=1,
                        batch_size=1, lr=1e-3, ema=0.99, var_weight=1.0, cov_weight=0.04,
                        rollout=2)
  with pytest.raises(ValueError, match="frame.rollout >= 3"):  # outputs 2, 3 never trained
    fj.train_frame_jepa([{"frames": _clips(1, 4)[0]}], context=K, width=8, dim=D, steps=1,
                        batch_size=1, lr=1e-3, ema=0.99, var_weight=1.0, cov_weight=0.04,
                        rollout=1, ahead=3)


@pytest.mark.parametrize("input_norm,rollout,ahead,windows",
                         [(False, 1, 1, 1), (True, 2, 1, 1), (False, 2, 2, 1), (False, 1, 1, 3)])
def test_training_lowers_prediction_loss(input_norm, rollout, ahead, windows):
  cfg = ph.PhysicsConfig(num_frames=6, size=32, radius=(1.5, 3.0), min_radius_gap=0.75,
                         speed=(0.5, 1.75), gravity=0.175, floor_height=3, occluder_width=(3, 6))
  source = [ph.make_video(np.random.default_rng(i), cfg) for i in range(16)]
  _, _, history = fj.train_frame_jepa(source, context=K, width=8, dim=D, steps=60, batch_size=16,
                                      lr=3e-3, ema=0.99, var_weight=1.0, cov_weight=0.04,
                                      rollout=rollout, input_norm=input_norm, ahead=ahead,
                                      windows_per_clip=windows, log_every=10)
  assert history[-1]["pred_loss"] < 0.8 * history[0]["pred_loss"], history


def test_experiment_config_defaults_are_the_library_defaults():
  from experiments.configs import intuitive_physics as ipc  # a plain-data config module
  frame = ipc.get_config("cpu_default").frame
  assert frame.token_power == fj.TOKEN_POWER
  assert tuple(frame.dilations) == fj.DILATIONS
