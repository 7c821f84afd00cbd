"""Vision Transformer encoder for images (2-D patches) and videos (3-D tubelets).

Pre-norm blocks, fixed sin-cos position embeddings, optional `nn.scan` over layers,
rematerialisation and bf16 compute with fp32 parameters. Pure Linen: `apply(params, x)`.
"""

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.nn.pos_embed import sincos_grid


@dataclasses.dataclass(frozen=True)
class ViTSize:
  width: int
  depth: int
  num_heads: int
  mlp_ratio: float = 4.0


# Published widths/depths/heads (ViT paper; ViT-g/14 as used by V-JEPA 2 with mlp 48/11).
VIT_SIZES: dict[str, ViTSize] = {
    "micro": ViTSize(128, 4, 4),  # CPU demos and tests
    "tiny": ViTSize(192, 12, 3),
    "small": ViTSize(384, 12, 6),
    "base": ViTSize(768, 12, 12),
    "large": ViTSize(1024, 24, 16),
    "huge": ViTSize(1280, 32, 16),
    "giant": ViTSize(1408, 40, 16, 48 / 11),
}


def vit_size(name: str) -> ViTSize:
  if name not in VIT_SIZES:
    raise ValueError(f"unknown ViT size {name!r}; choose one of {sorted(VIT_SIZES)}")
  return VIT_SIZES[name]


def token_grid(input_shape: Sequence[int], patch_size: Sequence[int]) -> tuple[int, ...]:
  """Spatial(-temporal) input shape without batch/channels -> token grid shape."""
  if len(input_shape) != len(patch_size):
    raise ValueError(
        f"input has {len(input_shape)} spatial/temporal axes {tuple(input_shape)} but patch_size "
        f"{tuple(patch_size)} has {len(patch_size)}: use (p, p) for images, (t, p, p) for videos")
  for n, p in zip(input_shape, patch_size):
    if n % p:
      raise ValueError(f"input shape {tuple(input_shape)} is not divisible by patch_size "
                       f"{tuple(patch_size)}; change the data size or model.patch_size")
  return tuple(n // p for n, p in zip(input_shape, patch_size))


def patchify(x: jax.Array, patch_size: Sequence[int]) -> jax.Array:
  """(B, *S, C) -> (B, N, prod(patch)*C), tokens in row-major grid order."""
  b, *spatial, c = x.shape
  grid = token_grid(spatial, patch_size)
  k = len(grid)
  x = x.reshape(b, *[v for g, p in zip(grid, patch_size) for v in (g, p)], c)
  # (B, g0, p0, g1, p1, ..., C) -> (B, g0, g1, ..., p0, p1, ..., C)
  perm = (0, *range(1, 2 * k, 2), *range(2, 2 * k + 1, 2), 2 * k + 1)
  return x.transpose(perm).reshape(b, int(np.prod(grid)), -1)


def gather_tokens(x_BND: jax.Array, idx_BK: jax.Array) -> jax.Array:
  return jnp.take_along_axis(x_BND, idx_BK[..., None], axis=1)


class Attention(nn.Module):
  num_heads: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BND, mask=None):
    d = x_BND.shape[-1]
    if d % self.num_heads:
      raise ValueError(f"width {d} not divisible by num_heads {self.num_heads}")
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    qkv = dense(3 * d, "qkv")(x_BND)
    q, k, v = jnp.split(qkv.reshape(*x_BND.shape[:2], 3 * self.num_heads, -1), 3, axis=2)
    out = jax.nn.dot_product_attention(q, k, v, mask=mask)
    return dense(d, "proj")(out.reshape(x_BND.shape))


class Block(nn.Module):
  """Pre-norm transformer block: x + Attn(LN(x)); x + MLP(LN(x))."""
  num_heads: int
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    d = x.shape[-1]
    x = x + Attention(self.num_heads, **kw, name="attn")(nn.LayerNorm(**kw, name="ln1")(x), mask)
    h = nn.LayerNorm(**kw, name="ln2")(x)
    h = nn.Dense(int(d * self.mlp_ratio), **kw, name="fc1")(h)
    h = nn.Dense(d, **kw, name="fc2")(nn.gelu(h, approximate=False))
    return x + h


class _ScanBlock(Block):
  """Block with the (carry, x) -> (carry, y) signature nn.scan needs."""

  def __call__(self, x, mask=None):
    return super().__call__(x, mask), None


class Transformer(nn.Module):
  """`depth` blocks, optionally scanned (one compiled block; params stacked on axis 0) and
  rematerialised (recompute activations in the backward pass to save memory)."""
  depth: int
  num_heads: int
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, x, mask=None):
    kw = dict(num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, dtype=self.dtype,
              param_dtype=self.param_dtype)
    if self.scan:
      cls = nn.remat(_ScanBlock, prevent_cse=False) if self.remat else _ScanBlock
      stack = nn.scan(cls, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=nn.broadcast, length=self.depth)
      x, _ = stack(**kw, name="blocks")(x, mask)
      return x
    cls = nn.remat(Block) if self.remat else Block
    for i in range(self.depth):
      x = cls(**kw, name=f"block_{i}")(x, mask)
    return x


def to_unit_range(x: jax.Array, dtype) -> jax.Array:
  """uint8 pixels -> [-1, 1]; float inputs are taken as already normalised."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    return x.astype(dtype) * (2.0 / 255.0) - 1.0
  return x.astype(dtype)


class ViTEncoder(nn.Module):
  """Images (B, H, W, C) with patch (p, p) or videos (B, T, H, W, C) with tubelet (t, p, p).

  `keep_idx_BK` (optional) selects the visible tokens after position embedding, as the JEPA
  context encoder needs; returns (B, K, width), final LayerNorm applied.
  """
  patch_size: tuple[int, ...]
  width: int
  depth: int
  num_heads: int
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, x, keep_idx_BK=None):
    grid = token_grid(x.shape[1:-1], self.patch_size)
    tokens = patchify(to_unit_range(x, self.dtype), self.patch_size)
    h = nn.Dense(self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                 name="patch_embed")(tokens)
    h = h + jnp.asarray(sincos_grid(self.width, grid), self.dtype)[None]
    if keep_idx_BK is not None:
      h = gather_tokens(h, keep_idx_BK)
    h = Transformer(self.depth, self.num_heads, self.mlp_ratio, self.dtype, self.param_dtype,
                    self.scan, self.remat, name="transformer")(h)
    return nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(h)


def make_encoder(size: str, patch_size: Sequence[int], **overrides) -> ViTEncoder:
  s = vit_size(size)
  return ViTEncoder(patch_size=tuple(patch_size), width=s.width, depth=s.depth,
                    num_heads=s.num_heads, mlp_ratio=s.mlp_ratio, **overrides)
