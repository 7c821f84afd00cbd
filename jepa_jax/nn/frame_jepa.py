"""A frame-level video JEPA: a convolutional encoder per frame and a next-frame latent predictor.

    frames (B, T, H, W, 3) --encoder, per frame--> z (B, T, h, w, D)    (h, w = H/4, W/4)
    z of frames t-K+1..t   --predictor----------> z of frames t+1..t+A (in layer-normed space)

The V-JEPA of nn/vit.py predicts whole 4-frame tubelets 1-8 frames ahead from a token
sequence; on the violation-of-expectation benchmark its predictions favour the physical future
no more often than chance (BUILD_NOTES sessions 10-11). This model predicts one frame ahead
from K frames on a 4-px token grid, as the PLDM world model does for Two Rooms, so a ball's
next position is a local, learnable function of its last positions.
"""

import flax.linen as nn
import jax.numpy as jnp

from jepa_jax.nn.convnet import ResidualBlock, space_to_depth
from jepa_jax.nn.vit import to_unit_range


class FrameEncoder(nn.Module):
  """(B, H, W, C) uint8 frames (floats: already in [-1, 1]) -> (B, H/4, W/4, out_dim) tokens.
  Space-to-depth 2 keeps every pixel, a stride-2 conv halves again, a residual block mixes."""
  width: int = 64
  out_dim: int = 32

  @nn.compact
  def __call__(self, frames_BHWC):
    x = space_to_depth(to_unit_range(frames_BHWC, jnp.float32), 2)
    x = nn.relu(nn.Conv(self.width, (3, 3), name="stem")(x))
    x = nn.Conv(self.width, (3, 3), strides=2, name="down")(x)
    x = ResidualBlock(name="block")(x)
    return nn.Conv(self.out_dim, (1, 1), name="head")(nn.relu(x))


class NextFramePredictor(nn.Module):
  """(B, K, h, w, D) latents of K consecutive frames -> (B, A, h, w, D) of the next A frames
  (`ahead`), all from one trunk, or with `separate_trunks` each from its own trunk (same input,
  no shared weights: the 1-ahead output does not share capacity with the farther ones). Dilated
  residual convolutions: the receptive field (about 2 * sum(dilations) + 3 cells) must cover a
  ball's travel over A frames plus its size."""
  width: int = 64
  out_dim: int = 32
  dilations: tuple[int, ...] = (1, 2, 4, 1)
  ahead: int = 1
  separate_trunks: bool = False

  def trunk(self, x, outputs: int, prefix: str = ""):
    x = nn.Conv(self.width, (3, 3), name=f"{prefix}inp")(x)
    for i, dil in enumerate(self.dilations):
      y = nn.Conv(self.width, (1, 1), name=f"{prefix}mix{i}")(nn.relu(x))
      x = x + nn.Conv(self.width, (3, 3), kernel_dilation=dil, name=f"{prefix}conv{i}")(nn.relu(y))
    return nn.Conv(outputs * self.out_dim, (1, 1), name=f"{prefix}out")(nn.relu(x))

  @nn.compact
  def __call__(self, z_BKhwD):
    b, k, h, w, d = z_BKhwD.shape
    x = z_BKhwD.transpose(0, 2, 3, 1, 4).reshape(b, h, w, k * d)
    if self.separate_trunks and self.ahead > 1:
      out = jnp.concatenate([self.trunk(x, 1, f"h{j + 1}_") for j in range(self.ahead)], -1)
    else:  # unprefixed names: the layout every saved one-trunk model has
      out = self.trunk(x, self.ahead)
    return out.reshape(b, h, w, self.ahead, self.out_dim).transpose(0, 3, 1, 2, 4)
