"""Violation-of-expectation (VoE) benchmark: matched possible / impossible physics videos.

Each test item is a pair of videos of the same scene (balls under gravity, floor, walls,
occluders; data/physics.py). The impossible twin shares every frame before the violation time
`t_violation` exactly (same renderer inputs) and differs from it on. Types, by the principle
they break:

  permanence  a ball vanishes in open view, appears out of nowhere, or never re-emerges from
              behind an occluder
  continuity  a ball teleports (jump > twice the fastest motion in the scene), then moves on
  constancy   a ball changes colour or size while in view
  gravity     a ball falls upward (gravity reversed) or hovers (gravity off, vertical speed 0)
  solidity    a ball passes through the floor instead of bouncing

Violations are made visible: the ball is not behind an occluder when it happens (except where
that is the point), and the twins must differ in >= `min_changed_pixels` pixels over the
`min_suffix` frames from `t_violation`. Candidates failing a check are redrawn (rejection).
Pair `j` of a type is a pure function of (seed, type, j), from an RNG stream disjoint from the
training/probe streams of data/sources.py, so the test scenes never coincide with training ones.
The training split is the existing pretraining data (possible videos only).
"""

import dataclasses

import numpy as np

from jepa_jax.data import physics as ph
from jepa_jax.data.sources import SPLITS

TYPES = ("permanence", "continuity", "constancy", "gravity", "solidity")
_VOE_STREAM = 1000  # first entropy word after the seed; training/probe streams use 0..len(SPLITS)
assert _VOE_STREAM not in SPLITS.values()


@dataclasses.dataclass(frozen=True)
class ViolationConfig:
  min_prefix: int = 8            # frames before the violation (context for a predictor)
  min_suffix: int = 6            # frames from the violation on, inside the video
  min_changed_pixels: int = 40   # over those min_suffix frames: "large enough to matter"
  pixel_threshold: int = 24      # a pixel changed if some channel differs by more (of 255)
  min_jump: float = 14.0         # continuity: teleport distance, px
  max_tries: int = 500


def pair_rng(seed: int, type_index: int, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, _VOE_STREAM, type_index, index])


# --- Ground-truth geometry ----------------------------------------------------------------------

def occluded_TN(pos_TN2, radius_TN, occluders_M4):
  """True where a ball's disc overlaps any occluder (partly hidden)."""
  out = np.zeros(pos_TN2.shape[:2], bool)
  for x0, y0, x1, y1 in occluders_M4:
    dx = np.maximum(np.maximum(x0 - pos_TN2[..., 0], 0), pos_TN2[..., 0] - x1)
    dy = np.maximum(np.maximum(y0 - pos_TN2[..., 1], 0), pos_TN2[..., 1] - y1)
    out |= dx**2 + dy**2 < (radius_TN + 1.0)**2
  return out


def hidden_TN(pos_TN2, radius_TN, occluders_M4):
  """True where a ball's disc (plus the anti-aliased rim) lies entirely behind one occluder."""
  out = np.zeros(pos_TN2.shape[:2], bool)
  r = radius_TN + 1.0
  for x0, y0, x1, y1 in occluders_M4:
    x, y = pos_TN2[..., 0], pos_TN2[..., 1]
    out |= (x - r >= x0) & (x + r <= x1) & (y - r >= y0) & (y + r <= y1)
  return out


def in_free_flight_TN(pos_TN2, radius_TN, cfg: ph.PhysicsConfig, margin: float = 1.0):
  """No wall/floor/ceiling contact (ball-ball contacts are not checked here)."""
  x, y = pos_TN2[..., 0], pos_TN2[..., 1]
  floor_y = cfg.size - cfg.floor_height
  return ((x - radius_TN > margin) & (x + radius_TN < cfg.size - margin)
          & (y - radius_TN > margin) & (y + radius_TN < floor_y - margin))


def changed_pixels_T(a_THWC, b_THWC, threshold: int):
  diff = np.abs(a_THWC.astype(np.int16) - b_THWC.astype(np.int16)).max(-1)
  return (diff > threshold).sum((1, 2))


# --- States ---------------------------------------------------------------------------------------

def _state(pos_TN2, scene, visible_TN=None):
  t, n = pos_TN2.shape[:2]
  return {"pos": pos_TN2.astype(np.float32),
          "radius": np.broadcast_to(scene.radius_N, (t, n)).astype(np.float32),
          "color": np.broadcast_to(scene.color_N3, (t, n, 3)).astype(np.float32),
          "visible": np.ones((t, n), bool) if visible_TN is None else visible_TN}


def _copy(state):
  return {k: v.copy() for k, v in state.items()}


# --- One generator per type: (rng, scene, cfg, vcfg) -> (possible, impossible, info) or None ---

def _permanence(rng, scene, cfg, vcfg):
  t, n = cfg.num_frames, cfg.num_balls
  b = int(rng.integers(n))
  variant = str(rng.choice(["vanish", "appear", "vanish_behind_occluder"]))
  pos, vel = ph.simulate(scene, cfg)
  if variant == "appear":
    # The possible video never shows ball b, and nothing ever touched it: others are simulated
    # without b, b alone; b becomes visible at t_v in the impossible twin.
    others = [i for i in range(n) if i != b]
    pos_o, _ = ph.simulate_state(scene.pos0_N2[others], scene.vel0_N2[others],
                                 scene.radius_N[others], cfg, t)
    pos_b, _ = ph.simulate_state(scene.pos0_N2[[b]], scene.vel0_N2[[b]],
                                 scene.radius_N[[b]], cfg, t)
    pos = np.zeros_like(pos)
    pos[:, others], pos[:, [b]] = pos_o, pos_b
    visible = np.ones((t, n), bool)
    visible[:, b] = False
    possible = _state(pos, scene, visible)
    t_v = int(rng.integers(vcfg.min_prefix, t - vcfg.min_suffix + 1))
    gap = np.linalg.norm(pos[t_v:, others] - pos[t_v:, [b]], axis=-1)
    if np.any(gap < scene.radius_N[others] + scene.radius_N[b] + 1):
      return None   # would appear on top of another ball (a second, unintended violation)
    impossible = _copy(possible)
    impossible["visible"][t_v:, b] = True
  else:
    possible = _state(pos, scene)
    if variant == "vanish":
      t_v = int(rng.integers(vcfg.min_prefix, t - vcfg.min_suffix + 1))
    else:  # hide b once it is fully behind an occluder: it never comes out again
      hid = hidden_TN(pos, possible["radius"], scene.occluders_M4)[:, b]
      starts = [s for s in range(1, t) if hid[s] and not hid[s:].all()]
      if not starts:
        return None
      t_v = int(rng.choice(starts))
    impossible = _copy(possible)
    impossible["visible"][t_v:, b] = False
  info = {"variant": variant, "ball": b}
  return possible, impossible, info


def _continuity(rng, scene, cfg, vcfg):
  t, n = cfg.num_frames, cfg.num_balls
  b = int(rng.integers(n))
  pos, _ = ph.simulate(scene, cfg)
  t_v = int(rng.integers(vcfg.min_prefix, t - vcfg.min_suffix + 1))
  max_step = np.linalg.norm(np.diff(pos, axis=0), axis=-1).max()
  # The normal step of frame t_v adds at most max_step to the jump, in any direction.
  dist = max(vcfg.min_jump + max_step, 3.0 * max_step) * rng.uniform(1.0, 1.5)
  angle = rng.uniform(0, 2 * np.pi)
  shift = dist * np.array([np.cos(angle), np.sin(angle)])

  def teleport(p, v):   # the state before frame t_v moves, velocity kept; then the usual laws
    p[b] += shift
    return p, v

  imp_pos, _ = ph.simulate_state(scene.pos0_N2, scene.vel0_N2, scene.radius_N, cfg, t,
                                 switch_frame=t_v, edit=teleport)
  new, r = imp_pos[t_v, b], scene.radius_N[b]
  floor_y = cfg.size - cfg.floor_height
  if not (r + 1 <= new[0] <= cfg.size - r - 1 and r + 1 <= new[1] <= floor_y - r - 1):
    return None
  others = [i for i in range(n) if i != b]
  if np.any(np.linalg.norm(imp_pos[t_v, others] - new, axis=-1)
            < scene.radius_N[others] + r + 1):
    return None
  jump = np.linalg.norm(imp_pos[t_v, b] - imp_pos[t_v - 1, b])
  if jump < max(vcfg.min_jump, 2.0 * max_step):
    return None
  return _state(pos, scene), _state(imp_pos, scene), {"variant": "teleport", "ball": b}


def _constancy(rng, scene, cfg, vcfg):
  t, n = cfg.num_frames, cfg.num_balls
  b = int(rng.integers(n))
  pos, _ = ph.simulate(scene, cfg)
  t_v = int(rng.integers(vcfg.min_prefix, t - vcfg.min_suffix + 1))
  possible = _state(pos, scene)
  impossible = _copy(possible)
  variant = str(rng.choice(["colour", "size"]))
  if variant == "colour":
    old = scene.color_N3[b]
    for _ in range(100):
      new = rng.uniform(0.35, 1.0, size=3)
      if np.abs(new - old).max() >= 0.4:
        break
    else:
      return None
    impossible["color"][t_v:, b] = new
  else:
    r = scene.radius_N[b]
    factor = rng.choice([0.5, 1.6])
    new_r = r * factor
    impossible["radius"][t_v:, b] = new_r
    if factor > 1:  # a grown ball must still fit above the floor and between the walls
      grown = impossible["radius"][t_v:, b]
      if not in_free_flight_TN(pos[t_v:, [b]], grown[:, None], cfg, margin=-1.0).all():
        return None
  return possible, impossible, {"variant": variant, "ball": b}


def _gravity(rng, scene, cfg, vcfg):
  t, n = cfg.num_frames, cfg.num_balls
  b = int(rng.integers(n))
  pos, vel = ph.simulate(scene, cfg)
  t_v = int(rng.integers(vcfg.min_prefix, t - vcfg.min_suffix + 1))
  variant = str(rng.choice(["upward", "hover"]))
  gravity_N = np.full(n, cfg.gravity)
  edit = None
  if variant == "upward":
    gravity_N[b] = -cfg.gravity
  else:  # unsupported, yet it stops falling: no gravity and no vertical speed
    gravity_N[b] = 0.0

    def edit(p, v):
      v[b, 1] = 0.0
      return p, v
  imp_pos, _ = ph.simulate_state(scene.pos0_N2, scene.vel0_N2, scene.radius_N, cfg, t,
                                 gravity_N=gravity_N, switch_frame=t_v, edit=edit)
  # The law change must show in free flight: a bounce or a ball-ball contact would mask the
  # acceleration. Checked on the trajectories (a contact can hide between two frames).
  if t_v + 4 > t:
    return None
  for p, g in ((pos, cfg.gravity), (imp_pos, gravity_N[b])):
    y = p[t_v - 2:t_v + 4, b, 1].astype(np.float64)
    acc = y[2:] - 2 * y[1:-1] + y[:-2]          # a_y at t_v - 1 .. t_v + 2
    steady = acc[1:] if p is imp_pos else acc   # the twin's law changes at the step to t_v
    if np.abs(steady - g).max() > 1e-3:
      return None
  return _state(pos, scene), _state(imp_pos, scene), {"variant": variant, "ball": b}


def _solidity(rng, scene, cfg, vcfg):
  t, n = cfg.num_frames, cfg.num_balls
  b = int(rng.integers(n))
  pos, vel = ph.simulate(scene, cfg)
  t_s = int(rng.integers(1, t - vcfg.min_suffix + 1))
  solid_N = np.ones(n, bool)
  solid_N[b] = False
  imp_pos, _ = ph.simulate_state(scene.pos0_N2, scene.vel0_N2, scene.radius_N, cfg, t,
                                 solid_N=solid_N, switch_frame=t_s)
  moved = np.flatnonzero(np.abs(imp_pos[:, b] - pos[:, b]).max(-1) > 0)
  if not len(moved):
    return None
  # Only the floor is a visible solid (the side walls and ceiling are the canvas edges): the
  # first difference must be the ball going into the floor.
  t0 = moved[0]
  floor_y = cfg.size - cfg.floor_height
  if imp_pos[t0, b, 1] + scene.radius_N[b] <= floor_y:
    return None
  return _state(pos, scene), _state(imp_pos, scene), {"variant": "through_floor", "ball": b}


GENERATORS = {"permanence": _permanence, "continuity": _continuity, "constancy": _constancy,
              "gravity": _gravity, "solidity": _solidity}


def render_state(scene, cfg, state):
  return ph.render(scene, cfg, state["pos"], state["radius"], state["color"], state["visible"])


def make_pair(rng: np.random.Generator, cfg: ph.PhysicsConfig, kind: str,
              vcfg: ViolationConfig = ViolationConfig()) -> dict:
  """One matched pair of `kind`. `t_violation` is the first frame at which the renderings
  differ; all earlier frames are bitwise identical."""
  if kind not in GENERATORS:
    raise ValueError(f"unknown violation type {kind!r}; choose from {TYPES}")
  if cfg.num_frames < vcfg.min_prefix + vcfg.min_suffix:
    raise ValueError(f"videos of {cfg.num_frames} frames cannot hold min_prefix="
                     f"{vcfg.min_prefix} + min_suffix={vcfg.min_suffix} frames")
  for _ in range(vcfg.max_tries):
    scene = ph.sample_scene(rng, cfg)
    out = GENERATORS[kind](rng, scene, cfg, vcfg)
    if out is None:
      continue
    possible, impossible, info = out
    f_pos, f_imp = render_state(scene, cfg, possible), render_state(scene, cfg, impossible)
    differ = np.flatnonzero((f_pos != f_imp).any((1, 2, 3)))
    if not len(differ):
      continue
    t_v = int(differ[0])
    if not vcfg.min_prefix <= t_v <= cfg.num_frames - vcfg.min_suffix:
      continue
    window = slice(t_v, t_v + vcfg.min_suffix)
    if changed_pixels_T(f_pos[window], f_imp[window], vcfg.pixel_threshold).sum() \
        < vcfg.min_changed_pixels:
      continue
    # The ground truth agrees before t_v and differs at it (a hidden ball's visibility flag
    # may switch earlier: that is the point of vanish_behind_occluder).
    keys = ["pos", "radius", "color"]
    if info["variant"] != "vanish_behind_occluder":
      keys.append("visible")
    state_diff = [np.flatnonzero((possible[k] != impossible[k]).reshape(len(f_pos), -1).any(1))
                  for k in keys]
    if min((d[0] for d in state_diff if len(d)), default=t_v) != t_v:
      continue
    b = info["ball"]
    if kind != "permanence" or info["variant"] != "vanish_behind_occluder":
      # In open view when it happens: not even partly behind an occluder, in either twin.
      occ = [occluded_TN(s["pos"][t_v:t_v + 1], s["radius"][t_v:t_v + 1],
                         scene.occluders_M4)[0, b] for s in (possible, impossible)]
      if any(occ):
        continue
    return {"possible": f_pos, "impossible": f_imp, "t_violation": t_v, "type": kind,
            "type_index": TYPES.index(kind), **info,
            "state": {k: np.stack([possible[k], impossible[k]]) for k in possible},
            "occluders": scene.occluders_M4.copy(),
            "floor_y": cfg.size - cfg.floor_height}
  raise RuntimeError(f"no valid {kind!r} pair in {vcfg.max_tries} scenes; videos too short or "
                     "thresholds too strict for this physics config")


class ViolationSource:
  """Random access to test pairs: element i is pair i // len(types) of type types[i % K]."""

  def __init__(self, cfg: ph.PhysicsConfig, pairs_per_type: int, seed: int = 0,
               vcfg: ViolationConfig = ViolationConfig(), types=TYPES):
    self.cfg, self.vcfg = cfg.validate(), vcfg
    self.pairs_per_type, self.seed, self.types = pairs_per_type, seed, tuple(types)
    unknown = set(self.types) - set(TYPES)
    if unknown:
      raise ValueError(f"unknown violation types {sorted(unknown)}; choose from {TYPES}")

  def __len__(self):
    return self.pairs_per_type * len(self.types)

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < len(self):
      raise IndexError(index)
    kind = self.types[index % len(self.types)]
    rng = pair_rng(self.seed, TYPES.index(kind), index // len(self.types))
    return make_pair(rng, self.cfg, kind, self.vcfg)


def make_benchmark(source: ViolationSource) -> dict:
  """All pairs stacked: possible/impossible (P, T, H, W, 3) uint8, t_violation (P,), type (P,)
  plus the per-pair metadata lists."""
  items = [source[i] for i in range(len(source))]
  out = {k: np.stack([it[k] for it in items]) for k in ("possible", "impossible", "t_violation",
                                                       "type_index", "ball")}
  out.update({k: [it[k] for it in items] for k in ("type", "variant")})
  return out
