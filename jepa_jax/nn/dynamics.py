"""Action-conditioned latent predictors (world-model dynamics).

Both families share one interface on latent tokens z (..., N, D) (N = 1 for a vector latent):

  __call__(z_BTND, a_BTA, latent_BTL=None) -> zhat_BTND   teacher-forced: zhat[:, t] predicts
      frame t + stride from frames <= t and actions <= t (never from anything later);
  step(z_BND, a_BA, latent_BL=None) -> z_BND             one Markov step (the planner protocol).

`stride` s means one step advances s frames: the action input is the chunk of the s actions
taken in between (`chunk_actions`), so a hierarchical model is the same module at s > 1.
`latent_dim` > 0 adds a per-step latent variable input (zeros when not given) for stochastic
models; both are unused (s = 1, no latent) by the recipes here.

* RecurrentPredictor: one vector per frame (tokens flattened), a gated (GRU-style) or residual
  MLP cell. Markov in z, as in PLDM.
* ConvPredictor: the token grid as an image, the action broadcast to every cell as extra
  channels, small convolutions and a zero-initialised residual. Markov, like the recurrent one;
  its locality and weight sharing make "the agent stops at the wall" one local rule that holds
  wherever the wall is (PLDM's Two Rooms predictor is convolutional for the same reason).
* BlockCausalPredictor: V-JEPA 2-AC style transformer over frames, each frame = [action token,
  (latent token), N patch tokens], with a frame-causal attention mask (in every layer a token of
  frame t sees every token of frames t - max_context + 1 .. t, so the receptive field grows by
  max_context - 1 frames per layer). Its `step` sees one frame only.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.nn.pos_embed import sincos_1d
from jepa_jax.nn.vit import Transformer


def chunk_actions(a_BTA: jax.Array, stride: int) -> jax.Array:
  """(B, T, A) -> (B, T // stride, stride * A): the actions spanned by each strided step."""
  b, t, a = a_BTA.shape
  if t % stride:
    raise ValueError(f"{t} actions are not divisible by predictor.stride={stride}; pick a clip "
                     "length with (num_frames - 1) % stride == 0")
  return a_BTA.reshape(b, t // stride, stride * a)


def _check_action_chunk(a, stride: int, action_dim: int) -> None:
  if a.shape[-1] != stride * action_dim:
    raise ValueError(f"action chunk has {a.shape[-1]} entries, expected predictor.stride * "
                     f"action_dim = {stride * action_dim}")


def _latent_or_zeros(latent, lead_shape, dim: int, dtype):
  if dim == 0:
    if latent is not None:
      raise ValueError("a latent was passed but predictor.latent_dim == 0")
    return None
  return jnp.zeros((*lead_shape, dim), dtype) if latent is None else latent


class RecurrentPredictor(nn.Module):
  """z' = z + u * (c - z) ('gru': update gate u, unbounded candidate c) or z' = z + delta
  ('residual', delta zero-initialised so an untrained model is the identity)."""
  action_dim: int
  hidden: int = 256
  depth: int = 2
  cell: str = "residual"
  stride: int = 1
  latent_dim: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def step(self, z_ND, a_A, latent_L=None):
    """Batched over any leading axes: z (..., N, D), a (..., stride * action_dim)."""
    if self.cell not in ("gru", "residual"):
      raise ValueError(f"predictor.cell={self.cell!r}: choose 'gru' or 'residual'")
    _check_action_chunk(a_A, self.stride, self.action_dim)
    dense = lambda k, name, **kw: nn.Dense(k, dtype=self.dtype, name=name, **kw)
    lead, (n, d) = z_ND.shape[:-2], z_ND.shape[-2:]
    z_F = z_ND.reshape(*lead, n * d)
    a_A = a_A.astype(self.dtype)
    parts = [nn.LayerNorm(dtype=self.dtype, name="norm")(z_F), a_A]
    latent_L = _latent_or_zeros(latent_L, lead, self.latent_dim, self.dtype)
    if latent_L is not None:
      parts.append(latent_L)
    # The action also enters additively after the first layer: a strong, direct path for the
    # quantity that drives every transition.
    h = dense(self.hidden, "fc0")(jnp.concatenate(parts, -1)) + dense(self.hidden, "act")(a_A)
    for i in range(1, self.depth):
      h = dense(self.hidden, f"fc{i}")(nn.gelu(h))
    h = nn.gelu(h)
    if self.cell == "residual":
      delta = dense(n * d, "out", kernel_init=nn.initializers.zeros)(h)
      z_next = z_F + delta
    else:
      u = nn.sigmoid(dense(n * d, "gate")(h))
      c = dense(n * d, "candidate")(h)
      z_next = z_F + u * (c - z_F)
    return z_next.reshape(z_ND.shape)

  def __call__(self, z_BTND, a_BTA, latent_BTL=None):
    return self.step(z_BTND, a_BTA, latent_BTL)  # Markov: each frame's step is independent


class ConvPredictor(nn.Module):
  """z' = z + delta(z, a): convolutions over the (g, g) token grid (N = g * g) with kernel sizes
  `kernels` (e.g. (3, 1, 1): one 3x3 layer that sees the neighbouring cells, then per-cell
  layers), the action chunk and an optional latent broadcast to every cell as extra input
  channels. Zero padding lets border cells know they are at the border."""
  action_dim: int
  width: int = 32
  kernels: tuple[int, ...] = (3, 1, 1)
  stride: int = 1
  latent_dim: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def step(self, z_ND, a_A, latent_L=None):
    """Batched over any leading axes: z (..., N, D), a (..., stride * action_dim)."""
    _check_action_chunk(a_A, self.stride, self.action_dim)
    if not self.kernels or any(k < 1 or k % 2 == 0 for k in self.kernels):
      raise ValueError(f"model.predictor.kernels={tuple(self.kernels)}: give >= 1 odd kernel "
                       "size, e.g. (3, 1, 1)")
    lead, (n, d) = z_ND.shape[:-2], z_ND.shape[-2:]
    g = int(round(n ** 0.5))
    if g * g != n:
      raise ValueError(f"model.predictor.kind='conv' needs a square token grid, got N={n} "
                       "tokens; use an encoder with a spatial latent map (encoder.vector=False, "
                       "pool=1) or predictor.kind='recurrent'")
    z_XGGD = z_ND.reshape(-1, g, g, d).astype(self.dtype)
    cond = [a_A.astype(self.dtype)]
    latent_L = _latent_or_zeros(latent_L, lead, self.latent_dim, self.dtype)
    if latent_L is not None:
      cond.append(latent_L)
    c_XC = jnp.concatenate(cond, -1).reshape(z_XGGD.shape[0], -1)
    c_XGGC = jnp.broadcast_to(c_XC[:, None, None], (*z_XGGD.shape[:3], c_XC.shape[-1]))
    h = jnp.concatenate([z_XGGD, c_XGGC], -1)
    for i, k in enumerate(self.kernels):
      h = nn.gelu(nn.Conv(self.width, (k, k), padding="SAME", dtype=self.dtype,
                          name=f"conv{i}")(h))
    delta = nn.Conv(d, (1, 1), dtype=self.dtype, kernel_init=nn.initializers.zeros,
                    name="out")(h)
    return (z_XGGD + delta).reshape(z_ND.shape)

  def __call__(self, z_BTND, a_BTA, latent_BTL=None):
    return self.step(z_BTND, a_BTA, latent_BTL)  # Markov: each frame's step is independent


def frame_causal_mask(num_frames: int, tokens_per_frame: int, max_context: int = 0) -> np.ndarray:
  """(L, L) bool, L = num_frames * tokens_per_frame: query i may attend key j iff
  0 <= frame(i) - frame(j) < max_context (any earlier frame when max_context == 0)."""
  f = np.repeat(np.arange(num_frames), tokens_per_frame)
  lag = f[:, None] - f[None, :]
  ok = lag >= 0
  if max_context > 0:
    ok &= lag < max_context
  return ok


class BlockCausalPredictor(nn.Module):
  """V-JEPA 2-AC-style predictor: patch tokens of each frame plus an action token, frame-causal
  attention, output = z_t + delta for every patch token (delta predicts frame t + stride)."""
  action_dim: int
  width: int = 64
  depth: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0
  stride: int = 1
  latent_dim: int = 0
  max_context: int = 0
  max_frames: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z_BTND, a_BTA, latent_BTL=None):
    b, t, n, d = z_BTND.shape
    if t > self.max_frames:
      raise ValueError(f"{t} frames exceed predictor.max_frames={self.max_frames}")
    _check_action_chunk(a_BTA, self.stride, self.action_dim)
    dense = lambda k, name, **kw: nn.Dense(k, dtype=self.dtype, name=name, **kw)
    x_BTNW = dense(self.width, "patch_in")(z_BTND.astype(self.dtype))
    x_BTNW = x_BTNW + self.param("pos_patch", nn.initializers.normal(0.02), (n, self.width))
    cond = [dense(self.width, "action_in")(a_BTA.astype(self.dtype))[:, :, None]]
    latent_BTL = _latent_or_zeros(latent_BTL, (b, t), self.latent_dim, self.dtype)
    if latent_BTL is not None:
      cond.append(dense(self.width, "latent_in")(latent_BTL)[:, :, None])
    x_BTKW = jnp.concatenate(cond + [x_BTNW], axis=2)
    k = x_BTKW.shape[2]
    if self.max_context != 1:  # one-frame context needs no time tag (keeps `step` exact)
      time_TW = jnp.asarray(sincos_1d(self.width, np.arange(t)), self.dtype)
      x_BTKW = x_BTKW + time_TW[None, :, None]
    mask = jnp.asarray(frame_causal_mask(t, k, self.max_context))[None, None]
    h = Transformer(self.depth, self.num_heads, self.mlp_ratio, self.dtype,
                    name="transformer")(x_BTKW.reshape(b, t * k, self.width), mask)
    h = nn.LayerNorm(dtype=self.dtype, name="norm")(h).reshape(b, t, k, self.width)
    delta = dense(d, "out", kernel_init=nn.initializers.zeros)(h[:, :, k - n:])
    return z_BTND + delta

  def step(self, z_BND, a_BA, latent_BL=None):
    """One frame of context (exact for max_context == 1; use `rollout` for full history)."""
    unbatched = z_BND.ndim == 2
    if unbatched:
      z_BND, a_BA = z_BND[None], a_BA[None]
      latent_BL = None if latent_BL is None else latent_BL[None]
    lat = None if latent_BL is None else latent_BL[:, None]
    out = self(z_BND[:, None], a_BA[:, None], lat)[:, 0]
    return out[0] if unbatched else out


def rollout(predictor: nn.Module, params, z0_BND, a_BHA, latent_BHL=None):
  """Open-loop prediction of frames 1..H from z0 and H action chunks -> (B, H, N, D).

  Recurrent: H Markov steps. Block-causal: autoregressive with the whole predicted history in
  context (V-JEPA 2-AC planning rollouts); slots after step k are still zeros when step k runs,
  and the causal mask keeps them out of its output.
  """
  a_BHA = jnp.asarray(a_BHA)  # numpy input cannot be indexed by the scan's traced step
  latent_BHL = None if latent_BHL is None else jnp.asarray(latent_BHL)
  h = a_BHA.shape[1]
  lat = (lambda k: None) if latent_BHL is None else (lambda k: latent_BHL[:, k])
  if isinstance(predictor, (RecurrentPredictor, ConvPredictor)):
    def body(z, k):
      z = predictor.apply(params, z, a_BHA[:, k], lat(k), method="step")
      return z, z
    _, z_HBND = jax.lax.scan(body, z0_BND, jnp.arange(h))
    return jnp.moveaxis(z_HBND, 0, 1)

  buf_BHND = jnp.zeros((z0_BND.shape[0], h, *z0_BND.shape[1:]), z0_BND.dtype)
  buf_BHND = buf_BHND.at[:, 0].set(z0_BND)

  def body(buf, k):
    pred_BHND = predictor.apply(params, buf, a_BHA, latent_BHL)
    z_next = jax.lax.dynamic_index_in_dim(pred_BHND, k, axis=1, keepdims=False)
    buf = jax.lax.dynamic_update_index_in_dim(buf, z_next, jnp.minimum(k + 1, h - 1), axis=1)
    return buf, z_next

  _, z_HBND = jax.lax.scan(body, buf_BHND, jnp.arange(h))
  return jnp.moveaxis(z_HBND, 0, 1)


def make_predictor(cfg, action_dim: int) -> nn.Module:
  """From config.model.predictor (kind: recurrent | conv | transformer)."""
  common = dict(action_dim=action_dim, stride=cfg.stride, latent_dim=cfg.latent_dim)
  if cfg.kind == "recurrent":
    return RecurrentPredictor(hidden=cfg.hidden, depth=cfg.depth, cell=cfg.cell, **common)
  if cfg.kind == "conv":
    return ConvPredictor(width=cfg.width, kernels=tuple(cfg.kernels), **common)
  if cfg.kind == "transformer":
    return BlockCausalPredictor(width=cfg.width, depth=cfg.depth, num_heads=cfg.num_heads,
                                max_context=cfg.max_context, **common)
  raise ValueError(f"model.predictor.kind={cfg.kind!r}: choose 'recurrent', 'conv' or "
                   "'transformer'")
