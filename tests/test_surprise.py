"""Surprise: windows, context/target split, aggregation (hand-computed with stub models),
VoE metrics against hand cases, and the real V-JEPA path on debug shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.eval import surprise as sp
from jepa_jax.eval import voe_metrics as vm

# --- Windows and the latent error with stub encoder/predictor ------------------------------------


def test_token_split_first_slices_are_context():
  ctx, tgt = sp.token_split((4, 2, 2), 1)
  np.testing.assert_array_equal(ctx, np.arange(4))
  np.testing.assert_array_equal(tgt, np.arange(4, 16))
  with pytest.raises(ValueError, match="slices"):
    sp.token_split((4, 2, 2), 4)


def test_latent_window_error_with_stubs():
  """Targets z[n] = n in every dim, predictions 0: the error is the mean target index."""
  grid, tubelet = (4, 2, 2), 2                    # 8-frame windows, 16 tokens
  seen = {}

  def encode_context(params, clips, ctx_BC):
    seen["ctx"] = ctx_BC
    return jnp.zeros((clips.shape[0], ctx_BC.shape[1], 3))

  def predict(params, z, ctx_BC, tgt_BT):
    seen["tgt"] = tgt_BT
    return jnp.zeros((z.shape[0], tgt_BT.shape[1], 3)) + params["bias"]

  def encode_target(params, clips):
    return jnp.broadcast_to(jnp.arange(16.0)[None, :, None], (clips.shape[0], 16, 3))

  fn = sp.latent_window_error(encode_context, predict, encode_target, grid, tubelet)
  clips = np.zeros((2, 8, 4, 4, 3), np.uint8)
  np.testing.assert_allclose(fn({"bias": 0.0}, clips, 2), [9.5, 9.5])     # mean(4..15)
  np.testing.assert_array_equal(seen["ctx"][0], np.arange(4))
  np.testing.assert_allclose(fn({"bias": 0.0}, clips, 4), [11.5, 11.5])   # mean(8..15)
  np.testing.assert_allclose(fn({"bias": 20.0}, clips, 6), [6.5, 6.5])    # mean(|20 - 12..15|)
  assert seen["tgt"].shape == (2, 4)
  with pytest.raises(ValueError, match="multiple of the tubelet"):
    fn({"bias": 0.0}, clips, 3)


def _mean_after_context(params, clips_BWHWC, context_frames):
  """Stub window error: the mean pixel value of the frames after the context."""
  return clips_BWHWC[:, context_frames:].astype(jnp.float32).mean(axis=(1, 2, 3, 4)) + params


def _ramp_videos():
  """Video v, frame t is a constant image of value t + 10 v (T = 10)."""
  t = np.arange(10)[None, :] + 10 * np.arange(2)[:, None]
  return np.broadcast_to(t[:, :, None, None, None], (2, 10, 2, 2, 3)).astype(np.uint8)


def test_windows_min_over_context_and_aggregation_by_hand():
  model = sp.SurpriseModel(_mean_after_context, 0.0, window=4, frame_shape=(2, 2, 3))
  # batch 4 over 2 videos x 3 windows: the second batch is padded.
  out = sp.surprise(model, _ramp_videos(), stride=3, context_frames=(1, 2), how="max",
                    batch_size=4)
  np.testing.assert_array_equal(out["starts"], [0, 3, 6])
  # window [s, s+4): context 1 -> mean(s+1..s+3) = s+2, context 2 -> mean(s+2, s+3) = s+2.5
  np.testing.assert_allclose(out["per_context"][0], [[2, 2.5], [5, 5.5], [8, 8.5]])
  np.testing.assert_allclose(out["per_window"], [[2, 5, 8], [12, 15, 18]])
  np.testing.assert_allclose(out["video"], [8, 18])
  video_mean, _ = sp.aggregate(out["per_context"], "mean")
  np.testing.assert_allclose(video_mean, [5, 15])
  with pytest.raises(ValueError, match="aggregate"):
    sp.aggregate(out["per_context"], "median")


def test_power_mean_by_hand_and_its_limits():
  x = np.array([[1.0, 2.0], [3.0, 3.0], [0.0, 0.0]])
  np.testing.assert_allclose(sp.power_mean(x, 2), [np.sqrt(2.5), 3.0, 0.0])
  np.testing.assert_allclose(sp.power_mean(x, 1), x.mean(1))
  np.testing.assert_allclose(sp.power_mean(x[:1], 1000), [2.0], rtol=1e-3)  # -> max
  np.testing.assert_allclose(sp.power_mean(7.5 * x, 3), 7.5 * sp.power_mean(x, 3))  # scale-free
  np.testing.assert_allclose(sp.power_mean([[1e300, 2e300]], 64), [2e300 * 0.5 ** (1 / 64)],
                             rtol=1e-12)  # (1e300)^64 would overflow without the relative form
  scores_NKC = np.stack([x, x + 1], -1)  # context lengths: the min (x) is kept per window
  video, per_window = sp.aggregate(scores_NKC, "power", 2)
  np.testing.assert_allclose(video, [np.sqrt(2.5), 3.0, 0.0])
  np.testing.assert_array_equal(per_window, x)
  with pytest.raises(ValueError, match="exponent"):
    sp.power_mean(x, 0.5)
  with pytest.raises(ValueError, match="non-negative"):
    sp.power_mean(-x, 2)


def test_power_mean_separates_twins_whose_max_lies_in_the_shared_prefix():
  """Matched twins share their first windows (identical errors). When the largest error lies
  there, the max ties them; the power mean still ranks them by the windows that differ."""
  prefix = [0.10, 0.25, 0.12]
  possible = np.array([prefix + [0.13, 0.14]])
  impossible = np.array([prefix + [0.13, 0.16]])
  assert possible.max() == impossible.max()
  for p in (2, 8, 64):
    assert sp.power_mean(impossible, p)[0] > sp.power_mean(possible, p)[0]


def test_wrong_inputs_name_the_expected_shape():
  model = sp.SurpriseModel(_mean_after_context, 0.0, window=4, frame_shape=(2, 2, 3),
                           tubelet=2)
  good = _ramp_videos()
  for bad in (good[0], good.astype(np.float32), good[..., :2], good[:, :3]):
    with pytest.raises(ValueError, match=r"\(N, T, 2, 2, 3\) uint8 with T >= 4"):
      sp.surprise(model, bad, stride=1, context_frames=(2,))
  for ctx in ((), (1,), (4,)):
    with pytest.raises(ValueError, match="context"):
      sp.surprise(model, good, stride=1, context_frames=ctx)
  with pytest.raises(ValueError, match="stride"):
    sp.surprise(model, good, stride=0, context_frames=(2,))


# --- Metrics --------------------------------------------------------------------------------------


def test_pairwise_accuracy_hand_cases():
  assert vm.pairwise_accuracy([1, 2, 3], [2, 2, 1]) == pytest.approx(0.5)   # win, tie, loss
  assert vm.pairwise_accuracy([0.1, 0.2], [0.3, 0.4]) == 1.0
  with pytest.raises(ValueError):
    vm.pairwise_accuracy([1, 2], [1])


def test_auroc_hand_cases():
  assert vm.auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
  assert vm.auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
  assert vm.auroc([1.0, 1.0], [0, 1]) == 0.5
  # negatives 0.1, 0.4, 0.35; positives 0.8, 0.35: (3 + 1 + 0 + 0.5) / 6 pairs
  assert vm.auroc([0.1, 0.4, 0.35, 0.8, 0.35], [0, 0, 0, 1, 1]) == pytest.approx(0.75)
  rng = np.random.default_rng(0)        # brute force over all pairs, with ties
  s, y = rng.integers(0, 5, 40).astype(float), rng.integers(0, 2, 40)
  pos, neg = s[y == 1], s[y == 0]
  brute = np.mean((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None]))
  assert vm.auroc(s, y) == pytest.approx(brute)
  with pytest.raises(ValueError):
    vm.auroc([1.0, 2.0], [1, 1])


def test_report_per_type_and_table(tmp_path):
  rep = vm.voe_report([1, 1, 5, 5], [2, 2, 4, 4], ["a", "a", "b", "b"])
  assert {k: rep["a"][k] for k in ("pairwise_acc", "auroc", "n")} == {
      "pairwise_acc": 1.0, "auroc": 1.0, "n": 2}
  assert rep["b"]["pairwise_acc"] == 0.0 and rep["b"]["auroc"] == 0.0
  assert rep["mean"]["pairwise_acc"] == 0.5 and rep["mean"]["n"] == 4
  assert "100.0" in vm.table({"m": rep})
  # Wilson 95 % intervals: 2/2 right -> [0.342, 1]; 0/2 -> [0, 0.658]
  np.testing.assert_allclose(rep["a"]["pairwise_ci95"], [0.3424, 1.0], atol=1e-4)
  np.testing.assert_allclose(rep["b"]["pairwise_ci95"], [0.0, 0.6576], atol=1e-4)
  assert "[34.2, 100.0]" in vm.ci_table({"m": rep}) and "mean" not in vm.ci_table({"m": rep})
  # One layout for every table: a 'model' column as wide as the longest name, aligned cells.
  for lines in (vm.table({"m": rep, "a longer model name": rep}).splitlines(),
                vm.ci_table({"m": rep, "a longer model name": rep}).splitlines()):
    assert len({len(line) for line in lines}) == 1
    assert lines[0].startswith("model ") and lines[-1].startswith("a longer model name ")
  assert vm.text_table({"m": ["1.0", "2.0"]}, ["a", "b"], cell_width=4).splitlines() == [
      "model            a   b", "m              1.0 2.0"]
  curve = {"x": np.arange(3), "possible": np.ones(3), "impossible": np.arange(3.0),
           "t_violation": 1, "label": "a"}
  path = vm.plot_surprise_curves(str(tmp_path / "c.png"), [curve, curve], "t")
  assert (tmp_path / "c.png").stat().st_size > 1000 and path.endswith("c.png")


def test_shared_context_accuracy_by_hand():
  """Windows start at 0, 4, 8 (length 8, context 4). Pair 0 (t_v = 9): only the window at 4
  qualifies (context 4..7 precedes 9, and 9 < 12); pair 1 (t_v = 6): only the window at 0;
  pair 2 (t_v = 2): none (the violation is inside every window's context)."""
  starts = np.array([0, 4, 8])  # context ends at start + 3, windows end at start + 7
  poss = np.array([[0., 1., 0.], [5., 0., 0.], [0., 0., 0.]])
  imp = np.array([[9., 2., -1.], [5., 9., 9.], [1., 1., 1.]])
  out = vm.shared_context_accuracy(poss, imp, starts + 3, starts + 7, [9, 6, 2],
                                 ["a", "b", "b"])
  assert out["a"] == {"accuracy": 1.0, "n": 1}           # 1 < 2 in the window at 4
  assert out["b"] == {"accuracy": 0.5, "n": 1}           # a tie in the window at 0; pair 2 has none
  assert out["mean"] == {"accuracy": 0.75, "n": 2}


def test_accuracy_bars_plot(tmp_path):
  panels = {"pairwise": {"m1": {"a": 0.2, "mean": 0.4}, "m2": {"a": 0.9, "mean": 0.7}},
            "check": {"m1": {"a": 0.5, "mean": 0.5}, "m2": {"a": 1.0, "mean": 1.0}}}
  path = vm.plot_accuracy_bars(str(tmp_path / "acc.png"), panels, bar=0.9)
  assert path.endswith("acc.png") and (tmp_path / "acc.png").stat().st_size > 1000


# --- The real V-JEPA path: debug models, a checkpoint written and loaded back ---------------------


def test_jepa_surprise_from_a_checkpoint(tmp_path, cfg):
  from jepa_jax.eval import pretrained
  from jepa_jax.train import checkpoint as ckpt
  from jepa_jax.train import pretrain as jepa
  models = jepa.make_models(cfg)
  example = jepa.dummy_batch(cfg, jepa.make_maskers(cfg, models.grid_shape), 1)
  state = jepa.init_state(models, cfg, jax.random.key(0), example, cfg.total_steps)
  manager = ckpt.make_manager(str(tmp_path / "checkpoints"), 1, 1, async_save=False)
  ckpt.save(manager, 3, state, None, cfg, force=True)
  manager.wait_until_finished()
  manager.close()

  _, models2, params, step = pretrained.load_pretrained(str(tmp_path))
  assert step == 3
  chex_equal = jax.tree.map(np.array_equal, params["encoder"], state.params["encoder"])
  assert all(jax.tree.leaves(chex_equal))
  t, size = cfg.data.physics.num_frames, cfg.data.physics.size     # debug: 4 x 32 x 32
  tubelet = cfg.model.patch_size[0]
  model = sp.SurpriseModel(sp.jepa_window_error(models2, models2.grid_shape, tubelet), params,
                           t, (size, size, 3), tubelet)
  frames = np.random.default_rng(0).integers(0, 256, (3, t + 2, size, size, 3), np.uint8)
  out = sp.surprise(model, frames, stride=2, context_frames=(tubelet,), batch_size=4)
  assert out["per_window"].shape == (3, 2) and np.isfinite(out["video"]).all()
  assert (out["video"] > 0).all()
  with pytest.raises(FileNotFoundError, match="no checkpoints"):
    pretrained.load_pretrained(str(tmp_path / "nothing"))


def test_position_batch_surprise_uses_training_statistics(cfg):
  """A run pretrained with loss.target_norm='position_batch' is scored against targets
  standardised with per-position statistics of training videos; on those very videos the
  standardisation equals the one its training applied to each batch."""
  from jepa_jax import losses
  from jepa_jax.data.sources import materialize
  from jepa_jax.eval import pretrained
  from jepa_jax.train import pretrain as jepa
  cfg.loss.target_norm = "position_batch"
  models = jepa.make_models(cfg)
  params = pretrained.random_init_params(models, cfg, 0)
  stats = pretrained.target_statistics(cfg, models, params["target_encoder"], num_videos=12,
                                       batch_size=5)                   # 5 + 5 + 2: a short batch
  frames = materialize(jepa.make_source(cfg, "train", 12), 12)["frames"]
  h = np.asarray(models.encoder.apply({"params": params["target_encoder"]}, frames))
  np.testing.assert_allclose(stats["mean"][0], h.mean(0), atol=1e-5)
  np.testing.assert_allclose(stats["var"][0], h.var(0), rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(losses.standardize_with(h, stats["mean"], stats["var"]),
                             losses.standardize_per_position(h), rtol=1e-3, atol=1e-3)

  model = pretrained.surprise_model(cfg, models, params)
  n_tokens, width = h.shape[1:]
  assert model.params["target_stats"]["var"].shape == (1, n_tokens, width)
  t, tubelet = model.window, model.tubelet
  out = sp.surprise(model, frames[:2], stride=1, context_frames=(tubelet,), batch_size=2)
  # By hand: predictor on the first slice's tokens, L1 to the standardised targets of the rest.
  ctx, tgt = sp.token_split(models.grid_shape, 1)
  clip = frames[:1, :t]
  z = models.encoder.apply({"params": params["encoder"]}, clip, ctx[None])
  pred = models.predictor.apply({"params": params["predictor"]}, z, ctx[None], tgt[None])
  target = (h[:1] - model.params["target_stats"]["mean"]) / np.sqrt(
      model.params["target_stats"]["var"] + 1e-6)
  np.testing.assert_allclose(out["video"][0], np.abs(pred - target[:, tgt]).mean(), rtol=1e-4)
  cfg.loss.target_norm = "batch"
  with pytest.raises(ValueError, match="target_norm='batch'"):
    pretrained.surprise_model(cfg, models, params)


def test_pixel_baseline_trains_and_scores(cfg):
  from jepa_jax.eval import pixel_baseline as pb
  from jepa_jax.train import pretrain as jepa
  t, size = cfg.data.physics.num_frames, cfg.data.physics.size     # debug: 4 x 32 x 32
  patch = tuple(cfg.model.patch_size)                              # (2, 8, 8)
  models, params, history = pb.train_pixel_predictor(
      jepa.make_source(cfg, "train", 16), t, patch, (2,), steps=4, batch_size=4, lr=1e-3,
      log_every=2, width=32, depth=1, num_heads=2)
  assert [h["step"] for h in history] == [2, 4]
  model = sp.SurpriseModel(pb.window_error_fn(models), params, t, (size, size, 3), patch[0])
  frames = np.random.default_rng(0).integers(0, 256, (2, t + 2, size, size, 3), np.uint8)
  out = sp.surprise(model, frames, stride=1, context_frames=(2,), batch_size=4)
  assert out["per_window"].shape == (2, 3) and (out["video"] > 0).all()
  # A window of one constant colour is far easier to predict than noise.
  flat = np.full((1, t, size, size, 3), 128, np.uint8)
  assert sp.surprise(model, flat, 1, (2,))["video"][0] < out["video"].min()
