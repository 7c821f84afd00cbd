"""Two-stage world model (V-JEPA 2-AC): V-JEPA pretraining on Two Rooms walk videos, then the
frozen encoder under an action-conditioned predictor."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import pretrain as pretrain_configs
from experiments.configs import world_model as wm_configs
from jepa_jax.data import two_rooms_walks as walks
from jepa_jax.data.two_rooms_videos import TwoRoomsVideoSource
from jepa_jax.eval.pretrained import load_pretrained
from jepa_jax.nn.convnet import VJEPAFrameEncoder
from jepa_jax.nn.vit import make_encoder
from jepa_jax.train import pretrain as jepa
from jepa_jax.train import world_model as wmt


def _pretrain_cfg():
  c = pretrain_configs.get_config("debug")
  c.data.source = "two_rooms"
  c.data.physics.num_frames = 4
  c.model.patch_size = (2, 8, 8)
  c.total_steps = 2
  c.checkpoint.every = 2
  c.probe.update(frame=1)
  return c


def test_two_rooms_video_source_matches_walks_and_is_deterministic():
  c = _pretrain_cfg()
  src = jepa.make_source(c, "train", 10)
  a, b = src[3], src[3]
  chex.assert_trees_all_equal(a, b)
  chex.assert_shape(a["frames"], (4, 64, 64, 2))
  chex.assert_shape(a["pos"], (4, 1, 2))
  assert a["frames"].dtype == np.uint8
  # Element i is walk i of the split's stream; velocity is the next displacement.
  wcfg = jepa.two_rooms_walks_config(c)
  key = jax.random.fold_in(jax.random.key(c.seed), 0)
  ref = jax.device_get(walks.generate_walks(key, wcfg, 1, 4, 3))
  np.testing.assert_array_equal(a["frames"], ref["obs"][0])
  np.testing.assert_allclose(a["pos"][:, 0], ref["state"][0])
  np.testing.assert_allclose(a["vel"][:-1, 0], np.diff(ref["state"][0], axis=0), atol=1e-6)
  # Splits are disjoint streams.
  other = jepa.make_source(c, "probe_test", 10)[3]
  assert not np.array_equal(other["pos"], a["pos"])
  with pytest.raises(ValueError, match="num_frames"):
    TwoRoomsVideoSource(wcfg, 1, 5)
  assert jepa.input_channels(c) == 2 and jepa.input_shape(c) == (4, 64, 64)


def test_unknown_data_source_is_named():
  c = _pretrain_cfg()
  c.data.source = "atari"
  with pytest.raises(ValueError, match="config.data.source='atari'"):
    jepa.make_source(c, "train", 4)


def test_vjepa_frame_encoder_is_the_video_vit_on_a_repeated_frame():
  enc = VJEPAFrameEncoder(size="micro", patch_size=8, tubelet=2, pool=1)
  x = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 2)).astype(np.uint8)
  params = enc.init(jax.random.key(0), x)
  z = enc.apply(params, x)
  chex.assert_shape(z, (3, 64, 128))
  vit = make_encoder("micro", (2, 8, 8))
  ref = vit.apply({"params": params["params"]["vit"]}, np.repeat(x[:, None], 2, axis=1))
  mu, sd = ref.mean(-1, keepdims=True), ref.std(-1, keepdims=True)
  np.testing.assert_allclose(z, (ref - mu) / sd, atol=1e-4)
  pooled = VJEPAFrameEncoder(size="micro", patch_size=8, pool=2).apply(params, x)
  chex.assert_shape(pooled, (3, 16, 128))
  grid = np.asarray(z).reshape(3, 8, 8, 128)
  np.testing.assert_allclose(pooled[:, 0], grid[:, :2, :2].mean((1, 2)), atol=1e-5)
  with pytest.raises(ValueError, match="pool=3"):
    VJEPAFrameEncoder(size="micro", patch_size=8, pool=3).apply(params, x)


def test_pretrain_on_two_rooms_then_two_stage_world_model(tmp_path):
  """Stage 1 (experiments.pretrain pipeline on Two Rooms videos) -> stage 2 (frozen target
  encoder, only the action-conditioned predictor trains) -> load_world_model."""
  from jepa_jax.train import loop
  from jepa_jax.world_model import load_world_model
  pre_dir = str(tmp_path / "pretrain")
  pc = _pretrain_cfg()
  task, _ = jepa.make_task(pc)
  loop.train(task, pc, pre_dir, progress=False)
  _, _, pre_params, _ = load_pretrained(pre_dir)

  c = wm_configs.get_config("debug")
  c.recipe = "two_stage"
  c.two_stage.encoder_workdir = pre_dir
  c.model.encoder.update(kind="vjepa", vit_size="micro", patch_size=8, tubelet=2, pool=2)
  c.model.predictor.update(kind="transformer")
  c.loss.update(teacher_forcing=1.0, rollout_steps=2, kind="l1")
  c.total_steps = 2
  task2, _ = wmt.make_task(c)
  wm_dir = str(tmp_path / "two_stage")
  loop.train(task2, c, wm_dir, progress=False)
  wm, params = load_world_model(wm_dir)
  chex.assert_trees_all_close(params["encoder"]["vit"], pre_params["target_encoder"])  # frozen
  obs = wmt.held_out_walks(c, 1, 2)["obs"][0, 0]
  z0 = wm.encode(params, obs)
  chex.assert_shape(z0, (16, 128))
  chex.assert_shape(wm.rollout(params, z0, jnp.ones((3, 2))), (3, 16, 128))

  c.model.encoder.tubelet = 4  # does not match the pretrained tubelets: a clear error
  with pytest.raises(ValueError, match="cpu_two_rooms"):
    wmt.load_frozen_encoder(c)
