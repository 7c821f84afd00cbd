"""Two Rooms environment: geometry, dynamics invariants (randomised, vmapped), rendering."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.envs import two_rooms

CFG = two_rooms.TwoRoomsConfig()  # fixed layout: wall columns 30..32, door rows 28..35
CFG_RANDOM = two_rooms.TwoRoomsConfig(fixed_layout=False)
N_STATES = 10_000
TOL = 1e-4

# Jitted batch helpers: eager vmap dispatches op by op and is slow on a shared CPU.
reset_batch = jax.jit(jax.vmap(two_rooms.reset, (0, None)), static_argnums=1)
step_batch = jax.jit(jax.vmap(two_rooms.step, (0, 0, None)), static_argnums=2)
move_batch = jax.jit(jax.vmap(two_rooms.move, (0, 0, 0, None)), static_argnums=3)


def np_wall_mask(layout, cfg):
    """Independent integer-index reference of the wall pixels."""
    s, b, w, h = cfg.size, cfg.border, cfg.wall_width, cfg.door_half_height
    col0 = int(round(float(layout[0]) - w / 2))
    door_y = int(round(float(layout[1])))
    m = np.zeros((s, s), np.float32)
    m[:b], m[s - b:], m[:, :b], m[:, s - b:] = 1, 1, 1, 1
    rows = np.arange(s)
    blocked = (rows < door_y - h) | (rows >= door_y + h)
    m[np.ix_(blocked, np.arange(col0, col0 + w))] = 1
    return m


def np_in_wall(pos, layout, cfg):
    x, y = pos[..., 0], pos[..., 1]
    lo, hi = cfg.border, cfg.size - cfg.border
    wl, wr = layout[..., 0] - cfg.wall_width / 2, layout[..., 0] + cfg.wall_width / 2
    dlo, dhi = layout[..., 1] - cfg.door_half_height, layout[..., 1] + cfg.door_half_height
    slab = (x > wl + TOL) & (x < wr - TOL) & ((y < dlo - TOL) | (y > dhi + TOL))
    return (x < lo - TOL) | (x > hi + TOL) | (y < lo - TOL) | (y > hi + TOL) | slab


@functools.partial(jax.jit, static_argnames=("n", "cfg", "max_norm", "steps"))
def random_rollout(key, n, cfg, max_norm, steps):
    """Random resets + `steps` random steps; returns pos (steps+1, n, 2), act, layout."""
    k_reset, k_act = jax.random.split(key)
    states = jax.vmap(two_rooms.reset, (0, None))(jax.random.split(k_reset, n), cfg)
    # Mix small and large actions so many agents end up resting on wall faces and corners.
    u = jax.random.uniform(k_act, (steps, n, 3))
    norm = max_norm * u[..., 0] ** 2
    act = norm[..., None] * jnp.stack([jnp.cos(2 * jnp.pi * u[..., 1]),
                                       jnp.sin(2 * jnp.pi * u[..., 1])], -1)

    def body(s, a):
        s = jax.vmap(two_rooms.step, (0, 0, None))(s, a, cfg)
        return s, s.pos

    _, pos = jax.lax.scan(body, states, act)
    return jnp.concatenate([states.pos[None], pos]), act, states.layout


@pytest.fixture(scope="module")
def rollout():
    pos, act, layout = jax.device_get(random_rollout(jax.random.key(0), N_STATES, CFG_RANDOM,
                                                     6.0, 4))
    return pos, act, layout


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("kwargs, key", [
    (dict(wall_padding=40), "wall_padding"),
    (dict(door_padding=30), "door_padding"),
    (dict(max_action_norm=0.0), "max_action_norm"),
    (dict(border=2.5), "border"),
    (dict(dot_sigma=-1.0), "dot_sigma"),
])
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"TwoRoomsConfig.{key}"):
        two_rooms.TwoRoomsConfig(**kwargs)


# ----------------------------------------------------------------------------- layout

def test_fixed_layout_values():
    np.testing.assert_array_equal(two_rooms.fixed_layout(CFG), [31.5, 32.0])  # cols 30..32
    cfg65 = two_rooms.TwoRoomsConfig(size=65)
    np.testing.assert_array_equal(two_rooms.fixed_layout(cfg65), [32.5, 32.0])  # centred
    np.testing.assert_array_equal(two_rooms.sample_layout(jax.random.key(3), CFG), [31.5, 32.0])


def test_random_layouts_cover_documented_ranges():
    layout = jax.jit(jax.vmap(two_rooms.sample_layout, (0, None)), static_argnums=1)(
        jax.random.split(jax.random.key(1), 4000), CFG_RANDOM)
    col0 = np.asarray(layout[:, 0]) - 1.5
    door_y = np.asarray(layout[:, 1])
    np.testing.assert_array_equal(col0, np.round(col0))  # pixel-aligned
    assert col0.min() == 20 and col0.max() == 64 - 20 - 3
    assert door_y.min() == 5 + 10 + 4 and door_y.max() == 64 - 5 - 10 - 4
    assert len(np.unique(col0)) == 22 and len(np.unique(door_y)) == 27


# ----------------------------------------------------------------------------- reset

def test_reset_is_free_and_uniform():
    s = reset_batch(jax.random.split(jax.random.key(2), N_STATES), CFG_RANDOM)
    assert not np.any(np.asarray(two_rooms.in_wall(s.pos, s.layout, CFG_RANDOM)))
    # Uniform over free space: the left-room share matches its share of the free area.
    wl = np.asarray(s.layout[:, 0]) - 1.5
    wr = wl + 3
    left = (wl - 5) * 54
    total = left + (59 - wr) * 54 + 3 * 8
    in_left = np.asarray(s.pos[:, 0]) <= wl
    assert abs(in_left.mean() - (left / total).mean()) < 0.02
    assert np.any(np.asarray(two_rooms.in_door(s.pos, s.layout, CFG_RANDOM)))


def test_reset_in_room():
    rooms = jnp.arange(2000) % 2  # traced and vmapped: one compile covers both rooms
    keys = jax.random.split(jax.random.key(4), 2000)
    s = jax.jit(jax.vmap(two_rooms.reset_in_room, (0, None, 0)), static_argnums=1)(
        keys, CFG_RANDOM, rooms)
    assert not np.any(np.asarray(two_rooms.in_wall(s.pos, s.layout, CFG_RANDOM)))
    np.testing.assert_array_equal(two_rooms.room_of(s.pos, s.layout), rooms)
    assert not np.any(np.asarray(two_rooms.in_door(s.pos, s.layout, CFG_RANDOM)))
    assert len(np.unique(np.asarray(s.layout[:, 0]))) > 10  # random layouts


# ----------------------------------------------------------------------------- dynamics

def test_never_inside_a_wall_after_any_step(rollout):
    pos, _, layout = rollout
    assert not np.any(np.asarray(two_rooms.in_wall(pos, layout[None], CFG_RANDOM)))
    assert not np.any(np_in_wall(pos, layout[None], CFG_RANDOM))
    # Non-vacuous: plenty of agents rest exactly on a wall face.
    wl = layout[:, 0] - 1.5
    on_face = (np.abs(pos[-1, :, 0] - wl) < TOL) | (np.abs(pos[-1, :, 0] - 5) < TOL)
    assert on_face.mean() > 0.02


def test_door_is_the_only_passage(rollout):
    """Every step whose segment overlaps the wall slab does so inside the door gap."""
    pos, _, layout = rollout
    p, q = pos[:-1].reshape(-1, 2), pos[1:].reshape(-1, 2)
    lay = np.broadcast_to(layout[None], (pos.shape[0] - 1,) + layout.shape).reshape(-1, 2)
    wl, wr = lay[:, 0] - 1.5, lay[:, 0] + 1.5
    dlo, dhi = lay[:, 1] - 4, lay[:, 1] + 4
    x_min, x_max = np.minimum(p[:, 0], q[:, 0]), np.maximum(p[:, 0], q[:, 0])
    through = (x_min < wr) & (x_max > wl)
    dx = q[:, 0] - p[:, 0]
    safe_dx = np.where(np.abs(dx) > 1e-9, dx, 1.0)

    def y_at(x):  # y on the segment at x (vertical moves: their own y endpoints)
        t = np.clip((x - p[:, 0]) / safe_dx, 0, 1)
        return np.where(np.abs(dx) > 1e-9, p[:, 1] + t * (q[:, 1] - p[:, 1]), np.nan)

    ya = np.where(np.abs(dx) > 1e-9, y_at(np.clip(wl, x_min, x_max)), p[:, 1])
    yb = np.where(np.abs(dx) > 1e-9, y_at(np.clip(wr, x_min, x_max)), q[:, 1])
    in_gap = lambda y: (y >= dlo - TOL) & (y <= dhi + TOL)
    assert np.all((in_gap(ya) & in_gap(yb))[through])
    room_changed = (p[:, 0] >= lay[:, 0]) != (q[:, 0] >= lay[:, 0])
    assert np.all(through[room_changed])
    assert room_changed.sum() > 50  # non-vacuous: the sample contains crossings


def test_action_norm_clipping():
    a = jax.random.normal(jax.random.key(6), (N_STATES, 2)) * 3.0
    clipped = np.asarray(two_rooms.clip_action(a, CFG.max_action_norm))
    norm, norm_c = np.linalg.norm(np.asarray(a), axis=-1), np.linalg.norm(clipped, axis=-1)
    np.testing.assert_allclose(norm_c, np.minimum(norm, 2.45), rtol=1e-5)
    cos = np.sum(clipped * np.asarray(a), -1) / (norm * norm_c + 1e-12)
    np.testing.assert_allclose(cos[norm > 1e-3], 1.0, atol=1e-5)
    # Through `step`, far from walls: the displacement is the clipped action.
    start = two_rooms.EnvState(jnp.array([17.5, 32.0]), two_rooms.fixed_layout(CFG))
    starts = jax.tree.map(lambda x: jnp.broadcast_to(x, (N_STATES,) + x.shape), start)
    nxt = step_batch(starts, a, CFG)
    np.testing.assert_allclose(np.asarray(nxt.pos) - [17.5, 32.0], clipped, atol=1e-5)
    np.testing.assert_array_equal(two_rooms.clip_action(jnp.zeros(2), 2.45), [0.0, 0.0])


def test_no_tunnelling_with_huge_moves():
    """`move` without clipping, moves up to 200 px: stops at the first wall face."""
    k_state, k_act = jax.random.split(jax.random.key(7))
    s = reset_batch(jax.random.split(k_state, N_STATES), CFG_RANDOM)
    u = jax.random.uniform(k_act, (N_STATES, 2))
    delta = (200.0 * u[:, :1]) * jnp.stack([jnp.cos(6.3 * u[:, 1]), jnp.sin(6.3 * u[:, 1])], -1)
    new = move_batch(s.pos, delta, s.layout, CFG_RANDOM)
    p, d, q, lay = map(np.asarray, (s.pos, delta, new, s.layout))

    # 1. The travelled segment p -> q never enters a wall (dense samples, spacing < 0.2 px).
    ts = np.linspace(0.0, 1.0, 1024)[:, None, None]
    pts = p[None] + ts * (q - p)[None]
    assert not np.any(np_in_wall(pts, lay[None], CFG_RANDOM))
    # 2. q lies on the commanded segment, not beyond it.
    t = np.sum((q - p) * d, -1) / np.maximum(np.sum(d * d, -1), 1e-12)
    assert np.all((t > -TOL) & (t < 1 + TOL))
    np.testing.assert_allclose(q, p + t[:, None] * d, atol=1e-3)
    # 3. Stopped short only when touching a wall face (no stopping in mid-air).
    stopped = t < 1 - 1e-4
    x, y = q[:, 0], q[:, 1]
    wl, wr = lay[:, 0] - 1.5, lay[:, 0] + 1.5
    dlo, dhi = lay[:, 1] - 4, lay[:, 1] + 4
    near = lambda a, b: np.abs(a - b) < 1e-3
    on_border = near(x, 5) | near(x, 59) | near(y, 5) | near(y, 59)
    on_wall_side = (near(x, wl) | near(x, wr)) & ((y <= dlo + 1e-3) | (y >= dhi - 1e-3))
    on_door_edge = (near(y, dlo) | near(y, dhi)) & (x >= wl - 1e-3) & (x <= wr + 1e-3)
    assert np.all((on_border | on_wall_side | on_door_edge)[stopped])
    assert stopped.mean() > 0.5  # non-vacuous: most 200 px moves hit something
    # 4. contact_time agrees with the stop fraction.
    ct = jax.jit(jax.vmap(two_rooms.contact_time, (0, 0, 0, None)), static_argnums=3)(
        s.pos, delta, s.layout, CFG_RANDOM)
    np.testing.assert_allclose(np.asarray(ct), t, atol=1e-4)


def test_cannot_jump_the_wall_outside_the_door():
    layout = two_rooms.fixed_layout(CFG)
    start = jnp.array([29.0, 10.0])  # left of the wall, far above the door
    for delta in ([100.0, 0.0], [5.0, 0.0], [100.0, 0.5], [3.0, 3.0]):
        q = two_rooms.move(start, jnp.array(delta), layout, CFG)
        assert float(q[0]) == 30.0, (delta, q)  # stops on the wall's left face
    # Straight through the door from far away: reaches the right border.
    q = two_rooms.move(jnp.array([10.0, 32.0]), jnp.array([1000.0, 0.0]), layout, CFG)
    np.testing.assert_allclose(q, [59.0, 32.0])


GOLDEN = [  # (pos, action, expected next pos) on the fixed 64 px layout
    ([20.0, 20.0], [2.0, 0.0], [22.0, 20.0]),  # free move
    ([29.0, 20.0], [2.0, 0.0], [30.0, 20.0]),  # stops on the wall face
    ([29.0, 32.0], [2.0, 0.0], [31.0, 32.0]),  # into the door passage
    ([31.5, 35.0], [0.0, 2.0], [31.5, 36.0]),  # passage: stops on the door's lower edge
    ([6.0, 6.0], [-2.0, -2.0], [5.0, 5.0]),  # border corner
    ([20.0, 20.0], [10.0, 0.0], [22.45, 20.0]),  # norm clipped to 2.45
    ([58.0, 32.0], [2.0, 1.0], [59.0, 32.5]),  # right border at t = 0.5
    ([29.0, 26.0], [1.5, 1.5], [30.0, 27.0]),  # diagonal into the wall beside the door
    ([30.0, 20.0], [1.0, 0.5], [30.0, 20.0]),  # resting on a face, pushing in: no motion
    ([30.0, 20.0], [-1.0, 0.5], [29.0, 20.5]),  # resting on a face, moving away
]


class StepVariantsTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_golden_steps(self):
        pos, act, expected = (jnp.array([g[i] for g in GOLDEN]) for i in range(3))
        layout = jnp.broadcast_to(two_rooms.fixed_layout(CFG), pos.shape)
        step_fn = self.variant(jax.vmap(functools.partial(two_rooms.step, cfg=CFG)))
        out = step_fn(two_rooms.EnvState(pos, layout), act)
        chex.assert_trees_all_close(out.pos, expected, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_render_variants(self):
        render_fn = self.variant(functools.partial(two_rooms.render, cfg=CFG))
        obs = render_fn(two_rooms.EnvState(jnp.array([17.5, 40.5]), two_rooms.fixed_layout(CFG)))
        chex.assert_shape(obs, (64, 64, 2))
        chex.assert_type(obs, jnp.float32)
        self.assertEqual(float(obs[40, 17, 0]), 1.0)  # pos on pixel (40, 17)'s centre


def test_vmap_equals_python_loop():
    states = reset_batch(jax.random.split(jax.random.key(8), 4), CFG_RANDOM)
    act = jax.random.normal(jax.random.key(9), (4, 2)) * 4.0
    batched = step_batch(states, act, CFG_RANDOM)
    obs_batched = jax.jit(jax.vmap(two_rooms.render, (0, None)), static_argnums=1)(
        batched, CFG_RANDOM)
    step_one = jax.jit(two_rooms.step, static_argnums=2)
    render_one = jax.jit(two_rooms.render, static_argnums=1)
    for i in range(4):
        one = step_one(jax.tree.map(lambda x: x[i], states), act[i], CFG_RANDOM)
        chex.assert_trees_all_close(one, jax.tree.map(lambda x: x[i], batched), atol=1e-5)
        chex.assert_trees_all_close(render_one(one, CFG_RANDOM), obs_batched[i], atol=1e-5)


def test_jitted_step_traces_once():
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step_fn(state, action):
        return two_rooms.step(state, action, CFG)

    state = two_rooms.reset(jax.random.key(10), CFG)
    for i in range(5):
        state = step_fn(state, jnp.array([1.0 + i, -0.5], jnp.float32))
    assert not bool(two_rooms.in_wall(state.pos, state.layout, CFG))


# ----------------------------------------------------------------------------- render

def test_render_matches_state(rollout):
    pos, _, layout = rollout
    n = 1000
    pos_N2, layout_N2 = pos[-1, :n], layout[:n]
    obs = np.asarray(jax.jit(jax.vmap(two_rooms.render_pos, (0, 0, None)), static_argnums=2)(
        pos_N2, layout_N2, CFG_RANDOM))
    chex.assert_shape(obs, (n, 64, 64, 2))
    assert obs.min() >= 0.0 and obs.max() <= 1.0
    flat = obs[..., 0].reshape(n, -1).argmax(-1)
    row, col = np.divmod(flat, 64)
    centre = np.stack([col + 0.5, row + 0.5], -1)
    assert np.all(np.linalg.norm(centre - pos_N2, axis=-1) <= 1.0)
    assert np.all(obs[..., 0].max(axis=(1, 2)) > 0.85)  # peak 1 at pos, sigma 1.3
    for i in range(0, n, 50):  # a spread of random layouts
        np.testing.assert_array_equal(obs[i, ..., 1], np_wall_mask(layout_N2[i], CFG_RANDOM))


@pytest.mark.parametrize("size", [64, 65])
def test_wall_mask_fixed_layout(size):
    cfg = two_rooms.TwoRoomsConfig(size=size)
    layout = two_rooms.fixed_layout(cfg)
    mask = np.asarray(two_rooms.wall_mask(layout, cfg))
    np.testing.assert_array_equal(mask, np_wall_mask(np.asarray(layout), cfg))
    door_rows = np.where(mask[:, size // 2 - 1] == 0)[0]
    np.testing.assert_array_equal(door_rows, np.arange(28, 36))  # 8 rows = 2 * 4 px


def test_room_helpers():
    layout = two_rooms.fixed_layout(CFG)
    a, b, c = jnp.array([10.0, 10.0]), jnp.array([50.0, 50.0]), jnp.array([20.0, 50.0])
    assert int(two_rooms.room_of(a, layout)) == 0 and int(two_rooms.room_of(b, layout)) == 1
    assert not bool(two_rooms.same_room(a, b, layout))
    assert bool(two_rooms.same_room(a, c, layout))
    assert bool(two_rooms.in_door(jnp.array([31.0, 30.0]), layout, CFG))
    assert bool(two_rooms.in_wall(jnp.array([31.0, 20.0]), layout, CFG))
    assert not bool(two_rooms.in_wall(jnp.array([30.0, 20.0]), layout, CFG))  # face is free
