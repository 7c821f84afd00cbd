"""Training and surprise for the frame-level video JEPA (nn/frame_jepa.py).

Objective, per window of K + R frames (a training clip holds n of them, see below): the
predictor maps the online encoder's latents of frames 1..K to those of frames K + 1..K + A
(A = `ahead`, 1 by default: the next frame) and, for R > A, rolls on, feeding back its
predictions; each is regressed (L1) onto the layer-normed latents of an EMA target encoder
(stop-gradient), as V-JEPA's loss. VICReg variance / covariance terms on the online latents
keep the encoder from collapsing early, before the EMA target has drifted away from it.

Predictions live in the layer-normed target space, so feeding them back (R > A, or surprise
over more than A predicted frames) needs the predictor's inputs layer-normed too
(`input_norm`). For one-frame prediction raw inputs detect more violations (mean pairwise
accuracy 74.8 % vs 68.5 % after 1500 steps, BUILD_NOTES session 12), so that is the default.
A > 1 predicts several frames directly, without feedback, so a small deviation from the laws
(a ball that stops falling) grows with the horizon; on the benchmark it did worse (A = 4:
54.3 % vs 74.8 % after 1500 steps, BUILD_NOTES session 13), so A = 1 is the default. For
A > 1, `separate_trunks` gives each predicted frame its own predictor trunk and `frame_weights`
weighs the predicted frames in the loss (A = 2 in the default's budget: neither met every bar
of the benchmark, BUILD_NOTES session 33).

A training clip may hold several overlapping windows (`windows_per_clip` n: clips of
K + R + n - 1 frames): every frame is encoded once and each window predicts from its own K
frames, so n predictions cost about one clip's encoder work (4 windows: 1.6x the windows per
second). `residual` predicts the change from the last context frame's target latents; it
removes the predictor's error on static background but did worse on the benchmark (74.5 % vs
81.0 % for the same training, BUILD_NOTES session 14), so it is off by default.

Most of a frame is easy to predict (background, free flight); the errors that decide the
benchmark sit at rare events, ball contacts above all (BUILD_NOTES session 14). `hard_weight` a
weights each token's error by (error / batch mean)^a, without gradient through the weight (a
focal-loss-style reweighting), so those rare tokens get more of the predictor's capacity
(session 15: a = 3 is the default; a = 1-2 also left the unweighted loss a little lower).
The weights are not renormalised: their mean, mean(e^a) / mean(e)^a >= 1, also scales the
prediction term against the VICReg terms.

Surprise of a window of W frames with C context frames (C >= K): the predictor rolls out frames
C..W-1 from the last K context latents; each token's error is the L1 over its features, and a
frame's error pools its tokens (all, or the top-k) by a power mean of order q (`pool_tokens`:
q = 1 the mean; q = 2, the quadratic mean, weighs the few tokens a violation moves above the
many that carry small errors); the window's error is the mean over its predicted frames.
"""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa_jax import losses
from jepa_jax.nn.frame_jepa import FrameEncoder, NextFramePredictor
from jepa_jax.train import checkpoint
from jepa_jax.train.clip_training import make_optimizer, run_steps, sample_clips

TRAINED = ("encoder", "predictor")  # the optimiser's params; "target_encoder" follows by EMA
DILATIONS = (1, 2, 4, 1)  # the predictor's default residual blocks (receptive field 19 cells)
# Surprise's pooling over a frame's token errors: the quadratic mean (experiments/configs/
# intuitive_physics.py, frame.token_power, has the figures it was chosen on).
TOKEN_POWER = 2.0


def check_predicted_frames(steps: int, input_norm: bool, ahead: int = 1):
  """Predicting more frames than the predictor outputs at once (`ahead`) feeds predictions back
  as inputs (see the module doc)."""
  if steps > ahead and not input_norm:
    raise ValueError(f"predicting {steps} frames with a predictor of {ahead} frame(s) ahead feeds "
                     "predictions (layer-normed) back as inputs, which needs "
                     "frame.input_norm=True; or set frame.rollout and frame.horizon <= "
                     f"frame.ahead ({ahead})")


def check_hard_weight(hard_weight: float):
  losses.check_hard_weight(hard_weight, "frame.hard_weight")


def check_dilations(dilations) -> tuple[int, ...]:
  """The predictor's residual blocks, one dilation each; its receptive field is about
  2 * sum(dilations) + 3 cells of 4 px (nn/frame_jepa.py)."""
  dilations = tuple(dilations)
  if not dilations or not all(isinstance(d, int) and d >= 1 for d in dilations):
    raise ValueError(f"frame.dilations={dilations}: one positive integer per residual block of "
                     "the predictor, e.g. (1, 2, 4, 1)")
  return dilations


def check_rollout(rollout: int, input_norm: bool, ahead: int = 1):
  """Training predicts `rollout` frames per clip: at least the `ahead` the predictor outputs
  (untrained outputs would be scored), more only with feedback (check_predicted_frames)."""
  if rollout < max(ahead, 1):
    raise ValueError(f"frame.rollout={rollout}: train at least the frame.ahead={ahead} frame(s) "
                     "the predictor outputs (untrained outputs would be scored); set "
                     f"frame.rollout >= {ahead}")
  check_predicted_frames(rollout, input_norm, ahead)


@dataclasses.dataclass(frozen=True)
class FrameJEPA:
  encoder: FrameEncoder
  predictor: NextFramePredictor
  context: int  # K frames the predictor sees
  input_norm: bool = False  # layer-norm the predictor's inputs (required to feed predictions back)
  # Predict the change: next = (layer-normed target latents of the last frame) + predictor output.
  residual: bool = False

  def encode(self, params_enc, frames_BTHWC):
    b, t = frames_BTHWC.shape[:2]
    frames = frames_BTHWC.reshape(b * t, *frames_BTHWC.shape[2:])
    z = self.encoder.apply({"params": params_enc}, frames)
    return z.reshape(b, t, *z.shape[1:])

  @property
  def ahead(self) -> int:
    return self.predictor.ahead

  def predict(self, params_pred, z_BKhwD):
    """-> (B, ahead, h, w, D): the next `ahead` frames from the last K."""
    return self.predictor.apply({"params": params_pred}, z_BKhwD)

  def predictor_inputs(self, z):
    """Encoder latents as the predictor takes them: layer-normed when input_norm."""
    return losses.layer_norm_no_affine(z) if self.input_norm else z

  def rollout(self, params_pred, z_BKhwD, steps: int, base_BhwD=None):
    """Context latents of K frames -> predictions of the next `steps` (B, steps, h, w, D), `ahead`
    at a time from the last K frames, predictions fed back. With `residual`, each of the `ahead`
    outputs of a call is a change from the same base: `base_BhwD` (the layer-normed target
    latents of the last context frame) for the first call, the last prediction after."""
    check_predicted_frames(steps, self.input_norm, self.ahead)
    if self.residual and base_BhwD is None:
      raise ValueError("a residual frame JEPA predicts changes: pass the last context frame's "
                       "target latents (base_BhwD)")
    preds = []
    while len(preds) < steps:
      new = self.predict(params_pred, z_BKhwD[:, -self.context:])
      if self.residual:
        new = new + base_BhwD[:, None]
        base_BhwD = new[:, -1]
      preds.extend(new[:, i] for i in range(self.ahead))
      z_BKhwD = jnp.concatenate([z_BKhwD, new], axis=1)
    return jnp.stack(preds[:steps], axis=1)

  def target_latents(self, params_target, frames_BTHWC):
    """Layer-normed target-encoder latents (what is predicted), no gradient."""
    return jax.lax.stop_gradient(losses.layer_norm_no_affine(
        self.encode(params_target, frames_BTHWC)))

  def targets_and_bases(self, params_target, clips_BTHWC, first_predicted: int, n: int = 1):
    """Target latents of frames first_predicted.. (B, T', h, w, D), and with `residual` the
    bases of n windows predicting from first_predicted, first_predicted + 1, ...: the target
    latents of the frame before each, (B * n, h, w, D); None without `residual`."""
    start = first_predicted - 1 if self.residual else first_predicted
    target = self.target_latents(params_target, clips_BTHWC[:, start:])
    if not self.residual:
      return target, None
    return target[:, 1:], target[:, :n].reshape(-1, *target.shape[2:])


def make_model(context: int, width: int, dim: int, input_norm: bool = False,
               dilations=DILATIONS, ahead: int = 1, residual: bool = False,
               separate_trunks: bool = False) -> FrameJEPA:
  """The architecture from its hyperparameters (also what `save` records, see `architecture`)."""
  if context < 1:
    raise ValueError(f"frame.context={context}: the predictor needs at least 1 frame")
  if ahead < 1:
    raise ValueError(f"frame.ahead={ahead}: the predictor outputs at least 1 frame")
  dilations = check_dilations(dilations)
  return FrameJEPA(FrameEncoder(width, dim),
                   NextFramePredictor(width, dim, dilations, ahead, separate_trunks), context,
                   input_norm, residual)


def init_params(model: FrameJEPA, frame_shape, seed: int) -> dict:
  """{'encoder', 'predictor', 'target_encoder'}; the target starts as a copy of the encoder."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  enc = model.encoder.init(k1, jnp.zeros((1, *frame_shape), jnp.uint8))["params"]
  z = model.encoder.apply({"params": enc}, jnp.zeros((1, *frame_shape), jnp.uint8))
  pred = model.predictor.init(k2, jnp.zeros((1, model.context, *z.shape[1:])))["params"]
  return {"encoder": enc, "predictor": pred, "target_encoder": jax.tree.map(jnp.copy, enc)}


def clip_frames(context: int, rollout: int, windows_per_clip: int = 1,
                video_frames: int | None = None) -> int:
  """Frames per training clip: `windows_per_clip` overlapping windows of context + rollout;
  checked against the training videos' length when given."""
  if windows_per_clip < 1:
    raise ValueError(f"frame.windows_per_clip={windows_per_clip}: at least 1 training window "
                     "per clip")
  clip = context + rollout + windows_per_clip - 1
  if video_frames is not None and clip > video_frames:
    raise ValueError(f"frame JEPA training clips of {clip} frames (frame.context + frame.rollout"
                     f" + frame.windows_per_clip - 1) do not fit the {video_frames}-frame "
                     "training videos: lower one of them")
  return clip


def windows(x_BTX, length: int):
  """Every run of `length` consecutive frames of (B, T, ...) -> (B * n, length, ...), n = T -
  length + 1, the windows of one clip adjacent."""
  n = x_BTX.shape[1] - length + 1
  x = jnp.stack([x_BTX[:, j:j + length] for j in range(n)], axis=1)
  return x.reshape(-1, *x.shape[2:])


def check_frame_weights(frame_weights, rollout: int):
  """-> the per-predicted-frame loss weights as floats scaled to mean 1 (None: all equal)."""
  if frame_weights is None or not len(frame_weights):
    return None
  w = np.asarray(frame_weights, np.float64)
  if w.shape != (rollout,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
    raise ValueError(f"frame.frame_weights={tuple(frame_weights)}: give one finite weight >= 0 "
                     f"per predicted frame (frame.rollout={rollout}), not all 0; () weighs "
                     "them equally")
  return tuple(float(x) for x in w / w.mean())


def loss_fn(model: FrameJEPA, params, clips_BTHWC, var_weight: float, cov_weight: float,
            rollout: int | None = None, hard_weight: float = 0.0, frame_weights=None):
  """-> (loss, metrics) for clips of K + R + n - 1 frames (R = rollout steps, R = T - K when
  None): each of the n windows of K + R frames predicts its last R frames from its first K.
  Every frame is encoded once per clip, so n > 1 trains n predictions for about the encoder
  cost of one (the windows overlap). The loss is the mean surprise of those windows.
  hard_weight a > 0 weights each token's error by (its error / the batch's mean token error of
  its predicted frame)^a (no gradient through the weight), as a focal loss does: rare hard
  events (contacts) count more. frame_weights (one per predicted frame, check_frame_weights)
  weigh the R predicted frames' terms, e.g. the next frame above farther ones.
  metrics['pred_loss'] stays the plain mean."""
  k, t = model.context, clips_BTHWC.shape[1]
  r = t - k if rollout is None else rollout
  if not 1 <= r <= t - k:
    raise ValueError(f"clips of {t} frames cannot hold frame.context={k} + frame.rollout={r} "
                     "frames: cut clips of at least context + rollout frames (clip_frames)")
  z_BThwD = model.encode(params["encoder"], clips_BTHWC[:, :t - r])  # frames that are context
  target, base = model.targets_and_bases(params["target_encoder"], clips_BTHWC, k, t - k - r + 1)
  pred = model.rollout(params["predictor"], windows(model.predictor_inputs(z_BThwD), k), r, base)
  token_err = jnp.mean(jnp.abs(pred - windows(target, r)), axis=-1)
  # Focal weights relative to each predicted frame's mean: errors grow with the horizon, and a
  # far frame would otherwise take every weight (one frame: the batch mean).
  # A frame's constant weight leaves its focal weights (ratios within the frame) unchanged.
  w_R = check_frame_weights(frame_weights, r)
  weighted = token_err if w_R is None else token_err * jnp.asarray(w_R)[None, :, None, None]
  fit, _ = losses.focal_mean(weighted, hard_weight, axis=(0, 2, 3))
  pred_loss = jnp.mean(token_err)
  var, cov = losses.variance_loss(z_BThwD), losses.covariance_loss(z_BThwD)
  metrics = {"pred_loss": pred_loss, "var_loss": var, "cov_loss": cov,
             "latent_std": jnp.mean(losses.feature_std(z_BThwD))}
  return fit + var_weight * var + cov_weight * cov, metrics


def make_train_step(model: FrameJEPA, tx, ema: float, var_weight: float, cov_weight: float,
                    rollout: int | None = None, hard_weight: float = 0.0, frame_weights=None):
  """(params, opt_state, clips) -> (params, opt_state, loss, metrics); the EMA update of the
  target encoder happens inside the step. Jit it (donating params and opt_state). `rollout`,
  `hard_weight` and `frame_weights` as in loss_fn."""

  def step(params, opt_state, clips_BTHWC):
    online = {k: params[k] for k in TRAINED}

    def objective(p):
      return loss_fn(model, {**params, **p}, clips_BTHWC, var_weight, cov_weight, rollout,
                     hard_weight, frame_weights)

    (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(online)
    updates, opt_state = tx.update(grads, opt_state, online)
    online = optax.apply_updates(online, updates)
    target = jax.tree.map(lambda t, o: ema * t + (1.0 - ema) * o, params["target_encoder"],
                          online["encoder"])
    return {**online, "target_encoder": target}, opt_state, loss, metrics

  return step


def tokens_per_frame(frame_shape) -> int:
  """The encoder's token grid is H/4 x W/4 (nn/frame_jepa.py)."""
  return (frame_shape[0] // 4) * (frame_shape[1] // 4)


def check_top_k(top_k: int, num_tokens: int):
  if not 0 <= top_k <= num_tokens:
    raise ValueError(f"frame.top_k={top_k}: pool 0 (mean over all tokens) to {num_tokens} (the "
                     "tokens per frame) of the largest token errors")


def check_token_power(token_power: float) -> float:
  if not (np.isfinite(token_power) and token_power >= 1):
    raise ValueError(f"frame.token_power={token_power}: the order of the power mean over a "
                     "frame's token errors must be finite and >= 1 (1: the mean, 2: the "
                     "quadratic mean)")
  return float(token_power)


def pool_tokens(err_BHhwD, top_k: int = 0, token_power: float = 1.0):
  """Per predicted frame, the error of its tokens (mean over D), pooled over the token grid:
  all tokens (top_k 0) or the top_k largest (a violation involves one object, a few tokens; but
  natural peaks sharpen too: 79.5-80.7 % vs 82.3 % for the mean, BUILD_NOTES session 13), by
  their power mean of order `token_power` (1: the mean); then the mean over frames -> (B,)."""
  tok_BHN = err_BHhwD.mean(-1).reshape(*err_BHhwD.shape[:2], -1)
  check_top_k(top_k, tok_BHN.shape[-1])
  q = check_token_power(token_power)
  if top_k:
    tok_BHN = jax.lax.top_k(tok_BHN, top_k)[0]
  if q == 1:
    return tok_BHN.mean(axis=(1, 2))
  # Relative to each frame's largest token error: no overflow for large q.
  top_BH1 = tok_BHN.max(-1, keepdims=True)
  rel_BHN = tok_BHN / jnp.where(top_BH1 > 0, top_BH1, 1.0)
  return (top_BH1[..., 0] * jnp.mean(rel_BHN ** q, -1) ** (1.0 / q)).mean(-1)


def describe_pooling(top_k: int = 0, token_power: float = 1.0) -> str:
  """'mean', 'quadratic mean', 'power mean (q = 3) of the top 16', ... for reports."""
  how = {1.0: "mean", 2.0: "quadratic mean"}.get(float(token_power),
                                                 f"power mean (q = {token_power:g})")
  return f"{how} of the top {top_k}" if top_k else how


@functools.cache  # one function per (model, pooling): the surprise driver compiles it once
def window_error_fn(model: FrameJEPA, top_k: int = 0, token_power: float = 1.0):
  """The surprise driver's interface: (params, clips_BWHWC uint8, context_frames static) -> (B,).
  top_k and token_power as in `pool_tokens`."""
  check_token_power(token_power)
  k = model.context

  def window_error(params, clips_BWHWC, context_frames: int):
    w = clips_BWHWC.shape[1]
    if not k <= context_frames < w:
      raise ValueError(f"context_frames={context_frames}: the frame JEPA needs at least its "
                       f"{k} context frames and at least one frame to predict in a window of {w}")
    z = model.predictor_inputs(
        model.encode(params["encoder"], clips_BWHWC[:, context_frames - k:context_frames]))
    target, base = model.targets_and_bases(params["target_encoder"], clips_BWHWC, context_frames)
    pred = model.rollout(params["predictor"], z, w - context_frames, base)
    return pool_tokens(jnp.abs(pred - target), top_k, token_power)

  return window_error


def train_frame_jepa(source, *, context: int, width: int, dim: int, steps: int, batch_size: int,
                     lr: float, ema: float, var_weight: float, cov_weight: float,
                     rollout: int = 1, input_norm: bool = False, ahead: int = 1,
                     clips_per_video: int = 4, windows_per_clip: int = 1,
                     residual: bool = False, hard_weight: float = 0.0, seed: int = 0,
                     dilations=DILATIONS, separate_trunks: bool = False, frame_weights=(),
                     log_every: int = 50, verbose: bool = False):
  """Trains on clips of `source` videos ({'frames': (T, H, W, C) uint8}), each holding
  windows_per_clip windows of context + rollout frames (clip_frames). -> (model, params,
  history)."""
  check_rollout(rollout, input_norm, ahead)
  check_hard_weight(hard_weight)
  frame_weights = check_frame_weights(frame_weights, rollout)
  clip_len = clip_frames(context, rollout, windows_per_clip)
  model = make_model(context, width, dim, input_norm, dilations, ahead=ahead, residual=residual,
                     separate_trunks=separate_trunks)
  frame_shape = source[0]["frames"].shape[1:]
  params = init_params(model, frame_shape, seed)
  tx = make_optimizer(lr, steps)
  opt_state = tx.init({k: params[k] for k in TRAINED})
  step = jax.jit(make_train_step(model, tx, ema, var_weight, cov_weight, rollout, hard_weight,
                                 frame_weights),
                 donate_argnums=(0, 1))
  rng = np.random.default_rng(seed)
  params, history = run_steps(
      step, params, opt_state,
      lambda: sample_clips(source, rng, batch_size, clip_len, clips_per_video),
      steps, log_every, "frame JEPA" if verbose else "")
  return model, params, history


# ----------------------------------------------------------------------------- save / load

META = "frame_jepa.json"


def architecture(model: FrameJEPA) -> dict:
  """make_model's keyword arguments that rebuild `model`."""
  return dict(context=model.context, width=model.encoder.width, dim=model.encoder.out_dim,
              input_norm=model.input_norm, dilations=list(model.predictor.dilations),
              ahead=model.ahead, residual=model.residual,
              separate_trunks=model.predictor.separate_trunks)


def save(workdir: str, model: FrameJEPA, params, frame_shape, meta: dict) -> None:
  """params (orbax) + frame_jepa.json (architecture, frame shape and `meta`, e.g. the training
  config and loss history) into `workdir`."""
  checkpoint.save_params(workdir, params, META, dict(
      architecture=architecture(model), frame_shape=list(frame_shape), **meta))


def exists(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, META))


def read_meta(workdir: str) -> dict:
  if not exists(workdir):
    raise FileNotFoundError(f"no frame JEPA in {workdir!r} ({META} missing): train one with "
                            "`python -m experiments.intuitive_physics` (it saves to "
                            "WORKDIR/frame_jepa) or fix the path")
  with open(os.path.join(workdir, META)) as f:
    return json.load(f)


def load(workdir: str):
  """-> (model, params, meta) of a `save`d frame JEPA."""
  meta = read_meta(workdir)
  model = make_model(**meta["architecture"])
  abstract = jax.eval_shape(lambda: init_params(model, tuple(meta["frame_shape"]), 0))
  return model, checkpoint.restore_params(workdir, abstract), meta
