"""Load a pretraining workdir (experiments/pretrain.py) for evaluation: config, models, params;
and wrap a V-JEPA or a frame JEPA (train/frame_jepa.py) as a surprise model.

The config stored beside the checkpoint rebuilds the models, so any pretrained V-JEPA loads
without knowing its preset. Everything is restored onto one device (evaluation is small).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jepa_jax import losses
from jepa_jax.data.sources import materialize
from jepa_jax.eval import probe, surprise
from jepa_jax.train import checkpoint as ckpt
from jepa_jax.train import frame_jepa
from jepa_jax.train import pretrain as jepa


def load_config(workdir: str, step: int | None = None) -> ml_collections.ConfigDict:
  manager = _manager(workdir)
  return ml_collections.ConfigDict(ckpt.restore_config(manager, step))


def _manager(workdir: str):
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory) or not os.listdir(directory):
    raise FileNotFoundError(f"no checkpoints under {directory}: pass the --workdir of a finished "
                            "experiments.pretrain run")
  return ckpt.make_manager(directory, every=1, keep=1, async_save=False)


def load_pretrained(workdir: str, step: int | None = None):
  """-> (cfg, models, params {'encoder', 'predictor', 'target_encoder'}, step)."""
  manager = _manager(workdir)
  step = manager.latest_step() if step is None else step
  cfg = ml_collections.ConfigDict(ckpt.restore_config(manager, step))
  models = jepa.make_models(cfg)
  maskers = jepa.make_maskers(cfg, models.grid_shape)
  example = jepa.dummy_batch(cfg, maskers, 1)
  abstract = jax.eval_shape(
      lambda rng: jepa.init_state(models, cfg, rng, example, cfg.total_steps),
      jax.random.key(0))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                          abstract)
  state = ckpt.restore(manager, abstract, step=step)
  manager.close()
  params = {"encoder": state.params["encoder"], "predictor": state.params["predictor"],
            "target_encoder": state.target_params["encoder"]}
  return cfg, models, params, int(step)


def random_init_params(models, cfg, seed: int):
  """Same architecture, untrained: the random-init baseline (target encoder = encoder, as at
  step 0 of pretraining)."""
  maskers = jepa.make_maskers(cfg, models.grid_shape)
  example = jepa.dummy_batch(cfg, maskers, 1)
  state = jepa.init_state(models, cfg, jax.random.key(seed), example, 1)
  return {"encoder": state.params["encoder"], "predictor": state.params["predictor"],
          "target_encoder": state.target_params["encoder"]}


STATISTICS_VIDEOS = 256


def target_statistics(cfg, models, target_encoder_params, num_videos: int = STATISTICS_VIDEOS,
                      batch_size: int = 32) -> dict:
  """Per (token position, feature) mean and variance of the target encoder's output over the
  first `num_videos` training videos: what a model pretrained with
  config.loss.target_norm='position_batch' standardised its targets with (there, over each
  batch), so single videos can be scored on the same scale."""
  frames = materialize(jepa.make_source(cfg, "train", num_videos), num_videos)["frames"]
  h = probe.extract_features(lambda p, x: models.encoder.apply({"params": p}, x),
                             target_encoder_params, frames, batch_size).astype(np.float64)
  mean, var = h.mean(0), h.var(0)
  return {"mean": jnp.asarray(mean[None], jnp.float32), "var": jnp.asarray(var[None], jnp.float32)}


def surprise_model(cfg, models, params) -> surprise.SurpriseModel:
  """The V-JEPA latent surprise of a loaded pretraining run (or of random-init params of its
  architecture): windows of the clip length it was trained on, frames of its input shape,
  context lengths in whole tubelets, targets normalised as in its pretraining."""
  if cfg.data.get("modality", "video") != "video":
    raise ValueError("surprise needs a video V-JEPA; this run was pretrained with "
                     f"config.data.modality={cfg.data.modality!r}")
  target_norm = cfg.loss.get("target_norm", "layer")
  if target_norm not in losses.TARGET_NORMS:
    raise ValueError(f"config.loss.target_norm={target_norm!r} of this run is unknown; choose "
                     f"one of {losses.TARGET_NORMS}")
  if target_norm == "position_batch":
    params = {**params, "target_stats": target_statistics(cfg, models, params["target_encoder"])}
  window, height, width = jepa.input_shape(cfg)
  tubelet = int(cfg.model.patch_size[0])
  return surprise.SurpriseModel(
      surprise.jepa_window_error(models, models.grid_shape, tubelet, target_norm), params, window,
      (height, width, jepa.input_channels(cfg)), tubelet)


def frame_surprise_model(model: frame_jepa.FrameJEPA, params, frame_shape, horizon: int = 1,
                         top_k: int = 0, token_power: float = frame_jepa.TOKEN_POWER
                         ) -> surprise.SurpriseModel:
  """A frame JEPA's surprise: windows of its K context frames + `horizon` predicted ones (score
  them with context_frames=(K,)), token errors pooled as frame_jepa.pool_tokens(top_k,
  token_power)."""
  if horizon < 1:
    raise ValueError(f"horizon={horizon}: predict at least one frame per window")
  if horizon > model.ahead and not model.input_norm:
    raise ValueError(f"horizon={horizon}: this frame JEPA predicts {model.ahead} frame(s) at once "
                     "from raw (not layer-normed) inputs, so it scores at most "
                     f"{model.ahead} predicted frame(s) per window: set frame.horizon (or "
                     f"--horizon) <= {model.ahead}")
  frame_jepa.check_top_k(top_k, frame_jepa.tokens_per_frame(frame_shape))
  return surprise.SurpriseModel(frame_jepa.window_error_fn(model, top_k, token_power), params,
                                model.context + horizon, tuple(frame_shape), 1)
