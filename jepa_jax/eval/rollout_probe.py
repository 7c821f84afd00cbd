"""Open-loop rollout quality of a world model, read out by a position probe.

1. A probe (MLP, latent -> agent (x, y) px) is fitted on encoded *real* frames of training
   trajectories.
2. On held-out random-layout trajectories, the first frame is encoded and rolled out H steps
   with the true actions; the probe reads the agent position from each *predicted* latent.
3. Mean Euclidean error (px) per horizon, beside the probe's error on encoded real held-out
   frames (the floor a perfect predictor would reach).
4. `wall_push_check`: the agent is pushed straight into the middle wall away from the door; the
   environment stops it at the face, a model that learned free motion predicts it beyond the wall.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa_jax.envs import two_rooms
from jepa_jax.nn.heads import PositionProbe


def _batched(fn, arrays, batch: int):
  """fn over the leading axis in fixed-size jitted chunks (last one padded, then trimmed)."""
  n = len(arrays[0])
  out = []
  for i in range(0, n, batch):
    chunk = [a[i:i + batch] for a in arrays]
    pad = batch - len(chunk[0])
    if pad:
      chunk = [np.concatenate([c, np.repeat(c[-1:], pad, 0)]) for c in chunk]
    out.append(np.asarray(fn(*chunk))[:batch - pad])
  return np.concatenate(out)


def encode_clips(wm, params, obs_NTHWC, batch: int = 64) -> np.ndarray:
  """(N, T, H, W, C) -> (N, T, tokens, D) float32."""
  fn = jax.jit(lambda o: wm.encode(params, o))
  return _batched(fn, [obs_NTHWC], batch).astype(np.float32)


def rollout_latents(wm, params, z0_NKD, act_NHA, batch: int = 64) -> np.ndarray:
  """(N, tokens, D), (N, H, A) -> (N, H, tokens, D) predicted latents."""
  fn = jax.jit(lambda z, a: wm.rollout(params, z, a))
  return _batched(fn, [z0_NKD, act_NHA], batch).astype(np.float32)


@dataclasses.dataclass
class FittedProbe:
  module: PositionProbe
  params: dict
  mean: np.ndarray                # target (x, y) statistics: outputs are de-standardised
  std: np.ndarray
  z_mean: np.ndarray | None = None  # per-feature latent statistics of the fitting frames
  z_std: np.ndarray | None = None
  train_err_px: float = float("nan")  # set by fit_probe

  def pure(self):
    """z (one latent or a batch, latent dims last) -> (..., 2) px; pure and jittable."""
    params = self.params
    mean, std = jnp.asarray(self.mean, jnp.float32), jnp.asarray(self.std, jnp.float32)
    z_mean = None if self.z_mean is None else jnp.asarray(self.z_mean, jnp.float32)
    z_std = None if self.z_std is None else jnp.asarray(self.z_std, jnp.float32)

    def apply(z):
      if z_mean is not None:
        z = (z - z_mean) / z_std
      return self.module.apply(params, z) * std + mean

    return apply

  def __call__(self, z_MKD, batch: int = 1024) -> np.ndarray:
    return _batched(jax.jit(self.pure()), [z_MKD], batch)


def fit_position_probe(z_MKD, pos_M2, *, hidden=(256, 256), steps: int = 2000,
                       batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
                       layer_norm: bool = True, standardize: bool = False) -> FittedProbe:
  """An MLP from latents to (x, y), Adam with cosine decay, on standardised targets.

  standardize: centre and scale every latent feature with the fitting frames' statistics before
  the MLP, for latents dominated by a code that is the same in every frame (per-example LayerNorm
  keeps it, and the MLP may then not find a small agent signal; centring removes it, as for the
  attentive probe). Off by default: it did not help the trained Two Rooms models (BUILD_NOTES
  session 5).
  """
  mean, std = pos_M2.mean(0), pos_M2.std(0) + 1e-6
  z_mean = z_std = None
  if standardize:
    z_mean, z_std = z_MKD.mean(0), z_MKD.std(0) + 1e-6
    z_MKD = (z_MKD - z_mean) / z_std
  probe = PositionProbe(hidden=tuple(hidden), layer_norm=layer_norm)
  params = probe.init(jax.random.key(seed), jnp.asarray(z_MKD[:1]))
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))
  opt_state = tx.init(params)
  x_all, y_all = jnp.asarray(z_MKD), jnp.asarray((pos_M2 - mean) / std, jnp.float32)

  @jax.jit  # data are arguments, not closure constants (XLA would bake them into the program)
  def step(params, opt_state, x_all, y_all, idx):
    def loss_fn(p):
      return jnp.mean((probe.apply(p, x_all[idx]) - y_all[idx]) ** 2)
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(seed)
  batch = min(batch_size, len(z_MKD))
  for _ in range(steps):
    params, opt_state = step(params, opt_state, x_all, y_all, rng.integers(0, len(z_MKD), batch))
  return FittedProbe(probe, params, mean, std, z_mean, z_std)


def position_error(pred_M2, true_M2) -> np.ndarray:
  return np.linalg.norm(pred_M2 - true_M2, axis=-1)


def fit_probe(wm, params, train_data: dict, probe_cfg) -> FittedProbe:
  """The position probe on encoded real frames of train_data ('obs', 'state'); its mean error
  on those frames goes into .train_err_px."""
  z_tr = encode_clips(wm, params, train_data["obs"])
  z_tr_MKD = z_tr.reshape(-1, *z_tr.shape[2:])
  pos_tr = train_data["state"].reshape(-1, 2)
  probe = fit_position_probe(z_tr_MKD, pos_tr, hidden=probe_cfg.hidden, steps=probe_cfg.steps,
                             batch_size=probe_cfg.batch_size, lr=probe_cfg.lr,
                             layer_norm=probe_cfg.get("layer_norm", True),
                             standardize=probe_cfg.get("standardize", False))
  return dataclasses.replace(probe,
                             train_err_px=float(position_error(probe(z_tr_MKD), pos_tr).mean()))


def evaluate(wm, params, train_data: dict, test_data: dict, probe_cfg, stride: int = 1,
             probe: FittedProbe | None = None) -> dict:
  """train_data/test_data: dicts of 'obs' (N, T, H, W, C), 'act' (N, T-1, 2), 'state' (N, T, 2).

  Returns err_px (H,) mean error of the probe on predicted latents at horizons 1..H (in model
  steps of `stride` frames), enc_err_px on encoded real held-out frames, and probe_train_err_px.
  `probe`: a fit_probe result to reuse (e.g. for wall_push_check); fitted on train_data if None.
  """
  probe = fit_probe(wm, params, train_data, probe_cfg) if probe is None else probe
  train_err = probe.train_err_px

  z_te = encode_clips(wm, params, test_data["obs"])
  n, t = z_te.shape[:2]
  enc_err = position_error(probe(z_te.reshape(-1, *z_te.shape[2:])),
                           test_data["state"].reshape(-1, 2)).mean()
  h = (t - 1) // stride
  act = test_data["act"][:, :h * stride].reshape(n, h, stride * 2)
  zhat = rollout_latents(wm, params, z_te[:, 0], act)
  pred_pos = probe(zhat.reshape(-1, *zhat.shape[2:])).reshape(n, h, 2)
  true_pos = test_data["state"][:, stride:h * stride + 1:stride]
  err_NH = position_error(pred_pos, true_pos)
  # Copying z0 forward (no dynamics) is the trivial baseline the predictor must beat.
  static_err = position_error(np.repeat(test_data["state"][:, :1], h, 1), true_pos).mean(0)
  return {"err_px": err_NH.mean(0).tolist(), "err_px_std": err_NH.std(0).tolist(),
          "enc_err_px": float(enc_err), "probe_train_err_px": float(train_err),
          "static_err_px": static_err.tolist(), "num_test": int(n), "stride": int(stride)}


def _push_starts(key, cfg_env: two_rooms.TwoRoomsConfig, num: int, room: int):
  """Random layouts and starts 4-10 px from the middle wall face in `room` (0 left, 1 right), at
  a y uniform over the middle wall more than door_half_height + 3 px from the door centre."""
  k_layout, k_u = jax.random.split(key)
  layout_N2 = jax.vmap(lambda k: two_rooms.sample_layout(k, cfg_env))(
      jax.random.split(k_layout, num))
  u_N2 = jax.random.uniform(k_u, (num, 2))
  wl, wr, dlo, dhi = two_rooms.wall_bounds(layout_N2, cfg_env)
  lo, hi = cfg_env.border, cfg_env.size - cfg_env.border
  n_below, n_above = jnp.maximum(dlo - 3 - lo, 0.0), jnp.maximum(hi - dhi - 3, 0.0)
  s = u_N2[:, 1] * (n_below + n_above)
  y = jnp.where(s < n_below, lo + s, dhi + 3 + (s - n_below))
  gap = 4.0 + 6.0 * u_N2[:, 0]
  x = jnp.clip(wl - gap, lo, hi) if room == 0 else jnp.clip(wr + gap, lo, hi)
  return jnp.stack([x, y], -1), layout_N2


def wall_push_check(wm, params, probe, cfg_env: two_rooms.TwoRoomsConfig, num: int = 256,
                    steps: int = 32, step_px: float = 1.5, stride: int = 1, seed: int = 0) -> dict:
  """Push the agent into the middle wall for `steps` env steps; does the model stop it too?

  `num` random layouts (`sample_layout(cfg_env)`), start 4-10 px left of the wall away from the
  door, action (+step_px, 0) every step; the start frame is rendered by the env, rolled out by
  `wm.rollout` (steps // stride model steps of stride-action chunks) and the final position read
  by `probe` (a fit_probe result, or any (M, tokens, D) -> (M, 2) px callable). Then the mirror:
  from the right room, pushed left. Per direction: tunnel_frac, the share of predicted final x
  beyond the wall's far face (the env never lets that happen); final_x_err_px, mean |predicted -
  true final x|; pred/true final x relative to the near face, mean (+ = into the wall).
  """
  if steps % stride:
    raise ValueError(f"wall_push_check: steps={steps} must be a multiple of stride={stride}")
  out = {"num": int(num), "steps": int(steps), "step_px": float(step_px)}
  for room, name in ((0, "left_to_right"), (1, "right_to_left")):
    sign = 1.0 if room == 0 else -1.0
    pos_N2, layout_N2 = _push_starts(jax.random.key(seed + room), cfg_env, num, room)
    act_2 = jnp.array([sign * step_px, 0.0], jnp.float32)

    def env_final(pos, layout):
      body = lambda p, _: (two_rooms.step(two_rooms.EnvState(p, layout), act_2, cfg_env).pos, None)
      return jax.lax.scan(body, pos, None, length=steps)[0]

    true_x = np.asarray(jax.jit(jax.vmap(env_final))(pos_N2, layout_N2))[:, 0]
    obs_N1HWC = jax.vmap(two_rooms.render_pos, (0, 0, None))(pos_N2, layout_N2, cfg_env)[:, None]
    z0 = encode_clips(wm, params, np.asarray(obs_N1HWC))[:, 0]
    act_NHA = np.tile(np.asarray(act_2), (num, steps // stride, stride))
    zhat = rollout_latents(wm, params, z0, act_NHA)
    pred_x = np.asarray(probe(zhat[:, -1]))[:, 0]
    wl, wr, _, _ = (np.asarray(b) for b in two_rooms.wall_bounds(np.asarray(layout_N2), cfg_env))
    near, far = (wl, wr) if room == 0 else (wr, wl)
    out[name] = {"tunnel_frac": float(np.mean(sign * (pred_x - far) > 0)),
                 "final_x_err_px": float(np.mean(np.abs(pred_x - true_x))),
                 "pred_final_x_rel_face_px": float(np.mean(sign * (pred_x - near))),
                 "true_final_x_rel_face_px": float(np.mean(sign * (true_x - near)))}
  return out


def wall_push_summary(name: str, r: dict) -> str:
  parts = [f"{d.replace('_', ' ')}: tunnelled {r[d]['tunnel_frac']:.0%}, final x error "
           f"{r[d]['final_x_err_px']:.2f} px (predicted {r[d]['pred_final_x_rel_face_px']:+.2f} px "
           f"into the wall, true {r[d]['true_final_x_rel_face_px']:+.2f})"
           for d in ("left_to_right", "right_to_left")]
  return f"{name}: push into the wall {r['steps']} x {r['step_px']} px | " + " | ".join(parts)


def summary(name: str, r: dict) -> str:
  e = r["err_px"]
  hs = [k for k in (1, 2, 4, 8, 16, 32) if k <= len(e)]
  cols = "  ".join(f"h{k} {e[k - 1]:.2f}" for k in hs)
  return (f"{name}: probe error px on predicted latents {cols} | real held-out frames "
          f"{r['enc_err_px']:.2f} | probe train {r['probe_train_err_px']:.2f} | "
          f"no-motion baseline h{hs[-1]} {r['static_err_px'][hs[-1] - 1]:.2f}")


def plot_errors(results: dict, out_png: str):
  """Error vs horizon, one line per model (results: name -> evaluate() dict)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for i, (name, r) in enumerate(results.items()):
    hs = np.arange(1, len(r["err_px"]) + 1)
    line, = ax.plot(hs, r["err_px"], marker="o", ms=3, label=f"{name} (predicted)")
    ax.axhline(r["enc_err_px"], color=line.get_color(), ls=":", lw=1,
               label=f"{name} (real frames)")
    if i == 0:
      ax.plot(hs, r["static_err_px"], color="gray", ls="--", lw=1, label="no-motion baseline")
  ax.set_xlabel("horizon (steps)")
  ax.set_ylabel("mean position error (px)")
  ax.set_title("Open-loop rollout, held-out random layouts", fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out_png, dpi=100)
  plt.close(fig)
  return out_png
