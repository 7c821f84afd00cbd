"""Small heads on latent tokens: VICReg expander, inverse dynamics, position probe."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def flatten_tokens(z_ND: jax.Array) -> jax.Array:
  """(..., N, D) -> (..., N * D)."""
  return z_ND.reshape(*z_ND.shape[:-2], -1)


class MLP(nn.Module):
  """Dense -> (LayerNorm) -> GELU ... -> Dense(out_dim). `hidden=()` is a linear map."""
  hidden: Sequence[int]
  out_dim: int
  layer_norm: bool = False

  @nn.compact
  def __call__(self, x):
    for i, h in enumerate(self.hidden):
      x = nn.Dense(h, name=f"fc{i}")(x)
      if self.layer_norm:
        x = nn.LayerNorm(name=f"ln{i}")(x)
      x = nn.gelu(x)
    return nn.Dense(self.out_dim, name="out")(x)


class Expander(nn.Module):
  """VICReg projector/expander: the anti-collapse terms act on its output when enabled."""
  hidden: Sequence[int] = (256,)
  out_dim: int = 256

  @nn.compact
  def __call__(self, z_ND):
    return MLP(self.hidden, self.out_dim, layer_norm=True, name="mlp")(flatten_tokens(z_ND))


class InverseDynamics(nn.Module):
  """Predicts the action chunk taken between two consecutive latents (PLDM / EB-JEPA)."""
  action_dim: int
  hidden: Sequence[int] = (256,)

  @nn.compact
  def __call__(self, z_ND, z_next_ND):
    # The difference is given explicitly: where features vary locally linearly with position,
    # a displacement is a linear read-out of it, which gives the encoder a signal from step 0.
    z, z_next = flatten_tokens(z_ND), flatten_tokens(z_next_ND)
    x = jnp.concatenate([z, z_next, z_next - z], -1)
    return MLP(self.hidden, self.action_dim, name="mlp")(x)


class PositionProbe(nn.Module):
  """Latent -> agent (x, y) in pixels; trained on frozen encodings of real frames."""
  hidden: Sequence[int] = (256, 256)
  out_dim: int = 2
  layer_norm: bool = True  # per-example input LayerNorm (keeps the scale of latents out of it)

  @nn.compact
  def __call__(self, z_ND):
    x = flatten_tokens(z_ND)
    if self.layer_norm:
      x = nn.LayerNorm(use_scale=False, use_bias=False, name="ln_in")(x)
    return MLP(self.hidden, self.out_dim, name="mlp")(x)


class GoalDistance(nn.Module):
  """d(z, z_goal) >= 0: a learned goal-conditioned distance (steps of walk) between latents.

  `latent_ndim` trailing axes are one latent: 2 for tokens (N, D), 1 for a vector (D,); the
  axes before them are batch. Tokens on a square grid go through a small conv net over the grid
  (its channels are z, z_goal and their difference, so where the agent is and where the walls
  are stay aligned), then an MLP; other latents are flattened into the MLP. Softplus output: a
  distance is never negative.
  """
  channels: Sequence[int] = (32, 64)
  hidden: Sequence[int] = (256, 256)
  latent_ndim: int = 2

  @nn.compact
  def __call__(self, z, z_goal):
    # stacked as channels, so the convs see where the agent is, where the goal is and where the
    # walls are aligned cell by cell
    x = jnp.concatenate([z, z_goal, z - z_goal], -1)
    x = token_grid_features(x, self.channels, self.latent_ndim)
    return jax.nn.softplus(MLP(self.hidden, 1, layer_norm=True, name="mlp")(x))[..., 0]


def token_grid_features(x, channels: Sequence[int], latent_ndim: int):
  """Latent(s) -> one flat feature vector per leading index, inside a compact module (the convs
  are its submodules conv0, conv1, ...). Tokens on a square grid (latent_ndim 2) pass through
  3x3 convolutions (the first at stride 1, then stride 2); other latents are flattened as they
  are."""
  lead = x.shape[:x.ndim - latent_ndim]
  n = x.shape[-2] if latent_ndim == 2 else 0
  side = int(round(n ** 0.5))
  if channels and n and side * side == n:
    x = x.reshape(-1, side, side, x.shape[-1])
    for i, c in enumerate(channels):
      x = nn.gelu(nn.Conv(c, (3, 3), strides=(1, 1) if i == 0 else (2, 2), name=f"conv{i}")(x))
  return x.reshape(*lead, -1)
