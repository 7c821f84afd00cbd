"""Procedural physics videos: balls under gravity bouncing off floor, walls and each other,
with opaque occluders in front. Pure numpy, deterministic for a given np.random.Generator.

Coordinates are in pixels, x to the right (columns), y downwards (rows); pixel (row i, col j)
covers [j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5). Velocities are px/frame.
Ball index order is by decreasing radius, so "ball 0" is a visible property (the largest).
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PhysicsConfig:
  num_frames: int = 16
  size: int = 64                       # square canvas, pixels
  num_balls: int = 2
  radius: tuple[float, float] = (3.0, 6.0)
  min_radius_gap: float = 1.5          # balls differ visibly in size, so "ball k" is well defined
  speed: tuple[float, float] = (1.0, 3.5)   # initial |v|, px/frame
  gravity: float = 0.35                # px/frame^2, downwards
  restitution: float = 0.85            # floor/walls; ball-ball collisions are elastic
  floor_height: int = 6                # rows of floor at the bottom
  num_occluders: tuple[int, int] = (0, 1)   # inclusive range
  occluder_width: tuple[int, int] = (6, 12)
  substeps: int = 4

  def validate(self):
    if self.num_balls < 1:
      raise ValueError(f"data.physics.num_balls must be >= 1, got {self.num_balls}")
    if 2 * self.radius[1] * self.num_balls >= self.size - self.floor_height:
      raise ValueError("data.physics: balls too large for the canvas; reduce radius or num_balls")
    # Strict: at equality only a measure-zero set of radii qualifies and sampling would never end.
    if (self.num_balls - 1) * self.min_radius_gap >= self.radius[1] - self.radius[0]:
      raise ValueError("data.physics: radius range too narrow for num_balls with min_radius_gap; "
                       "widen radius or lower min_radius_gap")
    return self


@dataclasses.dataclass
class Scene:
  """Everything that stays fixed during a video (initial state included)."""
  pos0_N2: np.ndarray
  vel0_N2: np.ndarray
  radius_N: np.ndarray
  color_N3: np.ndarray
  background_3: np.ndarray
  floor_3: np.ndarray
  occluders_M4: np.ndarray     # x0, y0, x1, y1 (pixels, exclusive end)
  occluder_color_M3: np.ndarray


def _non_overlapping_positions(rng, radius_N, cfg):
  floor_y = cfg.size - cfg.floor_height
  for _ in range(1000):
    x = rng.uniform(radius_N, cfg.size - radius_N)
    y = rng.uniform(radius_N, floor_y - radius_N - 0.35 * floor_y)  # start in the upper part
    pos = np.stack([x, y], -1)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(len(radius_N)) * 1e9
    if np.all(d > radius_N[:, None] + radius_N[None] + 1.0):
      return pos
  raise RuntimeError("could not place balls without overlap; reduce data.physics.radius")


def _distinct_radii(rng, cfg):
  """Decreasing radii, consecutive ones at least min_radius_gap apart (rejection sampling)."""
  for _ in range(10_000):
    radius = np.sort(rng.uniform(*cfg.radius, size=cfg.num_balls))[::-1]
    if np.all(-np.diff(radius) >= cfg.min_radius_gap):
      return radius
  raise RuntimeError("could not draw radii min_radius_gap apart; widen data.physics.radius or "
                     "lower data.physics.min_radius_gap")


def sample_scene(rng: np.random.Generator, cfg: PhysicsConfig) -> Scene:
  n = cfg.num_balls
  radius = _distinct_radii(rng, cfg)
  pos = _non_overlapping_positions(rng, radius, cfg)
  angle = rng.uniform(0, 2 * np.pi, size=n)
  speed = rng.uniform(*cfg.speed, size=n)
  vel = np.stack([np.cos(angle), np.sin(angle)], -1) * speed[:, None]
  m = rng.integers(cfg.num_occluders[0], cfg.num_occluders[1] + 1)
  width = rng.integers(cfg.occluder_width[0], cfg.occluder_width[1] + 1, size=m)
  x0 = rng.integers(0, cfg.size - width + 1, size=m) if m else np.zeros(0, int)
  top = rng.integers(0, cfg.size // 3, size=m) if m else np.zeros(0, int)
  occluders = np.stack([x0, top, x0 + width, np.full(m, cfg.size - cfg.floor_height)], -1)
  return Scene(
      pos0_N2=pos, vel0_N2=vel, radius_N=radius,
      color_N3=rng.uniform(0.35, 1.0, size=(n, 3)),
      background_3=rng.uniform(0.0, 0.15, size=3),
      floor_3=np.full(3, 0.5) + rng.uniform(-0.05, 0.05, size=3),
      occluders_M4=occluders.reshape(m, 4).astype(np.int32),
      occluder_color_M3=rng.uniform(0.2, 0.6, size=(m, 3)))


def _collide_walls(pos, vel, radius, cfg, solid_N=None):
  """Reflect off the canvas walls and the floor; balls with solid_N False pass through them."""
  floor_y = cfg.size - cfg.floor_height
  lo = radius[:, None]
  hi = np.stack([cfg.size - radius, floor_y - radius], -1)
  below, above = pos < lo, pos > hi
  if solid_N is not None:
    below, above = below & solid_N[:, None], above & solid_N[:, None]
    lo = np.where(solid_N[:, None], lo, -np.inf)
    hi = np.where(solid_N[:, None], hi, np.inf)
  pos = np.where(below, 2 * lo - pos, np.where(above, 2 * hi - pos, pos))
  vel = np.where(below, np.abs(vel) * cfg.restitution,
                 np.where(above, -np.abs(vel) * cfg.restitution, vel))
  return np.clip(pos, lo, hi), vel


def _collide_balls(pos, vel, radius):
  """Elastic collisions between approaching overlapping pairs (mass ~ area)."""
  mass = radius**2
  n = len(radius)
  for i in range(n):
    for j in range(i + 1, n):
      delta = pos[j] - pos[i]
      dist = np.linalg.norm(delta)
      overlap = radius[i] + radius[j] - dist
      if overlap <= 0 or dist == 0:
        continue
      normal = delta / dist
      approach = np.dot(vel[i] - vel[j], normal)
      if approach > 0:
        impulse = 2 * approach / (mass[i] + mass[j])
        vel[i] -= impulse * mass[j] * normal
        vel[j] += impulse * mass[i] * normal
      # Separate so they do not stay interpenetrated.
      pos[i] -= normal * overlap * mass[j] / (mass[i] + mass[j])
      pos[j] += normal * overlap * mass[i] / (mass[i] + mass[j])
  return pos, vel


def simulate(scene: Scene, cfg: PhysicsConfig, num_frames: int | None = None):
  """-> pos_TN2, vel_TN2 at each frame (frame 0 = initial state)."""
  return simulate_state(scene.pos0_N2, scene.vel0_N2, scene.radius_N, cfg,
                        num_frames or cfg.num_frames)


def simulate_state(pos0_N2, vel0_N2, radius_N, cfg: PhysicsConfig, num_frames: int,
                   gravity_N=None, solid_N=None, switch_frame: int = 0, edit=None):
  """simulate() from an arbitrary state, with optional per-ball laws (for violation-of-
  expectation twins): gravity_N (px/frame^2, downwards; default cfg.gravity for every ball) and
  solid_N (False: the ball ignores walls and floor; default all True). The laws hold for the
  steps that produce frames >= switch_frame (earlier frames follow cfg bit for bit); `edit(pos,
  vel) -> (pos, vel)` changes the (float64) state of frame switch_frame - 1 before those steps."""
  dt = 1.0 / cfg.substeps
  pos, vel = np.asarray(pos0_N2, np.float64).copy(), np.asarray(vel0_N2, np.float64).copy()
  pos_T, vel_T = [pos.copy()], [vel.copy()]
  gravity_cfg = np.array([0.0, cfg.gravity])
  gravity_new = gravity_cfg
  if gravity_N is not None:
    gravity_new = np.stack([np.zeros(len(radius_N)), np.asarray(gravity_N, np.float64)], -1)
  solid_new = None if solid_N is None else np.asarray(solid_N, bool)
  for f in range(1, num_frames):
    switched = f >= switch_frame
    if edit is not None and f == max(switch_frame, 1):
      pos, vel = edit(pos.copy(), vel.copy())
    gravity, solid = (gravity_new, solid_new) if switched else (gravity_cfg, None)
    for _ in range(cfg.substeps):
      vel = vel + gravity * dt          # semi-implicit Euler
      pos = pos + vel * dt
      pos, vel = _collide_walls(pos, vel, radius_N, cfg, solid)
      pos, vel = _collide_balls(pos, vel, radius_N)
    pos_T.append(pos.copy())
    vel_T.append(vel.copy())
  return np.stack(pos_T).astype(np.float32), np.stack(vel_T).astype(np.float32)


def render(scene: Scene, cfg: PhysicsConfig, pos_TN2, radius_TN=None, color_TN3=None,
           visible_TN=None):
  """Draws frames (T, H, W, 3) uint8. Per-frame radius/colour/visibility default to the scene's
  constants; they exist so violation-of-expectation twins can change them mid-video."""
  t, n = pos_TN2.shape[:2]
  radius_TN = np.broadcast_to(scene.radius_N, (t, n)) if radius_TN is None else radius_TN
  color_TN3 = np.broadcast_to(scene.color_N3, (t, n, 3)) if color_TN3 is None else color_TN3
  visible_TN = np.ones((t, n), bool) if visible_TN is None else visible_TN
  s = cfg.size
  img = np.empty((t, s, s, 3), np.float32)
  img[:] = scene.background_3
  img[:, s - cfg.floor_height:] = scene.floor_3
  for f in range(t):
    for b in np.flatnonzero(visible_TN[f]):
      (x, y), r = pos_TN2[f, b], radius_TN[f, b]
      # Only the ball's bounding box is touched: rendering is ~10x faster than full frames.
      c0, c1 = max(int(x - r - 1), 0), min(int(x + r + 2), s)
      r0, r1 = max(int(y - r - 1), 0), min(int(y + r + 2), s)
      if c0 >= c1 or r0 >= r1:
        continue
      dx = np.arange(c0, c1, dtype=np.float32) + 0.5 - x
      dy = np.arange(r0, r1, dtype=np.float32) + 0.5 - y
      # Anti-aliased disc: 1 inside, linear ramp over one pixel at the rim (sub-pixel position
      # stays visible in the pixels).
      alpha = np.clip(r + 0.5 - np.sqrt(dy[:, None]**2 + dx[None] ** 2), 0.0, 1.0)[..., None]
      patch = img[f, r0:r1, c0:c1]
      img[f, r0:r1, c0:c1] = patch * (1 - alpha) + color_TN3[f, b] * alpha
  for (x0, y0, x1, y1), c in zip(scene.occluders_M4, scene.occluder_color_M3):
    img[:, y0:y1, x0:x1] = c
  return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_video(rng: np.random.Generator, cfg: PhysicsConfig) -> dict:
  scene = sample_scene(rng, cfg)
  pos, vel = simulate(scene, cfg)
  return {"frames": render(scene, cfg, pos), "pos": pos, "vel": vel,
          "radius": scene.radius_N.astype(np.float32)}
