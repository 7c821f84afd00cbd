"""Action-conditioned world models: models, state init, data and the train step per recipe.

Recipes (config.recipe):
  pldm       end to end from pixels (PLDM / EB-JEPA): open-loop multi-step latent prediction
             + VICReg variance/covariance + temporal smoothness + inverse dynamics.
  sigreg     the same with SIGReg (LeJEPA) in place of variance/covariance.
  two_stage  V-JEPA 2-AC: a frozen encoder taken from another run's checkpoint
             (config.two_stage.encoder_workdir): a V-JEPA pretrained on Two Rooms videos by
             experiments.pretrain (encoder.kind='vjepa'), or another world model's encoder. Only
             the action-conditioned predictor trains, with teacher-forcing + rollout losses.

    obs (B,T,H,W,C) -enc-> z (B,T,N,D) ; z0 + actions -predictor rollout-> ẑ (B,H,N,D)
    loss = pred(ẑ, z[:,1:]) + tf(pred(z[:,:-1], a), z[:,1:]) + anti-collapse(z) + smooth(z) + idm
"""

import dataclasses

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jepa_jax import losses
from jepa_jax.data import two_rooms_walks as walks
from jepa_jax.nn import dynamics
from jepa_jax.nn.convnet import encode_frames, make_frame_encoder
from jepa_jax.nn.heads import InverseDynamics, flatten_tokens
from jepa_jax.state import JEPATrainState, current_hparams, make_optimizer

RECIPES = ("pldm", "sigreg", "two_stage")
ACTION_DIM = 2
TEST_STREAM = 1_000_003  # seed offset of the held-out trajectories (never used for training)


# ----------------------------------------------------------------------------- config checks

def validate(cfg: ml_collections.ConfigDict) -> None:
  """Clear errors naming the config key and the fix."""
  if cfg.recipe not in RECIPES:
    raise ValueError(f"config.recipe={cfg.recipe!r}: choose one of {RECIPES}")
  t, s = cfg.data.num_frames, cfg.model.predictor.stride
  if t < 2:
    raise ValueError(f"config.data.num_frames={t}: need >= 2 frames (one transition)")
  if s < 1 or (t - 1) % s:
    raise ValueError(f"config.model.predictor.stride={s} must divide data.num_frames - 1 = {t - 1}")
  h = (t - 1) // s
  if not 0 <= cfg.loss.rollout_steps <= h:
    raise ValueError(f"config.loss.rollout_steps={cfg.loss.rollout_steps}: must be in [0, {h}] "
                     "(0 = all predictable steps of the clip)")
  if cfg.recipe == "two_stage" and not cfg.two_stage.encoder_workdir:
    raise ValueError("config.recipe='two_stage' needs config.two_stage.encoder_workdir: the workdir "
                     "of an experiments.pretrain run (model.encoder.kind='vjepa') or of a trained "
                     "pldm/sigreg run whose encoder is frozen here")
  if cfg.data.source not in ("procedural", "offline"):
    raise ValueError(f"config.data.source={cfg.data.source!r}: choose 'procedural' or 'offline'")
  if cfg.data.source == "offline" and not cfg.data.path:
    raise ValueError("config.data.source='offline' needs config.data.path (a directory written "
                     "by scripts/make_two_rooms_data.py)")
  if cfg.batch_size < 2:
    raise ValueError(f"config.batch_size={cfg.batch_size}: variance terms need >= 2 samples")


def walks_config(cfg, random_layout: bool | None = None) -> walks.WalksConfig:
  return walks.WalksConfig.from_settings(cfg.data, random_layout)


# ----------------------------------------------------------------------------- models

@dataclasses.dataclass(frozen=True)
class WMModels:
  encoder: nn.Module
  predictor: nn.Module
  idm: nn.Module
  stride: int


def make_models(cfg) -> WMModels:
  p = cfg.model.predictor
  return WMModels(encoder=make_frame_encoder(cfg.model.encoder),
                  predictor=dynamics.make_predictor(p, ACTION_DIM),
                  idm=InverseDynamics(action_dim=ACTION_DIM * p.stride,
                                      hidden=tuple(cfg.model.idm_hidden)),
                  stride=p.stride)


def example_obs(cfg, batch: int = 1, frames: int | None = None) -> np.ndarray:
  t = cfg.data.num_frames if frames is None else frames
  return np.zeros((batch, t, cfg.data.size, cfg.data.size, 2), np.uint8)


def init_params(models: WMModels, cfg, rng) -> dict:
  k_enc, k_pred, k_idm = jax.random.split(rng, 3)
  obs = example_obs(cfg, 1, models.stride + 1)
  enc = models.encoder.init(k_enc, obs[:, 0])
  z_BTND = encode_frames(models.encoder, enc, obs)
  a_BTA = jnp.zeros((1, 1, ACTION_DIM * models.stride))
  pred = models.predictor.init(k_pred, z_BTND[:, :1], a_BTA)
  idm = models.idm.init(k_idm, z_BTND[:, 0], z_BTND[:, -1])
  return {"encoder": enc["params"], "predictor": pred["params"], "idm": idm["params"]}


def init_state(models: WMModels, cfg, rng, frozen_encoder=None) -> JEPATrainState:
  """Pure. For two_stage, `frozen_encoder` params live in `target_params` (never updated)."""
  params = init_params(models, cfg, rng)
  target = {}
  if cfg.recipe == "two_stage":
    if frozen_encoder is None:
      raise ValueError("two_stage init needs the frozen encoder params")
    target = {"encoder": frozen_encoder}
    params = {"predictor": params["predictor"]}
  state = JEPATrainState.create(apply_fn=None, params=params, target_params=target,
                                tx=make_optimizer(cfg.optim, cfg.total_steps))
  return state.replace(step=jnp.zeros((), jnp.int32))  # strong int32, as restored (see pretrain)


def encoder_params(state_params: dict, state_target: dict) -> dict:
  return state_params["encoder"] if "encoder" in state_params else state_target["encoder"]


# ----------------------------------------------------------------------------- loss

def subsample(obs_BTHWC, act_BTA, stride: int):
  """Frames 0, s, 2s, ... and the action chunks between them."""
  return obs_BTHWC[:, ::stride], dynamics.chunk_actions(act_BTA, stride)


def world_model_losses(models: WMModels, cfg, params, frozen, batch, key):
  """Total loss and a dict of its terms + diagnostics. Pure."""
  lc = cfg.loss
  obs, act = subsample(batch["obs"], batch["act"], models.stride)
  enc = encoder_params(params, frozen)
  z_BTND = encode_frames(models.encoder, {"params": enc}, obs).astype(jnp.float32)
  if cfg.recipe == "two_stage":
    z_BTND = jax.lax.stop_gradient(z_BTND)
  target = jax.lax.stop_gradient(z_BTND) if lc.stop_grad_target else z_BTND
  pred_vars = {"params": params["predictor"]}
  terms = {}
  loss = 0.0

  h = lc.rollout_steps or act.shape[1]
  if lc.rollout > 0:
    zhat_BHND = dynamics.rollout(models.predictor, pred_vars, z_BTND[:, 0], act[:, :h])
    terms["rollout"], per_h = losses.multistep_prediction_loss(zhat_BHND, target[:, 1:h + 1],
                                                               lc.kind)
    terms["rollout_h1"], terms["rollout_hlast"] = per_h[0], per_h[-1]
    loss += lc.rollout * terms["rollout"]
  if lc.teacher_forcing > 0:
    ztf_BTND = models.predictor.apply(pred_vars, z_BTND[:, :-1], act)
    terms["teacher_forcing"], _ = losses.multistep_prediction_loss(ztf_BTND, target[:, 1:],
                                                                   lc.kind)
    loss += lc.teacher_forcing * terms["teacher_forcing"]

  if cfg.recipe != "two_stage":
    z_flat = flatten_tokens(z_BTND)  # (B, T, F): anti-collapse acts on the whole latent
    if lc.var > 0:
      terms["var"] = losses.variance_loss(z_flat, gamma=lc.std_target)
      loss += lc.var * terms["var"]
    if lc.cov > 0:
      terms["cov"] = losses.covariance_loss(z_flat)
      loss += lc.cov * terms["cov"]
    if lc.sigreg > 0:
      terms["sigreg"] = losses.sigreg_loss(z_flat, key, lc.sigreg_slices)
      loss += lc.sigreg * terms["sigreg"]
    if lc.smooth > 0:
      terms["smooth"] = losses.temporal_smoothness_loss(z_flat) / z_flat.shape[-1]
      loss += lc.smooth * terms["smooth"]
    if lc.idm > 0:
      a_hat = models.idm.apply({"params": params["idm"]}, z_BTND[:, :-1], z_BTND[:, 1:])
      terms["idm"] = losses.inverse_dynamics_loss(a_hat, act)
      loss += lc.idm * terms["idm"]

  terms["z"] = jax.lax.stop_gradient(flatten_tokens(z_BTND))
  return loss, terms


def collapse_metrics(z_BTF, step, cfg):
  """Collapse diagnostics of the latents on logging steps only: the SVD behind the effective
  rank cost ~5x the rest of a cpu_default step on CPU, so other steps report zeros (never
  logged: the loop logs at multiples of log_every and at the last step)."""
  done = step + 1
  log_now = (done % cfg.log_every == 0) | (done >= cfg.total_steps)
  stats = lambda z: losses.collapse_stats(z, "z")
  zeros = lambda z: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(stats, z))
  return jax.lax.cond(log_now, stats, zeros, z_BTF)


def make_train_step(models: WMModels, cfg):
  key0 = jax.random.key(cfg.seed + 17)

  def train_step(state: JEPATrainState, batch):
    key = jax.random.fold_in(key0, state.step)
    grad_fn = jax.value_and_grad(
        lambda p: world_model_losses(models, cfg, p, state.target_params, batch, key),
        has_aux=True)
    (loss, terms), grads = grad_fn(state.params)
    terms.update(collapse_metrics(terms.pop("z"), state.step, cfg))
    new_state = state.apply_gradients(grads=grads)
    gnorm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    metrics = {"loss": loss, "grad_norm": gnorm, **current_hparams(new_state.opt_state), **terms}
    return new_state, metrics

  return train_step


# ----------------------------------------------------------------------------- data

class _GenerateBatch(grain.transforms.Map):
  """Batch number g -> trajectories g*b .. g*b + b - 1 of the seed's stream (deterministic)."""

  def __init__(self, wcfg, key_data, batch: int, length: int):
    self.wcfg, self.key_data, self.batch, self.length = wcfg, key_data, batch, length

  def map(self, g):
    key = jax.random.wrap_key_data(np.asarray(self.key_data, np.uint32))
    out = walks.generate_walks(key, self.wcfg, self.batch, self.length, int(g) * self.batch)
    out = jax.device_get(out)
    return {"obs": out["obs"], "act": out["act"], "state": out["state"]}


def train_key(cfg):
  return jax.random.key(cfg.seed)


def make_dataset(cfg, process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
  """Infinite host-local batches {'obs' uint8 (b,T,H,W,2), 'act' (b,T-1,2), 'state' (b,T,2)}."""
  if cfg.batch_size % process_count:
    raise ValueError(f"config.batch_size={cfg.batch_size} not divisible by {process_count} "
                     "processes")
  b = cfg.batch_size // process_count
  opts = grain.ReadOptions(num_threads=cfg.data.num_threads, prefetch_buffer_size=cfg.data.prefetch)
  if cfg.data.source == "procedural":
    key_data = np.asarray(jax.random.key_data(train_key(cfg)))
    ds = grain.MapDataset.range(2**31 - 1)[process_index::process_count]
    ds = ds.map(_GenerateBatch(walks_config(cfg), key_data, b, cfg.data.num_frames))
    return ds.to_iter_dataset(opts)
  src = walks.TwoRoomsWindowSource(cfg.data.path, cfg.data.num_frames)
  ds = grain.MapDataset.source(src).shuffle(seed=cfg.seed)[process_index::process_count]
  ds = ds.repeat(None).map(lambda e: {k: e[k] for k in ("obs", "act", "state")})
  return ds.batch(b, drop_remainder=True).to_iter_dataset(opts)


def held_out_walks(cfg, num: int, length: int) -> dict:
  """Random-layout trajectories from a stream disjoint from training (numpy)."""
  key = jax.random.key(cfg.seed + TEST_STREAM)
  return jax.device_get(walks.generate_walks(key, walks_config(cfg, random_layout=True), num,
                                             length))


def train_walks(cfg, num: int, length: int) -> dict:
  """The first `num` trajectories of the training stream (procedural data)."""
  return jax.device_get(walks.generate_walks(train_key(cfg), walks_config(cfg), num, length))


# ----------------------------------------------------------------------------- task

def load_frozen_encoder(cfg):
  """Encoder params of the run in config.two_stage.encoder_workdir (its latest checkpoint): an
  experiments.pretrain run (V-JEPA, encoder.kind='vjepa'; its EMA target encoder, as V-JEPA 2-AC
  uses) or another world-model run (its encoder, any other kind)."""
  if cfg.model.encoder.kind == "vjepa":
    return _load_vjepa_encoder(cfg)
  from jepa_jax.world_model import load_world_model
  wm, params = load_world_model(cfg.two_stage.encoder_workdir)
  mine = make_frame_encoder(cfg.model.encoder)
  if wm.encoder != mine:
    raise ValueError("config.model.encoder must build the encoder of two_stage.encoder_workdir: "
                     f"{wm.encoder} != {mine}")
  return jax.tree.map(jnp.asarray, params["encoder"])


def _load_vjepa_encoder(cfg):
  from jepa_jax.eval.pretrained import load_pretrained
  from jepa_jax.train import pretrain
  src, _, params, _ = load_pretrained(cfg.two_stage.encoder_workdir)
  e, m = cfg.model.encoder, src.model
  want = dict(size=e.vit_size, patch_size=(e.get("tubelet", 2), e.patch_size, e.patch_size),
              channels=2, scan=False)
  have = dict(size=m.size, patch_size=tuple(m.patch_size), channels=pretrain.input_channels(src),
              scan=m.scan)
  if want != have:
    raise ValueError(f"two_stage.encoder_workdir={cfg.two_stage.encoder_workdir!r} holds a V-JEPA "
                     f"with {have}, but config.model.encoder (vit_size, tubelet, patch_size) asks "
                     f"for {want}: pretrain with experiments/configs/pretrain.py:cpu_two_rooms or "
                     "set model.encoder to match")
  return {"vit": jax.tree.map(jnp.asarray, params["target_encoder"])}


def make_task(cfg, process_index: int = 0, process_count: int = 1):
  from jepa_jax.train.loop import Task
  validate(cfg)
  models = make_models(cfg)
  frozen = load_frozen_encoder(cfg) if cfg.recipe == "two_stage" else None
  task = Task(init=lambda rng: init_state(models, cfg, rng, frozen),
              train_step=make_train_step(models, cfg),
              dataset=make_dataset(cfg, process_index, process_count),
              total_steps=cfg.total_steps, global_batch_size=cfg.batch_size)
  return task, models
