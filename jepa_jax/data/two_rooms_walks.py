"""Offline PLDM-style random-walk data for the Two Rooms environment.

Generation runs on device (jit + vmap over trajectories, ``lax.scan`` over time):

* start uniform in free space (or near the door for steered walks, see below);
* heading_{t+1} = heading_t + VonMises(0, heading_kappa);
* step length ~ Normal(step_mean, step_std) truncated to [step_min, step_max];
* action_t = length * (cos heading, sin heading), applied with ``two_rooms.step``.
* A share ``cross_wall_rate`` of the trajectories is *steered*: they start in a random room
  at most ``max(0.6 * (T - 1) * step_mean - 2.5 - wall_width, 0)`` px from a waypoint 2.5 px
  in front of the door (a uniform room point pulled towards it if farther, so the crossing
  fits in the trajectory), aim at that waypoint, then at the mirrored one on the other side
  (heading = aim + VonMises(0, steer_kappa)), then continue as a free random walk. So the
  data contains door crossings (nearly every steered walk crosses for T >= ~10); free walks
  also cross by chance (~2% at T = 17).
* A share ``wall_push_rate`` (disjoint from the steered share) is *wall-pushing*: a target
  y on the middle wall at least ``door_half_height + 2`` px from the door centre; start in a
  random room point of that y band (above or below the door), pulled to within
  ``0.45 * (T - 1) * step_mean`` px of the near face at that y (contact within about the
  first half), then head for a point ``2.5`` px beyond the far face (heading = aim +
  VonMises(0, steer_kappa)) for the whole trajectory. The env stops the agent at the face, so
  it keeps pushing into the wall without moving (~70% of their transitions at T = 17, first
  contact after ~6 steps; free walks push into the middle wall in ~8% of theirs). A model
  trained without them learned to pass through the wall. Pushes into the border happen
  naturally. A share ``push_door_edge_share`` of the pushes aims at y 0.5-4.5 px beside the
  door gap instead: the wall corner at the door, where planners with a learned model stall.

Stored actions are the **commanded** actions (what was passed to ``step``): norm-clipping
never triggers because ``step_max <= max_action_norm`` is enforced, and wall stopping is
*not* reflected in them (an agent pushing into a wall has a non-zero action and no motion).

On disk: ``shard_00000.npz`` ... (uncompressed, one per ``shard_size`` trajectories) holding
``obs`` (n, T, H, W, 2) uint8 (x255) or float16, ``act`` (n, T-1, 2) float32, ``state``
(n, T, 2) float32 agent positions, ``layout`` (n, 2) float32, ``steered`` (n,) bool,
``pushed`` (n,) bool (absent in datasets written before it existed: read as False); plus
``meta.json``. Trajectory ``i`` is generated from ``fold_in(key, i)``, so a dataset does not
depend on ``shard_size`` or the generation chunk size.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import os
import pathlib
import zipfile
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.envs import two_rooms

__all__ = [
    "WalksConfig",
    "vonmises",
    "generate_walks",
    "generate_walks_in_layouts",
    "write_dataset",
    "read_meta",
    "TwoRoomsWindowSource",
    "FORMAT",
]

FORMAT = "two_rooms_walks/v1"
_OBS_DTYPES = ("uint8", "float16")
_APPROACH_PX = 2.5  # door waypoints sit this far outside the wall faces
_WAYPOINT_RADIUS_PX = 1.5  # a waypoint counts as reached within this distance
_PUSH_DOOR_MARGIN_PX = 2.0  # wall-push targets stay this far beyond the door gap's edges
_PUSH_EDGE_PX = (0.5, 4.5)  # door-edge pushes (push_door_edge_share) aim this far beyond the gap
_PUSH_REACH = 0.45  # wall-push starts lie within this share of (T - 1) * step_mean of the wall
_VM_PROPOSALS = 16


@dataclasses.dataclass(frozen=True)
class WalksConfig:
    env: two_rooms.TwoRoomsConfig = two_rooms.TwoRoomsConfig()
    heading_kappa: float = 4.0  # von Mises concentration of the per-step heading change
    steer_kappa: float = 10.0  # concentration around the aim direction while steered
    step_mean: float = 1.0
    step_std: float = 0.4
    step_min: float = 0.2
    step_max: float = 1.8
    cross_wall_rate: float = 0.35
    wall_push_rate: float = 0.0
    # Share of the wall pushes aimed at the wall just beside the door (_PUSH_EDGE_PX from the
    # gap's edge) instead of uniformly along it: the corner where planners get stuck.
    push_door_edge_share: float = 0.0
    obs_dtype: str = "uint8"

    def __post_init__(self):
        def need(ok: bool, key: str, msg: str):
            if not ok:
                raise ValueError(f"WalksConfig.{key}: {msg} (got {getattr(self, key)!r}).")

        need(isinstance(self.env, two_rooms.TwoRoomsConfig), "env", "must be a TwoRoomsConfig")
        need(self.heading_kappa >= 1e-3, "heading_kappa", "must be >= 1e-3")
        need(self.steer_kappa >= 1e-3, "steer_kappa", "must be >= 1e-3")
        need(self.step_std > 0, "step_std", "must be > 0")
        need(0 <= self.step_min < self.step_max, "step_min", "need 0 <= step_min < step_max")
        need(self.step_max <= self.env.max_action_norm, "step_max",
             "must be <= env.max_action_norm so stored actions are never clipped")
        need(0.0 <= self.cross_wall_rate <= 1.0, "cross_wall_rate", "must be in [0, 1]")
        need(0.0 <= self.wall_push_rate <= 1.0, "wall_push_rate", "must be in [0, 1]")
        need(0.0 <= self.push_door_edge_share <= 1.0, "push_door_edge_share", "must be in [0, 1]")
        if self.cross_wall_rate + self.wall_push_rate > 1.0:
            raise ValueError(
                "WalksConfig.cross_wall_rate + WalksConfig.wall_push_rate must be <= 1: the "
                "steered and wall-pushing shares are disjoint "
                f"(got {self.cross_wall_rate!r} + {self.wall_push_rate!r}).")
        need(self.obs_dtype in _OBS_DTYPES, "obs_dtype", f"must be one of {_OBS_DTYPES}")

    @classmethod
    def from_settings(cls, d, random_layout: bool | None = None) -> "WalksConfig":
        """From an experiment config section (world_model ``data``, pretrain ``data.two_rooms``)
        with size, random_layout, heading_kappa, cross_wall_rate and wall_push_rate (absent in
        configs saved before it existed: 0); ``random_layout`` overrides the section's."""
        fixed = not (d.random_layout if random_layout is None else random_layout)
        env = two_rooms.TwoRoomsConfig(size=d.size, fixed_layout=fixed)
        return cls(env=env, heading_kappa=d.heading_kappa, cross_wall_rate=d.cross_wall_rate,
                   wall_push_rate=d.get("wall_push_rate", 0.0),
                   push_door_edge_share=d.get("push_door_edge_share", 0.0), obs_dtype="uint8")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WalksConfig":
        d = dict(d)
        d["env"] = two_rooms.TwoRoomsConfig(**d.get("env", {}))
        return cls(**d)


# ----------------------------------------------------------------------------- sampling

def vonmises(key: jax.Array, kappa: jax.Array | float, shape=()) -> jax.Array:
    """VonMises(0, kappa) samples in [-pi, pi] (Best & Fisher 1979 rejection sampler).

    ``jax.random`` has no von Mises sampler. Instead of a ``while_loop`` we draw
    ``_VM_PROPOSALS`` proposals at once and keep the first accepted one: acceptance is >= 0.65
    for every kappa, so all proposals fail with probability < 0.35**16 ~ 5e-8 (then the
    first proposal is used). One PRNG call and no loop keeps compile time low under vmap.
    ``kappa`` may be traced and must be >= ~1e-3.
    """
    kappa = jnp.broadcast_to(jnp.asarray(kappa, jnp.float32), shape)
    tau = 1.0 + jnp.sqrt(1.0 + 4.0 * kappa ** 2)
    rho = (tau - jnp.sqrt(2.0 * tau)) / (2.0 * kappa)
    s = (1.0 + rho ** 2) / (2.0 * rho)
    u_3K = jax.random.uniform(key, (3, _VM_PROPOSALS) + tuple(shape), minval=1e-12)
    z_K = jnp.cos(jnp.pi * u_3K[0])
    w_K = (1.0 + s * z_K) / (s + z_K)
    y_K = kappa * (s - w_K)
    v_K = u_3K[1]
    accept_K = (y_K * (2.0 - y_K) - v_K >= 0) | (jnp.log(y_K / v_K) + 1.0 - y_K >= 0)
    first = jnp.argmax(accept_K, axis=0)[None]  # index of the first accepted proposal
    w = jnp.take_along_axis(w_K, first, axis=0)[0]
    sign = jnp.where(jnp.take_along_axis(u_3K[2], first, axis=0)[0] < 0.5, -1.0, 1.0)
    return sign * jnp.arccos(jnp.clip(w, -1.0, 1.0))


def _step_length(key: jax.Array, cfg: WalksConfig, shape=()) -> jax.Array:
    lo = (cfg.step_min - cfg.step_mean) / cfg.step_std
    hi = (cfg.step_max - cfg.step_mean) / cfg.step_std
    return cfg.step_mean + cfg.step_std * jax.random.truncated_normal(key, lo, hi, shape)


def _door_waypoints(layout: jax.Array, side: jax.Array, cfg: WalksConfig):
    """Waypoints in front of the door: (on ``side``'s side, on the other side)."""
    wl, wr, _, _ = two_rooms.wall_bounds(layout, cfg.env)
    left = jnp.stack([wl - _APPROACH_PX, layout[1]])
    right = jnp.stack([wr + _APPROACH_PX, layout[1]])
    return jnp.where(side == 0, left, right), jnp.where(side == 0, right, left)


def _push_points(layout: jax.Array, side: jax.Array, u: jax.Array, cfg: WalksConfig,
                 at_edge: jax.Array = False):
    """Wall-push points for a uniform ``u``: (on ``side``'s wall face, 2.5 px beyond the far
    face), at one y uniform over the middle wall at least ``door_half_height + 2`` px from the
    door centre (``at_edge``: _PUSH_EDGE_PX from the gap's edge, above or below the door), and
    that y's band (y0, y1) above or below the door."""
    env = cfg.env
    wl, wr, dlo, dhi = two_rooms.wall_bounds(layout, env)
    lo, hi = float(env.border), float(env.size - env.border)
    below_hi, above_lo = dlo - _PUSH_DOOR_MARGIN_PX, dhi + _PUSH_DOOR_MARGIN_PX
    n_below = jnp.maximum(below_hi - lo, 0.0)
    n_above = jnp.maximum(hi - above_lo, 0.0)
    s = u * (n_below + n_above)
    below = s < n_below
    y = jnp.where(below, lo + s, above_lo + (s - n_below))
    # Door-edge pushes: the same u picks a side of the door and a distance from the gap's edge.
    e0, e1 = _PUSH_EDGE_PX
    edge_below = u < 0.5
    d_edge = e0 + (e1 - e0) * jnp.where(edge_below, 2.0 * u, 2.0 * u - 1.0)
    y_edge = jnp.clip(jnp.where(edge_below, dlo - d_edge, dhi + d_edge), lo, hi)
    y, below = jnp.where(at_edge, y_edge, y), jnp.where(at_edge, edge_below, below)
    band = jnp.where(below, jnp.stack([lo, below_hi]), jnp.stack([above_lo, hi]))
    face = jnp.stack([jnp.where(side == 0, wl, wr), y])
    beyond = jnp.stack([jnp.where(side == 0, wr + _APPROACH_PX, wl - _APPROACH_PX), y])
    return face, beyond, band


def _walk_one(key: jax.Array, cfg: WalksConfig, length: int, layout: jax.Array | None = None):
    """One trajectory: (pos_T2, act_T2 (length-1 rows), layout_2, steered, pushed).

    ``layout``: walk in this layout instead of the one drawn from ``key`` (several walks in one
    layout, see ``generate_walks_in_layouts``); every other draw is unchanged.

    All randomness is drawn before the scan (few PRNG call sites: each costs ~0.1 s of XLA
    compile time), so the scan body is deterministic. Wall-pushing walks reuse draws the other
    kinds need and they don't (the room point, the start heading), so adding them left the
    random stream of free and steered walks unchanged.
    """
    env = cfg.env
    k_layout, k_free, k_room, k_misc, k_len, k_turn = jax.random.split(key, 6)
    if layout is None:
        layout = two_rooms.sample_layout(k_layout, env)
    u_3 = jax.random.uniform(k_misc, (3,))
    steered = u_3[0] < cfg.cross_wall_rate
    pushed = (u_3[0] >= cfg.cross_wall_rate) & (u_3[0] < cfg.cross_wall_rate + cfg.wall_push_rate)
    side = (u_3[1] < 0.5).astype(jnp.int32)
    heading0 = jnp.pi * (2.0 * u_3[2] - 1.0)  # only free walks use it ...
    way_own, way_other = _door_waypoints(layout, side, cfg)
    # A separate key (not a wider u_3) so the draws of free, steered and plain push walks stay
    # as they were before door-edge pushes existed.
    at_edge = jax.random.uniform(jax.random.fold_in(k_misc, 1)) < cfg.push_door_edge_share
    push_face, push_beyond, band = _push_points(layout, side, u_3[2], cfg, at_edge)  # ... reuse it

    free_start = two_rooms.sample_free_pos(k_free, layout, env)
    # Pull a uniform room point towards the door so the crossing fits in `length` steps.
    room_start = two_rooms.sample_pos_in_room(k_room, layout, side, env)
    budget = max(0.6 * (length - 1) * cfg.step_mean - _APPROACH_PX - env.wall_width, 0.0)
    offset = room_start - way_own
    dist = jnp.linalg.norm(offset)
    steer_start = way_own + offset * jnp.minimum(1.0, budget / jnp.maximum(dist, 1e-6))
    # Pushes: the room point moved into the target's y band (so the straight path to the wall
    # misses the door), then pulled towards the face point so contact comes in the first half.
    box_y = jnp.array([env.border, env.size - env.border], jnp.float32)
    band_y = band[0] + (room_start[1] - box_y[0]) * (band[1] - band[0]) / (box_y[1] - box_y[0])
    offset = jnp.stack([room_start[0], band_y]) - push_face
    dist = jnp.linalg.norm(offset)
    reach = _PUSH_REACH * (length - 1) * cfg.step_mean
    push_start = push_face + offset * jnp.minimum(1.0, reach / jnp.maximum(dist, 1e-6))
    pos0 = jnp.where(steered, steer_start, jnp.where(pushed, push_start, free_start))

    len_T = _step_length(k_len, cfg, (length - 1,))
    kappa_2T = jnp.broadcast_to(jnp.array([[cfg.heading_kappa], [cfg.steer_kappa]]),
                                (2, length - 1))
    turn_2T = vonmises(k_turn, kappa_2T, (2, length - 1))  # free walk / steering noise

    def one_step(carry, xs):
        pos, heading, phase = carry
        step_len, free_turn, steer_turn = xs
        steering = steered & (phase < 2)
        target = jnp.where(pushed, push_beyond, jnp.where(phase == 0, way_own, way_other))
        aim = jnp.arctan2(target[1] - pos[1], target[0] - pos[0])
        heading = jnp.where(steering | pushed, aim + steer_turn, heading + free_turn)
        act = step_len * jnp.stack([jnp.cos(heading), jnp.sin(heading)])
        pos = two_rooms.step(two_rooms.EnvState(pos, layout), act, env).pos
        reached = jnp.linalg.norm(pos - target) < _WAYPOINT_RADIUS_PX
        phase = phase + (steering & reached).astype(jnp.int32)  # pushes never change phase
        return (pos, heading, phase), (pos, act)

    xs = (len_T, turn_2T[0], turn_2T[1])
    _, (pos_T2, act_T2) = jax.lax.scan(one_step, (pos0, heading0, jnp.int32(0)), xs)
    pos_T2 = jnp.concatenate([pos0[None], pos_T2], axis=0)
    return pos_T2, act_T2, layout, steered, pushed


def _encode_obs(obs_f32, obs_dtype: str):
    if obs_dtype == "uint8":
        return jnp.round(jnp.clip(obs_f32, 0.0, 1.0) * 255.0).astype(jnp.uint8)
    return obs_f32.astype(jnp.float16)


def _render_walks(pos_NT2, act_NT2, layout_N2, steered_N, pushed_N, cfg: WalksConfig):
    render_T = jax.vmap(two_rooms.render_pos, (0, None, None))
    obs_NTHWC = jax.vmap(render_T, (0, 0, None))(pos_NT2, layout_N2, cfg.env)
    return {
        "obs": _encode_obs(obs_NTHWC, cfg.obs_dtype),
        "act": act_NT2,
        "state": pos_NT2,
        "layout": layout_N2,
        "steered": steered_N,
        "pushed": pushed_N,
    }


def _generate(key, start_index, cfg: WalksConfig, num_trajectories: int, length: int):
    idx_N = start_index + jnp.arange(num_trajectories, dtype=jnp.int32)
    keys_N = jax.vmap(jax.random.fold_in, (None, 0))(key, idx_N)
    walks_N = jax.vmap(lambda k: _walk_one(k, cfg, length))(keys_N)
    return _render_walks(*walks_N, cfg)


_generate_jit = jax.jit(_generate, static_argnums=(2, 3, 4))


def generate_walks(key: jax.Array, cfg: WalksConfig, num_trajectories: int, length: int,
                   start_index: int | jax.Array = 0) -> dict[str, jax.Array]:
    """Random walks for trajectories ``start_index .. start_index + num_trajectories - 1``.

    Returns ``obs`` (N, T, H, W, 2) uint8 (or float16), ``act`` (N, T-1, 2) commanded actions,
    ``state`` (N, T, 2) positions, ``layout`` (N, 2), ``steered`` (N,) bool, ``pushed`` (N,)
    bool (wall-pushing walks).
    """
    if length < 2:
        raise ValueError(f"generate_walks: length must be >= 2 (got {length}).")
    if num_trajectories < 1:
        raise ValueError(f"generate_walks: num_trajectories must be >= 1 (got {num_trajectories}).")
    return _generate_jit(key, jnp.int32(start_index), cfg, int(num_trajectories), int(length))


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _generate_grouped(key, layout_idx_L, cfg: WalksConfig, walks_per_layout: int, length: int):
    def group(idx):
        k_layout, k_walks = jax.random.split(jax.random.fold_in(key, idx))
        layout = two_rooms.sample_layout(k_layout, cfg.env)
        keys_G = jax.random.split(k_walks, walks_per_layout)
        return _render_walks(*jax.vmap(lambda k: _walk_one(k, cfg, length, layout))(keys_G), cfg)

    return jax.vmap(group)(layout_idx_L)


def generate_walks_in_layouts(key: jax.Array, cfg: WalksConfig, num_layouts: int,
                              walks_per_layout: int, length: int, start_index: int = 0,
                              chunk: int = 16) -> dict[str, np.ndarray]:
    """``walks_per_layout`` walks in each of ``num_layouts`` layouts (layouts ``start_index``
    onwards, each from ``fold_in(key, index)``), as ``generate_walks`` returns them with a
    leading layout axis: ``obs`` (L, G, T, H, W, C), ``act`` (L, G, T-1, 2), ... (numpy,
    generated ``chunk`` layouts at a time). Walks that share a layout let a goal-conditioned
    value learn distances between states that no single walk connects."""
    if length < 2 or num_layouts < 1 or walks_per_layout < 1:
        raise ValueError("generate_walks_in_layouts: need length >= 2, num_layouts >= 1 and "
                         f"walks_per_layout >= 1 (got {length}, {num_layouts}, {walks_per_layout}).")
    idx = np.arange(start_index, start_index + num_layouts, dtype=np.int32)
    parts = []
    for i in range(0, num_layouts, chunk):
        idx_L = idx[i:i + chunk]
        pad = chunk - len(idx_L)  # one compiled shape: pad the last chunk, then trim
        out = _generate_grouped(key, jnp.asarray(np.pad(idx_L, (0, pad), mode="edge")), cfg,
                                int(walks_per_layout), int(length))
        parts.append(jax.tree.map(lambda a: np.asarray(a)[:len(idx_L)], out))
    return jax.tree.map(lambda *p: np.concatenate(p), *parts)


# ----------------------------------------------------------------------------- writing

def _key_to_list(key: jax.Array) -> list[int]:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).ravel().tolist()


def write_dataset(path: str | os.PathLike, key: jax.Array, cfg: WalksConfig,
                  num_trajectories: int, length: int, shard_size: int = 1000,
                  gen_batch: int = 256, overwrite: bool = False,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Generate ``num_trajectories`` walks in chunks and write them as .npz shards.

    At most one shard lives in host memory and ``gen_batch`` trajectories on device.
    ``progress(n)`` is called after every ``n`` new trajectories. ``meta.json`` is written
    last, so its presence marks a complete dataset. Returns the metadata.
    """
    for name, v in (("num_trajectories", num_trajectories), ("shard_size", shard_size),
                    ("gen_batch", gen_batch)):
        if int(v) < 1:
            raise ValueError(f"write_dataset: {name} must be >= 1 (got {v}).")
    if length < 2:
        raise ValueError(f"write_dataset: length must be >= 2 (got {length}).")
    root = pathlib.Path(path)
    if (root / "meta.json").exists() and not overwrite:
        raise FileExistsError(f"{root}/meta.json exists; pass overwrite=True or pick a new path.")
    root.mkdir(parents=True, exist_ok=True)
    gen_batch = min(gen_batch, shard_size)

    shards = []
    for shard_idx, start in enumerate(range(0, num_trajectories, shard_size)):
        n = min(shard_size, num_trajectories - start)
        chunks = []
        for chunk_start in range(start, start + n, gen_batch):
            m = min(gen_batch, start + n - chunk_start)
            # Always generate gen_batch trajectories so the jitted function compiles once.
            out = jax.device_get(generate_walks(key, cfg, gen_batch, length, chunk_start))
            chunks.append({k: v[:m] for k, v in out.items()})
            if progress is not None:
                progress(m)
        arrays = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        del chunks
        name = f"shard_{shard_idx:05d}.npz"
        tmp = root / (name + ".tmp")
        with open(tmp, "wb") as f:  # np.savez stores uncompressed, which lets us mmap it
            np.savez(f, **arrays)
        os.replace(tmp, root / name)
        shards.append({"file": name, "num_trajectories": n})
        del arrays

    env = cfg.env
    meta = {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "key_data": _key_to_list(key),
        "num_trajectories": num_trajectories,
        "length": length,
        "num_transitions": num_trajectories * (length - 1),
        "shard_size": shard_size,
        "shards": shards,
        "shapes": {"obs": [length, env.size, env.size, 2], "act": [length - 1, 2],
                   "state": [length, 2], "layout": [2], "steered": [], "pushed": []},
        "dtypes": {"obs": cfg.obs_dtype, "act": "float32", "state": "float32",
                   "layout": "float32", "steered": "bool", "pushed": "bool"},
        "obs_scale": 1.0 / 255.0 if cfg.obs_dtype == "uint8" else 1.0,
        "act_semantics": ("commanded action passed to step (never norm-clipped), "
                          "before wall stopping"),
    }
    tmp = root / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, root / "meta.json")
    return meta


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    meta_path = pathlib.Path(path) / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: write the dataset with write_dataset "
                                "(or scripts/make_two_rooms_data.py) first.")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}.")
    return meta


# ----------------------------------------------------------------------------- reading

def _mmap_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Memory-map every member of an uncompressed .npz (np.load ignores mmap_mode for npz)."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:  # compressed: load eagerly instead
                out[name] = np.load(zf.open(info))
                continue
            f.seek(info.header_offset)
            local = f.read(30)  # local file header; name/extra lengths live at bytes 26..29
            n_name = int.from_bytes(local[26:28], "little")
            n_extra = int.from_bytes(local[28:30], "little")
            f.seek(info.header_offset + 30 + n_name + n_extra)
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape,
                                  order="F" if fortran else "C")
    return out


class TwoRoomsWindowSource:
    """Random-access source of windows of ``window`` consecutive frames (grain protocol).

    Item ``i`` -> trajectory ``i // w``, start frame ``(i % w) * stride`` with
    ``w = (length - window) // stride + 1`` windows per trajectory (deterministic). Returns a
    dict: ``obs`` (window, H, W, 2) stored dtype (uint8: divide by 255), ``act`` (window-1, 2),
    ``state`` (window, 2), ``layout`` (2,), ``steered`` (), ``pushed`` () (False for datasets
    written before wall pushes existed). Shards are memory-mapped lazily per process; the
    source pickles without them, so grain workers reopen their own.
    """

    def __init__(self, path: str | os.PathLike, window: int, stride: int = 1):
        self._root = pathlib.Path(path)
        self.meta = read_meta(self._root)
        self.length = int(self.meta["length"])
        if not 2 <= window <= self.length:
            raise ValueError(f"TwoRoomsWindowSource: window must be in [2, length={self.length}] "
                             f"(got {window}).")
        if stride < 1:
            raise ValueError(f"TwoRoomsWindowSource: stride must be >= 1 (got {stride}).")
        self.window, self.stride = int(window), int(stride)
        self.windows_per_traj = (self.length - self.window) // self.stride + 1
        counts = [int(s["num_trajectories"]) for s in self.meta["shards"]]
        self._shard_starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
        self.num_trajectories = self._shard_starts[-1]
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.num_trajectories * self.windows_per_traj

    def locate(self, index: int) -> tuple[int, int]:
        """(trajectory, start frame) of item ``index``."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range [0, {len(self)})")
        traj, k = divmod(index, self.windows_per_traj)
        return traj, k * self.stride

    def _shard(self, shard_idx: int) -> dict[str, np.ndarray]:
        if shard_idx not in self._cache:
            file = self._root / self.meta["shards"][shard_idx]["file"]
            self._cache[shard_idx] = _mmap_npz(file)
        return self._cache[shard_idx]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        traj, t0 = self.locate(index)
        shard_idx = bisect.bisect_right(self._shard_starts, traj) - 1
        row = traj - self._shard_starts[shard_idx]
        a = self._shard(shard_idx)
        t1 = t0 + self.window
        return {  # np.array copies out of the memmap so items own their memory
            "obs": np.array(a["obs"][row, t0:t1]),
            "act": np.array(a["act"][row, t0:t1 - 1]),
            "state": np.array(a["state"][row, t0:t1]),
            "layout": np.array(a["layout"][row]),
            "steered": np.array(a["steered"][row]),
            "pushed": np.array(a["pushed"][row]) if "pushed" in a else np.array(False),
        }

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}  # memmaps would pickle as full copies
        return state

    def __repr__(self) -> str:
        return (f"TwoRoomsWindowSource({str(self._root)!r}, window={self.window}, "
                f"stride={self.stride}, len={len(self)})")
