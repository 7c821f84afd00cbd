"""A goal-conditioned distance on a frozen world model's latents, learned from reward-free walks.

Why: a latent goal energy |z - z_goal| measures how different two pictures are, not how long
the walk between them is. Behind a wall, moving along it towards the door makes the picture no
closer to the goal, so a receding-horizon planner with that energy cannot tell the way round
from staying put (BUILD_NOTES session 8: most planning failures are of that kind). A distance
d(z, z_goal) ~ the number of steps of the shortest walk is what a planner wants as its
terminal cost.

How (offline, goal-conditioned TD with hindsight goals, as IQL / HIQL value learning):
  d(s, g) <- 0                       if g is s itself
  d(s, g) <- 1 + gamma * d'(s', g)   otherwise (d' = a slow Polyak copy)
fitted with an expectile loss that weighs targets *below* the prediction more (`expectile`
< 0.5): random walks wander, and the lower expectile over the walks through a state
approximates the shortest one. A goal later on the same walk is also bounded by the steps that
walk took (hindsight Monte Carlo), which carries long distances at once. Goals are the state
itself (or any state with the same latent), a later state of the same walk, or a state of
another walk in the same layout (walks grouped by layout, so TD can stitch walks that no single
walk connects; the best measured setting gives that share 0). Fitted distances are discounted, d in [0, 1/(1 - gamma));
`steps_from_discounted` turns them back into steps.

Or (`objective='qrl'`, quasimetric RL, Wang et al. 2023): a head that is a quasimetric by
construction (nn/quasimetric.py: d(s, s) = 0 and the triangle inequality at any parameters) is
fitted to make random same-layout pairs as far apart as it can while every recorded step stays
within one step (a constraint with a learned dual weight). The largest such distance is the
shortest walk through the recorded steps (approached: the cap and the finite penalty leave it
a little off, BUILD_NOTES session 23), so the head composes steps of different walks without
TD targets or a target copy; distances come out in steps.

Only the walks' images are used (no positions, no rewards, no actions); positions serve the
held-out check `geodesic_agreement` alone. Measured on Two Rooms (BUILD_NOTES session 9): it
ranks held-out pairs by shortest-path length far better than latent energies (Spearman 0.88
vs 0.32 / 0.49), but as a planner's terminal cost it did not raise success.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa_jax.eval.stats import spearman
from jepa_jax.nn.heads import GoalDistance
from jepa_jax.nn.quasimetric import QuasimetricDistance
from jepa_jax.train import checkpoint


@dataclasses.dataclass(frozen=True)
class DistanceConfig:
  channels: tuple[int, ...] = (32, 64)
  hidden: tuple[int, ...] = (256, 256)
  # Defaults = the best measured settings (experiments/configs/goal_distance.py:cpu_default).
  steps: int = 8000
  batch_size: int = 256
  lr: float = 3e-4
  discount: float = 0.99
  expectile: float = 0.3  # weight of TD targets above the prediction (< 0.5: optimistic)
  polyak: float = 0.05  # target-copy update rate per step
  goal_self: float = 0.1  # share of goals that are the state itself (target 0)
  # A later state of the same walk; the rest (1 - goal_self - goal_same_walk): a state of
  # another walk in the same layout (TD stitching). 0.9 leaves none: measured better here.
  goal_same_walk: float = 0.9
  seed: int = 0
  # objective 'td' (the above) or 'qrl': quasimetric RL (Wang et al. 2023) on an IQE head
  # (nn/quasimetric.py): push the distance of random same-layout pairs up, towards qrl_margin,
  # while each recorded step (both ways when `reversible`) stays within 1, enforced by a dual
  # variable whose rate is qrl_dual_lr and slack qrl_tolerance^2; the triangle inequality of the
  # head composes steps into shortest walks. Distances are in steps (not discounted).
  objective: str = 'td'
  components: int = 32
  component_dim: int = 8
  qrl_margin: float = 200.0
  qrl_softness: float = 0.05
  qrl_tolerance: float = 0.05
  qrl_dual_lr: float = 0.01
  reversible: bool = True

  def __post_init__(self):
    def need(ok, key, msg):
      if not ok:
        raise ValueError(f'goal distance config {key}={getattr(self, key)!r}: {msg}')
    need(self.steps > 0, 'steps', 'must be > 0')
    need(self.batch_size > 0, 'batch_size', 'must be > 0')
    need(0.0 < self.discount < 1.0, 'discount', 'must be in (0, 1)')
    need(0.0 < self.expectile < 1.0, 'expectile', 'must be in (0, 1) (0.5 = plain TD regression)')
    need(0.0 < self.polyak <= 1.0, 'polyak', 'must be in (0, 1]')
    need(self.objective in ('td', 'qrl'), 'objective', "choose 'td' or 'qrl'")
    need(self.components > 0, 'components', 'must be > 0 (IQE components)')
    need(self.component_dim > 0, 'component_dim', 'must be > 0 (numbers per IQE component)')
    need(self.qrl_margin > 0, 'qrl_margin', 'must be > 0 (steps)')
    need(self.qrl_softness > 0, 'qrl_softness', 'must be > 0')
    need(self.qrl_tolerance >= 0, 'qrl_tolerance', 'must be >= 0 (steps)')
    need(self.qrl_dual_lr > 0, 'qrl_dual_lr', 'must be > 0')
    need(self.goal_self >= 0 and self.goal_same_walk >= 0
         and self.goal_self + self.goal_same_walk <= 1.0, 'goal_self',
         f'goal_self and goal_same_walk (= {self.goal_same_walk!r}) must be >= 0 with a sum <= 1')

  @classmethod
  def from_dict(cls, d, **overrides) -> 'DistanceConfig':
    """From a config section or saved JSON (lists become tuples); unknown keys are named."""
    d = dict(d.to_dict() if hasattr(d, 'to_dict') else d, **overrides)
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f'goal distance config: unknown keys {unknown}; valid: '
                       f'{sorted(f.name for f in dataclasses.fields(cls))}')
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()})


def make_module(cfg: DistanceConfig, latent_ndim: int):
  """latent_ndim: axes of one latent (2 for tokens (N, D), 1 for a vector). TD: a GoalDistance
  head (discounted output); QRL: a QuasimetricDistance (output in steps); see `to_steps`."""
  if cfg.objective == 'qrl':
    return QuasimetricDistance(channels=tuple(cfg.channels), hidden=tuple(cfg.hidden),
                               components=cfg.components, component_dim=cfg.component_dim,
                               latent_ndim=latent_ndim)
  return GoalDistance(channels=tuple(cfg.channels), hidden=tuple(cfg.hidden),
                      latent_ndim=latent_ndim)


def to_steps(cfg: DistanceConfig, d):
  """The module's output -> steps of walk."""
  return d if cfg.objective == 'qrl' else steps_from_discounted(d, cfg.discount)


def steps_from_discounted(d, discount: float):
  """A discounted distance d = (1 - gamma^n) / (1 - gamma) -> n steps (clipped below the cap)."""
  frac = jnp.clip((1.0 - discount) * d, 0.0, 1.0 - 1e-6)
  return jnp.log1p(-frac) / math.log(discount)


def sample_batch(key, z_LGT, batch: int, cfg: DistanceConfig):
  """(state, next state, goal, goal is the state, steps the walk took to the goal or -1) for
  `batch` draws from z (L, G, T, ...)."""
  L, G, T = z_LGT.shape[:3]
  k_l, k_g, k_t, k_kind, k_ahead, k_other, k_tother = jax.random.split(key, 7)
  l = jax.random.randint(k_l, (batch,), 0, L)
  g = jax.random.randint(k_g, (batch,), 0, G)
  t = jax.random.randint(k_t, (batch,), 0, T - 1)
  u = jax.random.uniform(k_kind, (batch,))
  is_self = u < cfg.goal_self
  same_walk = ~is_self & (u < cfg.goal_self + cfg.goal_same_walk)
  t_ahead = t + 1 + jnp.floor(jax.random.uniform(k_ahead, (batch,)) * (T - 1 - t)).astype(jnp.int32)
  other = (g + 1 + jax.random.randint(k_other, (batch,), 0, max(G - 1, 1))) % G if G > 1 else g
  g_goal = jnp.where(is_self | same_walk, g, other)
  t_goal = jnp.where(is_self, t, jnp.where(same_walk, t_ahead,
                                           jax.random.randint(k_tother, (batch,), 0, T)))
  state, goal = z_LGT[l, g, t], z_LGT[l, g_goal, t_goal]
  # A goal whose latent equals the state's (e.g. a walk pushing into a wall does not move) is
  # reached too, whichever walk or step it came from: no conflicting targets for one pair.
  is_self = is_self | jnp.all((goal == state).reshape(batch, -1), axis=-1)
  ahead = jnp.where(same_walk & ~is_self, t_goal - t, -1)  # steps the walk took; -1: unknown
  return state, z_LGT[l, g, t + 1], goal, is_self, ahead


def td_loss(module, params, target_params, batch, cfg: DistanceConfig):
  s, s_next, goal, is_self, ahead = batch
  d = module.apply(params, s, goal)
  d_next = module.apply(target_params, s_next, goal)
  y = jnp.where(is_self, 0.0, 1.0 + cfg.discount * d_next)
  # A goal later on the same walk is at most as far as that walk took: the bound carries long
  # distances at once instead of one TD step per target update.
  walked = (1.0 - cfg.discount ** ahead) / (1.0 - cfg.discount)
  y = jnp.where(ahead > 0, jnp.minimum(y, walked), y)
  u = jax.lax.stop_gradient(y) - d
  w = jnp.where(u > 0, cfg.expectile, 1.0 - cfg.expectile)
  return jnp.mean(w * jnp.square(u)), dict(d_mean=jnp.mean(d), td_abs=jnp.mean(jnp.abs(u)))


def sample_qrl_batch(key, z_LGT, batch: int, cfg: DistanceConfig):
  """(state, goal, after, reversed_B): pairs of one layout, the state the recorded step's first
  frame (so never a walk's last frame) and the goal any frame of any of the layout's walks;
  `after` the step's second frame. The recorded step runs state -> after, or after -> state
  where reversed_B (half of them when cfg.reversible, none otherwise); see `recorded_step`."""
  L, G, T = z_LGT.shape[:3]
  k_l, k_g, k_t, k_g2, k_t2, k_rev = jax.random.split(key, 6)
  l = jax.random.randint(k_l, (batch,), 0, L)
  g, t = jax.random.randint(k_g, (batch,), 0, G), jax.random.randint(k_t, (batch,), 0, T - 1)
  g2, t2 = jax.random.randint(k_g2, (batch,), 0, G), jax.random.randint(k_t2, (batch,), 0, T)
  reversed_B = jax.random.bernoulli(k_rev, 0.5, (batch,)) & cfg.reversible
  return z_LGT[l, g, t], z_LGT[l, g2, t2], z_LGT[l, g, t + 1], reversed_B


def recorded_step(state, after, reversed_B):
  """(here, there) of the recorded steps: (state, after), swapped where reversed_B; works on
  latents and on their embeddings alike (reversed_B broadcast over the trailing axes)."""
  rev = reversed_B.reshape(reversed_B.shape + (1,) * (state.ndim - 1))
  return jnp.where(rev, after, state), jnp.where(rev, state, after)


def qrl_loss(module, params, dual, batch, cfg: DistanceConfig):
  """-(soft-capped distance of random pairs) + lambda * E[relu(d(step) - 1)^2]; lambda =
  softplus(dual). Returns (loss, (step violation, metrics)). Each of the three latents of a
  row (state, goal, after) is embedded once; the two pairs are measured on the embeddings."""
  state, goal, after, reversed_B = batch
  embed = lambda z: module.apply(params, z, method="embed_latents")
  distance = lambda e, e_goal: module.apply(params, e, e_goal, method="from_embeddings")
  e_state = embed(state)
  d_far = distance(e_state, embed(goal))
  d_step = distance(*recorded_step(e_state, embed(after), reversed_B))
  beta = cfg.qrl_softness
  push = jnp.mean(jax.nn.softplus(beta * (cfg.qrl_margin - d_far)) / beta)
  violation = jnp.mean(jnp.square(jax.nn.relu(d_step - 1.0)))
  lam = jax.nn.softplus(dual)
  return push + lam * violation, (violation, dict(
      d_mean=jnp.mean(d_far), step_d_mean=jnp.mean(d_step), violation=violation, dual=lam))


def _gradient_step(tx, objective, params, opt_state):
  """One optimiser step on objective(params) -> (loss, aux): -> (params, opt_state, loss, aux)."""
  (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss, aux


def make_qrl_train_step(module, tx, cfg: DistanceConfig):
  @jax.jit
  def train_step(params, dual, opt_state, z_LGT, key):
    batch = sample_qrl_batch(key, z_LGT, cfg.batch_size, cfg)
    params, opt_state, loss, (violation, aux) = _gradient_step(
        tx, lambda p: qrl_loss(module, p, dual, batch, cfg), params, opt_state)
    # dual ascent: lambda grows while the mean squared excess of recorded steps over 1 is above
    # qrl_tolerance^2
    dual = dual + cfg.qrl_dual_lr * (violation - cfg.qrl_tolerance ** 2)
    return params, dual, opt_state, dict(loss=loss, **aux)

  return train_step


def make_train_step(module, tx, cfg: DistanceConfig):
  @jax.jit  # the latents are an argument, not a closure constant (XLA would bake them in)
  def train_step(params, target_params, opt_state, z_LGT, key):
    batch = sample_batch(key, z_LGT, cfg.batch_size, cfg)
    params, opt_state, loss, aux = _gradient_step(
        tx, lambda p: td_loss(module, p, target_params, batch, cfg), params, opt_state)
    target_params = optax.incremental_update(params, target_params, cfg.polyak)
    return params, target_params, opt_state, dict(loss=loss, **aux)

  return train_step


def fit(z_LGT, cfg: DistanceConfig, log_every: int = 500, progress=None):
  """Fit the distance on latents z (L layouts, G walks, T steps, latent dims...) -> (module,
  params, history). `progress(step, metrics)` is called every `log_every` steps."""
  z_LGT = jnp.asarray(z_LGT, jnp.float32)
  if z_LGT.ndim < 4 or z_LGT.shape[2] < 2:
    raise ValueError(f'goal distance: latents must be (layouts, walks, steps >= 2, latent...), '
                     f'got shape {tuple(z_LGT.shape)}')
  module = make_module(cfg, z_LGT.ndim - 3)
  key = jax.random.key(cfg.seed)
  params = module.init(key, z_LGT[0, 0, 0], z_LGT[0, 0, 0])
  tx = optax.adam(optax.cosine_decay_schedule(cfg.lr, cfg.steps, alpha=0.1))
  opt_state = tx.init(params)
  if cfg.objective == 'qrl':  # the second carried value: the dual variable, not a target copy
    aux_state, step = jnp.zeros((), jnp.float32), make_qrl_train_step(module, tx, cfg)
  else:
    aux_state, step = params, make_train_step(module, tx, cfg)
  history, t0, sums, n = [], time.perf_counter(), None, 0
  for i in range(cfg.steps):
    params, aux_state, opt_state, m = step(params, aux_state, opt_state, z_LGT,
                                           jax.random.fold_in(key, i + 1))
    sums, n = (m if sums is None else jax.tree.map(jnp.add, sums, m)), n + 1  # stays on device
    if (i + 1) % log_every == 0 or i + 1 == cfg.steps:
      m = {k: float(v) / n for k, v in sums.items()}  # means over the steps since the last log
      m.update(step=i + 1, elapsed_s=time.perf_counter() - t0)
      history.append(m)
      sums, n = None, 0
      if progress is not None:
        progress(i + 1, m)
  return module, params, history


# ----------------------------------------------------------------------------- held-out check

def geodesic_px(a_M2, b_M2, layout_M2, env_cfg) -> np.ndarray:
  """Shortest free path length (px) between points in Two Rooms, ignoring the agent's radius:
  straight within a room, else through the door (best crossing height in the door gap)."""
  a, b, lay = (np.asarray(x, np.float64) for x in (a_M2, b_M2, layout_M2))
  wall_x, door_y = lay[:, 0], lay[:, 1]
  same = (a[:, 0] >= wall_x) == (b[:, 0] >= wall_x)
  h = env_cfg.door_half_height - 1.0
  ys = door_y[:, None] + np.linspace(-h, h, 17)[None, :]
  via = (np.hypot(a[:, :1] - wall_x[:, None], a[:, 1:] - ys)
         + np.hypot(b[:, :1] - wall_x[:, None], b[:, 1:] - ys)).min(1)
  return np.where(same, np.hypot(*(a - b).T), via)


def geodesic_agreement(distance_fn, z_LGT, pos_LGT2, layout_LG2, env_cfg, pairs: int = 4096,
                       seed: int = 0) -> dict:
  """How well a distance ranks random same-layout pairs of held-out states by their true
  shortest-path length: Spearman rank correlation, overall and for pairs in different rooms
  (where the picture difference and the walk length disagree most), and its scale in distance
  units per px of path (`units_per_px`)."""
  rng = np.random.default_rng(seed)
  L, G, T = z_LGT.shape[:3]
  l = rng.integers(0, L, pairs)
  ia, ta, ib, tb = (rng.integers(0, n, pairs) for n in (G, T, G, T))
  za, zb = z_LGT[l, ia, ta], z_LGT[l, ib, tb]
  pa, pb, lay = pos_LGT2[l, ia, ta], pos_LGT2[l, ib, tb], layout_LG2[l, 0]
  geo = geodesic_px(pa, pb, lay, env_cfg)
  d = np.asarray(distance_fn(jnp.asarray(za), jnp.asarray(zb)))
  cross = (pa[:, 0] >= lay[:, 0]) != (pb[:, 0] >= lay[:, 0])
  # the distance's scale: least squares through the origin, distance units per px of path
  # (compare distances of different objectives, or set a planner's weight)
  per_px = float(np.sum(d * geo) / max(float(np.sum(geo * geo)), 1e-12))
  return dict(spearman=spearman(d, geo), spearman_cross_room=spearman(d[cross], geo[cross]),
              cross_room_share=float(cross.mean()), pairs=pairs, units_per_px=per_px)


# ----------------------------------------------------------------------------- save / load

META = 'goal_distance.json'


def save(workdir: str, cfg: DistanceConfig, params, meta: dict) -> None:
  """params (orbax) + goal_distance.json (the DistanceConfig and `meta`, e.g. which world
  model's latents it was fitted on) into `workdir`."""
  checkpoint.save_params(workdir, params, META, dict(config=dataclasses.asdict(cfg), **meta))


def load(workdir: str):
  """-> (distance_fn(z, z_goal) -> steps, meta dict) of a `save`d distance; pure and jittable,
  batched over leading latent axes."""
  path = os.path.join(workdir, META)
  if not os.path.exists(path):
    raise FileNotFoundError(f'no goal distance in {workdir!r} ({META} missing): train one with '
                            f'`python -m experiments.goal_distance --workdir={workdir}` or fix '
                            'the path (config key cost.distance.workdir)')
  with open(path) as f:
    meta = json.load(f)
  cfg = DistanceConfig.from_dict(meta['config'])
  shapes = meta['latent_shape']
  module = make_module(cfg, len(shapes))
  abstract = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros(shapes), jnp.zeros(shapes))
  params = checkpoint.restore_params(workdir, abstract)

  def distance_fn(z, z_goal):
    return to_steps(cfg, module.apply(params, z, z_goal))

  return distance_fn, meta
