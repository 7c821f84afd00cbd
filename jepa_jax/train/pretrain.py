"""I-JEPA / V-JEPA pretraining: models, state init and the train step.

    context encoder(visible tokens) -> predictor(+ mask tokens at target positions) -> z_hat
    EMA target encoder(all tokens)  -> LayerNorm -> gather targets -> sg(z)
    loss = mean over mask views of L1 / smooth-L1(z_hat, sg(z))
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jepa_jax import losses
from jepa_jax.data.physics import PhysicsConfig
from jepa_jax.data.sources import PhysicsImageSource, PhysicsVideoSource
from jepa_jax.masks import MaskSpec, MultiBlockMasker
from jepa_jax.nn.predictor import MaskedPredictor
from jepa_jax.nn.vit import ViTEncoder, make_encoder, token_grid, vit_size
from jepa_jax.state import JEPATrainState, current_hparams, ema_momentum, ema_update, make_optimizer

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# 'physics': balls under gravity (data/physics.py); 'two_rooms': the world model's Two Rooms walks
# as action-free videos (data/two_rooms_videos.py), stage 1 of the two-stage world model.
DATA_SOURCES = ("physics", "two_rooms")
# Which mask views loss.var_weight / cov_weight regularise: 'future' (past -> future views only,
# per token position) or 'all' (tube views too, by masked_content_vc_loss).
VC_VIEWS = ("future", "all")


def _dtype(name: str):
  if name not in DTYPES:
    raise ValueError(f"model.dtype {name!r} unknown; choose one of {sorted(DTYPES)}")
  return DTYPES[name]


def physics_config(cfg: ml_collections.ConfigDict) -> PhysicsConfig:
  kw = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in cfg.data.physics.items()}
  return PhysicsConfig(**kw).validate()


def input_shape(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  """Per-example input shape without channels: (T, H, W) for video, (H, W) for images."""
  if data_source(cfg) == "two_rooms":
    t, s = cfg.data.physics.num_frames, cfg.data.two_rooms.size
    return (t, s, s) if cfg.data.modality == "video" else (s, s)
  p = physics_config(cfg)
  return (p.num_frames, p.size, p.size) if cfg.data.modality == "video" else (p.size, p.size)


def input_channels(cfg: ml_collections.ConfigDict) -> int:
  """RGB physics videos; Two Rooms frames have an agent and a wall channel."""
  return 2 if data_source(cfg) == "two_rooms" else 3


def data_source(cfg: ml_collections.ConfigDict) -> str:
  source = cfg.data.get("source", "physics")
  if source not in DATA_SOURCES:
    raise ValueError(f"config.data.source={source!r}: choose one of {DATA_SOURCES}")
  return source


def two_rooms_walks_config(cfg: ml_collections.ConfigDict):
  """config.data.two_rooms -> WalksConfig (the world model's walks, here without actions)."""
  from jepa_jax.data.two_rooms_walks import WalksConfig
  return WalksConfig.from_settings(cfg.data.two_rooms)


def make_source(cfg, split: str, num: int | None = None):
  num = num or cfg.data.num_videos
  if data_source(cfg) == "two_rooms":
    if cfg.data.modality != "video":
      raise ValueError("config.data.source='two_rooms' needs config.data.modality='video'")
    from jepa_jax.data.two_rooms_videos import TwoRoomsVideoSource
    return TwoRoomsVideoSource(two_rooms_walks_config(cfg), cfg.data.physics.num_frames, num,
                               seed=cfg.seed, split=split)
  cls = {"video": PhysicsVideoSource, "image": PhysicsImageSource}.get(cfg.data.modality)
  if cls is None:
    raise ValueError(f"data.modality must be 'video' or 'image', got {cfg.data.modality!r}")
  return cls(physics_config(cfg), num, seed=cfg.seed, split=split)


@dataclasses.dataclass(frozen=True)
class JEPAModels:
  encoder: ViTEncoder
  predictor: MaskedPredictor
  grid_shape: tuple[int, ...]


def make_models(cfg: ml_collections.ConfigDict) -> JEPAModels:
  m = cfg.model
  grid = token_grid(input_shape(cfg), m.patch_size)
  common = dict(dtype=_dtype(m.dtype), scan=m.scan, remat=m.remat)
  encoder = make_encoder(m.size, m.patch_size, **common)
  p = m.predictor
  predictor = MaskedPredictor(grid_shape=grid, out_width=vit_size(m.size).width, width=p.width,
                              depth=p.depth, num_heads=p.num_heads, **common)
  return JEPAModels(encoder, predictor, grid)


def make_maskers(cfg: ml_collections.ConfigDict, grid_shape) -> list[MultiBlockMasker]:
  maskers = []
  for spec in cfg.masks:
    kw = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in spec.items()}
    maskers.append(MultiBlockMasker(grid_shape, MaskSpec(**kw)))
  if not maskers:
    raise ValueError("config.masks is empty: give at least one mask spec")
  return maskers


def dummy_batch(cfg, maskers, batch_size: int) -> dict:
  frames = np.zeros((batch_size, *input_shape(cfg), input_channels(cfg)), np.uint8)
  masks = [{"ctx": np.zeros((batch_size, m.n_ctx), np.int32),
            "tgt": np.zeros((batch_size, m.n_tgt), np.int32)} for m in maskers]
  return {"frames": frames, "masks": masks}


def init_state(models: JEPAModels, cfg, rng, batch, total_steps: int) -> JEPATrainState:
  """Pure; wrap in jax.eval_shape / jax.jit(out_shardings=...) to build it sharded."""
  enc_rng, pred_rng = jax.random.split(rng)
  view = batch["masks"][0]
  enc_params = models.encoder.init(enc_rng, batch["frames"][:1], view["ctx"][:1])
  z_ctx = models.encoder.apply(enc_params, batch["frames"][:1], view["ctx"][:1])
  pred_params = models.predictor.init(pred_rng, z_ctx, view["ctx"][:1], view["tgt"][:1])
  params = {"encoder": enc_params["params"], "predictor": pred_params["params"]}
  state = JEPATrainState.create(
      apply_fn=None, params=params, tx=make_optimizer(cfg.optim, total_steps),
      target_params={"encoder": jax.tree.map(jnp.copy, params["encoder"])})
  # A strong int32 step, like the one a checkpoint restores: with the weak-typed default a
  # resumed run traces a different signature and misses the (persistent) compilation cache.
  return state.replace(step=jnp.zeros((), jnp.int32))


def target_features(models: JEPAModels, target_params, frames, norm: str = "layer"):
  """EMA encoder on the full input, then the targets' normalisation: 'layer' (LayerNorm without
  affine, I-JEPA/V-JEPA) or 'position_batch' (standardised per token position and feature over
  the global batch, see losses.standardize_per_position; training-time statistics)."""
  h = models.encoder.apply({"params": target_params["encoder"]}, frames)
  if norm == "position_batch":
    return h, losses.standardize_per_position(h)
  if norm != "layer":
    raise ValueError(f"config.loss.target_norm={norm!r}: choose one of {losses.TARGET_NORMS}")
  return h, losses.layer_norm_no_affine(h)


def make_train_step(models: JEPAModels, cfg, total_steps: int):
  momentum_fn = ema_momentum(cfg.optim, total_steps)
  var_w, cov_w = cfg.loss.get("var_weight", 0.0), cfg.loss.get("cov_weight", 0.0)
  target_norm = cfg.loss.get("target_norm", "layer")
  if target_norm not in losses.TARGET_NORMS:
    raise ValueError(f"config.loss.target_norm={target_norm!r}: choose one of "
                     f"{losses.TARGET_NORMS}")
  vc_views = cfg.loss.get("vc_views", "future")
  if vc_views not in VC_VIEWS:
    raise ValueError(f"config.loss.vc_views={vc_views!r}: choose one of {VC_VIEWS}")
  future_views = [i for i, m in enumerate(cfg.masks) if m.get("context_frames") is not None]
  reg_views = future_views if vc_views == "future" else list(range(len(cfg.masks)))
  if (var_w or cov_w) and not reg_views:
    raise ValueError("loss.var_weight/cov_weight regularise the context encoder of past -> "
                     "future mask views (loss.vc_views='future'), and there is none: add a "
                     "masks entry with context_frames, set loss.vc_views='all' (every view, "
                     "tube views by their content), or set the weights to 0")
  num_tokens = int(np.prod(models.grid_shape))
  hard_weight = float(cfg.loss.get("hard_weight", 0.0))
  losses.check_hard_weight(hard_weight, "config.loss.hard_weight")

  def loss_fn(params, target_params, batch):
    h_raw, h = target_features(models, target_params, batch["frames"], target_norm)
    h = jax.lax.stop_gradient(h)
    view_losses, view_fits, preds, reg = [], [], [], {}
    for i, view in enumerate(batch["masks"]):
      z_ctx = models.encoder.apply({"params": params["encoder"]}, batch["frames"], view["ctx"])
      pred = models.predictor.apply({"params": params["predictor"]}, z_ctx, view["ctx"],
                                    view["tgt"])
      target = jnp.take_along_axis(h, view["tgt"][..., None], axis=1)
      fit, plain = losses.focal_token_loss(pred, target, cfg.loss.kind, hard_weight)
      view_fits.append(fit)
      view_losses.append(plain)
      preds.append(pred)
      if i in reg_views and (var_w or cov_w):
        if i in future_views:  # the same token positions in every video: per position
          reg[f"var_view{i}"], reg[f"cov_view{i}"] = losses.per_position_vc_loss(z_ctx)
        else:  # each video shows its own positions: pooled deviations from position means
          reg[f"var_view{i}"], reg[f"cov_view{i}"] = losses.masked_content_vc_loss(
              z_ctx, view["ctx"], num_tokens)
    loss = jnp.mean(jnp.stack(view_fits))
    if reg:
      n = len(reg_views)
      loss = loss + (var_w * sum(v for k, v in reg.items() if k.startswith("var")) +
                     cov_w * sum(v for k, v in reg.items() if k.startswith("cov"))) / n
    aux = {"views": view_losses, "target_raw": jax.lax.stop_gradient(h_raw), "pred": preds[0],
           "reg": reg}
    return loss, aux

  def train_step(state: JEPATrainState, batch):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.target_params, batch)
    new_state = state.apply_gradients(grads=grads)
    m = momentum_fn(state.step)
    new_state = new_state.replace(
        target_params={"encoder": ema_update(state.target_params["encoder"],
                                             new_state.params["encoder"], m)})
    metrics = {"loss": loss, "grad_norm": _global_norm(grads), "ema_momentum": m,
               **current_hparams(new_state.opt_state),
               **{f"loss_view{i}": v for i, v in enumerate(aux["views"])},
               **{f"reg/{k}": v for k, v in aux["reg"].items()},
               **losses.collapse_stats(aux["target_raw"], "target"),
               "pred/std_mean": losses.feature_std(aux["pred"]).mean()}
    return new_state, metrics

  return train_step


def _global_norm(tree) -> Any:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def make_task(cfg, process_index: int = 0, process_count: int = 1):
  """Everything the generic loop needs for JEPA pretraining."""
  from jepa_jax.data.pipeline import pretrain_dataset
  from jepa_jax.train.loop import Task
  models = make_models(cfg)
  maskers = make_maskers(cfg, models.grid_shape)
  example = dummy_batch(cfg, maskers, 1)
  dataset = pretrain_dataset(make_source(cfg, "train"), maskers, cfg.batch_size, cfg.seed,
                             process_index, process_count, cfg.data.num_threads,
                             cfg.data.prefetch)
  task = Task(init=lambda rng: init_state(models, cfg, rng, example, cfg.total_steps),
              train_step=make_train_step(models, cfg, cfg.total_steps), dataset=dataset,
              total_steps=cfg.total_steps, global_batch_size=cfg.batch_size)
  return task, models
