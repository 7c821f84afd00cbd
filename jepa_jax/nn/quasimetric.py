"""A quasimetric head: d(x, y) >= 0, d(x, x) = 0 and d(x, z) <= d(x, y) + d(y, z) for every
parameter value (not just at the optimum), possibly d(x, y) != d(y, x).

Why: a goal-conditioned distance is a shortest-path length, and shortest paths obey the
triangle inequality. Built into the architecture, it lets a distance learned from local steps
alone compose them into long walks that no single recorded walk took (quasimetric RL, Wang et
al. 2023), where a free-form head must learn the composition from targets.

Interval quasimetric embedding (IQE, Wang & Isola 2022): each latent is embedded as K
components of m numbers; in component k, the pair (x, y) covers the intervals [x_j, y_j] for the
j with x_j < y_j, and d_k(x, y) is the total length of their union. Each d_k is a quasimetric,
and so is any mix of max and mean over k with non-negative weights.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jepa_jax.nn.heads import MLP, token_grid_features


def interval_union_length(x_KM, y_KM):
  """(..., K, m) pairs -> (..., K): the length of the union of the intervals [x_j, y_j] with
  x_j < y_j (the others are empty), per component; x and y broadcast against each other.
  Differentiable in x and y almost everywhere."""
  x_KM, y_KM = jnp.broadcast_arrays(x_KM, y_KM)
  valid = y_KM > x_KM
  ends = jnp.where(valid, y_KM, x_KM)  # an empty interval [x_j, x_j] adds no length
  points = jnp.concatenate([x_KM, ends], -1)
  # +1 where an interval opens, -1 where it closes; after sorting the endpoints, the running sum
  # counts the intervals covering each gap between neighbouring endpoints.
  sign = jnp.concatenate([valid, valid], -1) * jnp.concatenate(
      [jnp.ones_like(x_KM), -jnp.ones_like(x_KM)], -1)
  order = jnp.argsort(points, axis=-1, stable=True)
  points = jnp.take_along_axis(points, order, -1)
  covered = jnp.cumsum(jnp.take_along_axis(sign, order, -1), -1)[..., :-1] > 0.5
  return jnp.sum(jnp.where(covered, points[..., 1:] - points[..., :-1], 0.0), -1)


def iqe(x_KM, y_KM, max_weight):
  """The IQE quasimetric: max_weight * max_k d_k + (1 - max_weight) * mean_k d_k, with
  max_weight in [0, 1]."""
  d_K = interval_union_length(x_KM, y_KM)
  return max_weight * jnp.max(d_K, -1) + (1.0 - max_weight) * jnp.mean(d_K, -1)


class LatentEmbedding(nn.Module):
  """One latent -> (components, component_dim): token-grid convs, then an MLP."""
  channels: Sequence[int]
  hidden: Sequence[int]
  components: int
  component_dim: int
  latent_ndim: int

  @nn.compact
  def __call__(self, z):
    x = token_grid_features(z, self.channels, self.latent_ndim)
    e = MLP(self.hidden, self.components * self.component_dim, layer_norm=True, name="mlp")(x)
    return e.reshape(*e.shape[:-1], self.components, self.component_dim)


class QuasimetricDistance(nn.Module):
  """d(z, z_goal) = IQE(embed(z), embed(z_goal)): a learned quasimetric between latents.

  The embedding sees one latent at a time (the same parameters for both); `latent_ndim` as in
  heads.GoalDistance. The max/mean mix of the components is learned. `embed_latents` and
  `from_embeddings` split the call, so a loss that measures several pairs among few latents
  embeds each latent once.
  """
  channels: Sequence[int] = (32, 64)
  hidden: Sequence[int] = (256, 256)
  components: int = 32
  component_dim: int = 8
  latent_ndim: int = 2

  def setup(self):
    # The attribute names are the parameter names ('embed', 'max_logit').
    self.embed = LatentEmbedding(self.channels, self.hidden, self.components, self.component_dim,
                                 self.latent_ndim)
    self.max_logit = self.param("max_logit", nn.initializers.zeros, ())  # 0: half max, half mean

  def embed_latents(self, z):
    """Latent(s) -> (..., components, component_dim)."""
    return self.embed(z)

  def from_embeddings(self, e_KM, e_goal_KM):
    return iqe(e_KM, e_goal_KM, jax.nn.sigmoid(self.max_logit))

  def __call__(self, z, z_goal):
    return self.from_embeddings(self.embed(z), self.embed(z_goal))
