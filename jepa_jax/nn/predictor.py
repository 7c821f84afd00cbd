"""The narrow JEPA predictor: context tokens + mask tokens at target positions -> predictions."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jepa_jax.nn.pos_embed import sincos_grid
from jepa_jax.nn.vit import Transformer


class MaskedPredictor(nn.Module):
  """Predicts target-token representations from context tokens (I-JEPA / V-JEPA predictor).

  Context tokens are projected to the predictor width and re-tagged with the predictor's own
  position embedding; each target position gets the shared learned mask token plus its
  position embedding. After the blocks and a LayerNorm, the target slots are projected back
  to the encoder width.
  """
  grid_shape: tuple[int, ...]
  out_width: int
  width: int = 384
  depth: int = 6
  num_heads: int = 6
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan: bool = False
  remat: bool = False

  @nn.compact
  def __call__(self, z_ctx_BCD, ctx_idx_BC, tgt_idx_BT):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    pos_ND = jnp.asarray(sincos_grid(self.width, self.grid_shape), self.dtype)
    h_ctx = nn.Dense(self.width, **kw, name="embed")(z_ctx_BCD) + pos_ND[ctx_idx_BC]
    # 1-D so that weight decay (applied to >=2-D params only) leaves it alone, as in I-JEPA.
    mask_token = self.param("mask_token", nn.initializers.normal(0.02), (self.width,),
                            self.param_dtype)
    h_tgt = mask_token.astype(self.dtype)[None, None] + pos_ND[tgt_idx_BT]
    h = jnp.concatenate([h_ctx, h_tgt], axis=1)
    h = Transformer(self.depth, self.num_heads, self.mlp_ratio, self.dtype, self.param_dtype,
                    self.scan, self.remat, name="transformer")(h)
    h = nn.LayerNorm(**kw, name="norm")(h[:, ctx_idx_BC.shape[1]:])
    return nn.Dense(self.out_width, **kw, name="proj")(h)
