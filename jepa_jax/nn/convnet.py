"""Small convolutional encoders for world-model observations (e.g. Two Rooms 64x64x2).

Every encoder maps frames (B, H, W, C) to latent tokens (B, N, D): a small spatial map
flattened row-major (N = h*w), or N = 1 for a vector latent. Recurrent predictors flatten the
tokens to one vector per frame; the block-causal transformer uses them as patch tokens.
`make_frame_encoder` also offers the ViT from nn/vit.py behind the same interface.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jepa_jax.losses import layer_norm_no_affine
from jepa_jax.nn.vit import make_encoder, to_unit_range


def space_to_depth(x_BHWC: jax.Array, k: int) -> jax.Array:
  """(B, H, W, C) -> (B, H/k, W/k, k*k*C): a lossless, compute-free first downsampling."""
  b, h, w, c = x_BHWC.shape
  if h % k or w % k:
    raise ValueError(f"frame {h}x{w} not divisible by encoder.space_to_depth={k}")
  x = x_BHWC.reshape(b, h // k, k, w // k, k, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // k, w // k, k * k * c)


class ResidualBlock(nn.Module):
  """Impala residual block: x + conv(relu(conv(relu(x))))."""

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    h = nn.Conv(c, (3, 3), name="conv1")(nn.relu(x))
    h = nn.Conv(c, (3, 3), name="conv2")(nn.relu(h))
    return x + h


class ConvEncoder(nn.Module):
  """Stride-2 conv stages, then a conv head to `out_dim` channels on the final grid.

  kind='simple': each stage is one 3x3 stride-2 conv + GroupNorm + ReLU (PLDM-like, cheapest).
  kind='impala': conv, 3x3/2 max-pool, `blocks_per_stage` residual blocks (Espeholt et al.).
  `coords=True` appends (x, y) coordinate channels in [-1, 1] (CoordConv, Liu et al. 2018):
  features then vary linearly with where the agent is, which position read-outs need.
  `space_to_depth` > 1 folds k x k pixel blocks into channels first (cheap downsampling that
  keeps sub-pixel information). `vector=True` flattens the map and projects to one token of
  `out_dim` (a vector latent); otherwise tokens are the final grid's cells.
  """
  channels: Sequence[int] = (32, 32, 32)
  out_dim: int = 16
  kind: str = "simple"
  space_to_depth: int = 1
  blocks_per_stage: int = 1
  vector: bool = False
  coords: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC):
    if self.kind not in ("simple", "impala"):
      raise ValueError(f"encoder.kind={self.kind!r}: choose 'simple' or 'impala' (or 'vit')")
    x = to_unit_range(x_BHWC, self.dtype)
    if self.coords:
      b, h, w, _ = x.shape
      yy, xx = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")
      xy_HW2 = jnp.stack([xx, yy], -1).astype(self.dtype)
      x = jnp.concatenate([x, jnp.broadcast_to(xy_HW2, (b, h, w, 2))], -1)
    if self.space_to_depth > 1:
      x = space_to_depth(x, self.space_to_depth)
    for i, c in enumerate(self.channels):
      if self.kind == "simple":
        x = nn.Conv(c, (3, 3), strides=2, dtype=self.dtype, name=f"conv{i}")(x)
        x = nn.relu(nn.GroupNorm(num_groups=min(8, c), dtype=self.dtype, name=f"gn{i}")(x))
      else:
        x = nn.Conv(c, (3, 3), dtype=self.dtype, name=f"conv{i}")(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for j in range(self.blocks_per_stage):
          x = ResidualBlock(name=f"res{i}_{j}")(x)
    if self.kind == "impala":
      x = nn.relu(x)
    b = x.shape[0]
    if self.vector:
      return nn.Dense(self.out_dim, dtype=self.dtype, name="head")(x.reshape(b, -1))[:, None]
    x = nn.Conv(self.out_dim, (1, 1), dtype=self.dtype, name="head")(x)
    return x.reshape(b, -1, self.out_dim)


class ViTFrameEncoder(nn.Module):
  """The ViT of nn/vit.py on single frames, projected to `out_dim` per patch token."""
  size: str = "micro"
  patch_size: int = 8
  out_dim: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC):
    p = self.patch_size
    h = make_encoder(self.size, (p, p), dtype=self.dtype, name="vit")(x_BHWC)
    return nn.Dense(self.out_dim, dtype=self.dtype, name="head")(h)


class VJEPAFrameEncoder(nn.Module):
  """A V-JEPA video encoder (nn/vit.py, tubelets tubelet x p x p) on single frames, as V-JEPA
  2-AC encodes them: the frame is repeated into one tubelet, and the tokens are layer-normed
  without affine like the pretraining targets. `pool` > 1 averages pool x pool token blocks,
  which cuts the action-conditioned predictor's sequence length by pool^2 on small machines.
  Parameters live under 'vit' with the pretraining encoder's layout (loaded, then frozen)."""
  size: str = "micro"
  patch_size: int = 8
  tubelet: int = 2
  pool: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC):
    b, h, w, _ = x_BHWC.shape
    p = self.patch_size
    clip = jnp.repeat(x_BHWC[:, None], self.tubelet, axis=1)
    z_BND = make_encoder(self.size, (self.tubelet, p, p), dtype=self.dtype, name="vit")(clip)
    z_BND = layer_norm_no_affine(z_BND.astype(jnp.float32))
    if self.pool > 1:
      gh, gw, d = h // p, w // p, z_BND.shape[-1]
      if gh % self.pool or gw % self.pool:
        raise ValueError(f"model.encoder.pool={self.pool} must divide the {gh}x{gw} token grid")
      k = self.pool
      z = z_BND.reshape(b, gh // k, k, gw // k, k, d).mean(axis=(2, 4))
      z_BND = z.reshape(b, -1, d)
    return z_BND


def make_frame_encoder(cfg) -> nn.Module:
  """From config.model.encoder (kind: simple | impala | vit | vjepa)."""
  if cfg.kind == "vit":
    return ViTFrameEncoder(size=cfg.vit_size, patch_size=cfg.patch_size, out_dim=cfg.out_dim)
  if cfg.kind == "vjepa":
    return VJEPAFrameEncoder(size=cfg.vit_size, patch_size=cfg.patch_size,
                             tubelet=cfg.get("tubelet", 2), pool=cfg.get("pool", 1))
  if cfg.kind not in ("simple", "impala"):
    raise ValueError(f"model.encoder.kind={cfg.kind!r}: choose 'simple', 'impala', 'vit' or "
                     "'vjepa'")
  return ConvEncoder(channels=tuple(cfg.channels), out_dim=cfg.out_dim, kind=cfg.kind,
                     space_to_depth=cfg.space_to_depth, blocks_per_stage=cfg.blocks_per_stage,
                     vector=cfg.vector, coords=cfg.get("coords", False))


def encode_frames(encoder: nn.Module, params, obs_BTHWC: jax.Array) -> jax.Array:
  """Per-frame encoding of a clip: (B, T, H, W, C) -> (B, T, N, D)."""
  b, t = obs_BTHWC.shape[:2]
  z = encoder.apply(params, obs_BTHWC.reshape(b * t, *obs_BTHWC.shape[2:]))
  return z.reshape(b, t, *z.shape[1:])
