"""Procedural physics (invariants, rendering, determinism) and the grain pretraining pipeline."""

import dataclasses

import numpy as np
import pytest

from jepa_jax.data import physics as ph
from jepa_jax.data.pipeline import pretrain_dataset
from jepa_jax.data.sources import PhysicsImageSource, PhysicsVideoSource, materialize
from jepa_jax.masks import MaskSpec, MultiBlockMasker

DEFAULT = ph.PhysicsConfig(num_frames=30)
SMALL = ph.PhysicsConfig(num_frames=4, size=32, radius=(2.0, 4.0), floor_height=3,
                         occluder_width=(3, 6))   # the debug preset's data


def _scene(pos, vel, radius, occluders=np.zeros((0, 4), np.int32)):
  n = len(radius)
  return ph.Scene(
      pos0_N2=np.array(pos, np.float64), vel0_N2=np.array(vel, np.float64),
      radius_N=np.array(radius, np.float64), color_N3=np.tile([[0.9, 0.5, 0.4]], (n, 1)),
      background_3=np.array([0.05, 0.1, 0.0]), floor_3=np.array([0.5, 0.5, 0.5]),
      occluders_M4=np.asarray(occluders, np.int32).reshape(-1, 4),
      occluder_color_M3=np.full((len(occluders), 3), 0.3))


# --- Physics --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [DEFAULT, SMALL], ids=["default", "debug"])
def test_balls_stay_inside_walls_and_above_floor(cfg):
  for i in range(40):
    scene = ph.sample_scene(np.random.default_rng(i), cfg)
    pos_TN2, _ = ph.simulate(scene, cfg)
    r_N = scene.radius_N.astype(np.float32)
    tol = 1e-4  # float32 storage of float64 positions
    assert np.all(pos_TN2 >= r_N[None, :, None] - tol), i
    assert np.all(pos_TN2[..., 0] <= cfg.size - r_N - (-tol)), i
    assert np.all(pos_TN2[..., 1] <= cfg.size - cfg.floor_height - r_N + tol), i


def test_gravity_in_free_flight():
  cfg = dataclasses.replace(DEFAULT, num_frames=6, gravity=0.35, substeps=4)
  scene = _scene(pos=[[32.0, 10.0]], vel=[[0.5, -1.0]], radius=[3.0])
  pos, vel = ph.simulate(scene, cfg)
  # No collision: vy grows by exactly `gravity` per frame, vx is constant.
  np.testing.assert_allclose(np.diff(vel[:, 0, 1]), 0.35, rtol=1e-5)
  np.testing.assert_allclose(vel[:, 0, 0], 0.5)
  # Semi-implicit Euler with S substeps: dy = vy_start + g (S + 1) / (2 S) per frame.
  dy_expected = vel[:-1, 0, 1] + 0.35 * 5 / 8
  np.testing.assert_allclose(np.diff(pos[:, 0, 1]), dy_expected, rtol=1e-5)
  np.testing.assert_allclose(np.diff(pos[:, 0, 0]), 0.5, rtol=1e-5)


def test_wall_bounce_loses_energy_without_gravity():
  cfg = dataclasses.replace(DEFAULT, num_frames=16, gravity=0.0, restitution=0.85)
  scene = _scene(pos=[[50.0, 30.0]], vel=[[3.0, 0.0]], radius=[4.0])
  _, vel = ph.simulate(scene, cfg)
  speed = np.linalg.norm(vel[:, 0], axis=-1)
  assert np.all(np.diff(speed) <= 1e-6)                   # never speeds up
  assert vel[0, 0, 0] > 0 and vel[-1, 0, 0] < 0           # it did bounce off the right wall
  np.testing.assert_allclose(speed[-1], 0.85 * 3.0, rtol=1e-6)


def test_ball_collision_is_elastic():
  cfg = dataclasses.replace(DEFAULT, num_frames=16, gravity=0.0, restitution=1.0)
  scene = _scene(pos=[[20.0, 30.0], [44.0, 30.5]], vel=[[2.0, 0.0], [-2.0, 0.0]],
                 radius=[5.0, 3.0])
  _, vel = ph.simulate(scene, cfg)
  mass = scene.radius_N**2
  energy = (mass[None] * (vel**2).sum(-1)).sum(-1)
  np.testing.assert_allclose(energy, energy[0], rtol=1e-5)
  assert np.any(vel[:, 1, 0] > 0)  # the light ball was sent back: they did collide


def test_render_ball_colour_at_centre_and_occluder_on_top():
  cfg = dataclasses.replace(DEFAULT, num_frames=3)
  scene = _scene(pos=[[20.3, 15.7]], vel=[[1.0, 0.0]], radius=[4.0])
  pos, _ = ph.simulate(scene, cfg)
  frames = ph.render(scene, cfg, pos)
  assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8
  to_u8 = lambda c: (np.asarray(c) * 255 + 0.5).astype(np.uint8)
  for t in range(3):
    x, y = pos[t, 0]
    np.testing.assert_array_equal(frames[t, int(y), int(x)], to_u8(scene.color_N3[0]))
  np.testing.assert_array_equal(frames[0, 60, 5], to_u8(scene.floor_3))      # floor rows
  np.testing.assert_array_equal(frames[0, 50, 60], to_u8(scene.background_3))
  # An occluder in front hides the ball.
  occluded = _scene(pos=[[20.3, 15.7]], vel=[[1.0, 0.0]], radius=[4.0],
                    occluders=[[10, 0, 40, 58]])
  frames = ph.render(occluded, cfg, pos)
  np.testing.assert_array_equal(frames[0, 15, 20], to_u8([0.3, 0.3, 0.3]))


def test_validate_rejects_impossible_configs():
  with pytest.raises(ValueError, match="num_balls"):
    ph.PhysicsConfig(num_balls=0).validate()
  with pytest.raises(ValueError, match="too large"):
    ph.PhysicsConfig(num_balls=6, radius=(5.0, 6.0)).validate()


# --- Sources --------------------------------------------------------------------------------------

def _assert_same(a: dict, b: dict):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_source_deterministic_per_seed_split_index():
  src = PhysicsVideoSource(SMALL, 100, seed=0, split="train")
  v = src[7]
  assert v["frames"].shape == (4, 32, 32, 3) and v["frames"].dtype == np.uint8
  assert v["pos"].shape == (4, 2, 2) and v["radius"].shape == (2,)
  _assert_same(v, src[7])
  _assert_same(v, PhysicsVideoSource(SMALL, 100, seed=0, split="train")[7])  # a new object
  differ = lambda w: not np.array_equal(v["pos"], w["pos"])
  assert differ(src[8])
  assert differ(PhysicsVideoSource(SMALL, 100, seed=1, split="train")[7])
  assert differ(PhysicsVideoSource(SMALL, 100, seed=0, split="eval")[7])
  assert differ(PhysicsVideoSource(SMALL, 100, seed=0, split="probe_test")[7])
  with pytest.raises(ValueError, match="unknown split"):
    PhysicsVideoSource(SMALL, 100, split="validation")


def test_image_source_is_a_frame_of_the_video():
  video = PhysicsVideoSource(SMALL, 10, seed=0)[3]
  image = PhysicsImageSource(SMALL, 10, seed=0)[3]
  assert image["frames"].shape == (32, 32, 3)
  t = [i for i in range(4) if np.array_equal(video["frames"][i], image["frames"])]
  assert t and np.array_equal(image["pos"], video["pos"][t[0]])


def test_materialize_stacks():
  src = PhysicsVideoSource(SMALL, 10, seed=0)
  out = materialize(src, 3, start=2)
  assert out["frames"].shape == (3, 4, 32, 32, 3)
  np.testing.assert_array_equal(out["frames"][1], src[3]["frames"])


# --- grain pipeline -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def maskers():
  return [MultiBlockMasker((2, 4, 4), MaskSpec(num_blocks=2, spatial_scale=(0.15, 0.3)))]


def _dataset(maskers, seed=0, batch_size=4, process_index=0, process_count=1):
  return pretrain_dataset(PhysicsVideoSource(SMALL, 64, seed=0), maskers, batch_size, seed,
                          process_index, process_count, num_threads=1, prefetch=2)


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
  np.testing.assert_array_equal(a["frames"], b["frames"])
  for ma, mb in zip(a["masks"], b["masks"], strict=True):
    np.testing.assert_array_equal(ma["ctx"], mb["ctx"])
    np.testing.assert_array_equal(ma["tgt"], mb["tgt"])


def test_batches_have_static_shapes(maskers):
  m = maskers[0]
  for batch in _take(iter(_dataset(maskers)), 3):
    assert batch["frames"].shape == (4, 4, 32, 32, 3) and batch["frames"].dtype == np.uint8
    assert batch["masks"][0]["ctx"].shape == (4, m.n_ctx)
    assert batch["masks"][0]["tgt"].shape == (4, m.n_tgt)
    # Each element has its own mask.
    assert len({row.tobytes() for row in batch["masks"][0]["tgt"]}) > 1


def test_same_seed_same_batches_and_seed_matters(maskers):
  a = _take(iter(_dataset(maskers)), 3)
  b = _take(iter(_dataset(maskers)), 3)
  for x, y in zip(a, b):
    _assert_batches_equal(x, y)
  c = next(iter(_dataset(maskers, seed=1)))
  assert not np.array_equal(a[0]["frames"], c["frames"])


def test_iterator_state_resumes_to_the_same_next_batch(maskers):
  ds = _dataset(maskers)
  it = iter(ds)
  _take(it, 2)
  state = it.get_state()
  expected = _take(it, 2)
  fresh = iter(_dataset(maskers))
  fresh.set_state(state)
  for x, y in zip(expected, _take(fresh, 2)):
    _assert_batches_equal(x, y)
  # Without the state a fresh iterator starts over (so the check above is not vacuous).
  assert not np.array_equal(next(iter(ds))["frames"], expected[0]["frames"])


def test_process_shards_are_disjoint(maskers):
  shards = [next(iter(_dataset(maskers, batch_size=8, process_index=i, process_count=2)))
            for i in range(2)]
  videos = [{f.tobytes() for f in s["frames"]} for s in shards]
  assert all(s["frames"].shape[0] == 4 for s in shards)   # batch_size // process_count
  assert len(videos[0]) == len(videos[1]) == 4
  assert not videos[0] & videos[1]
  with pytest.raises(ValueError, match="not divisible"):
    _dataset(maskers, batch_size=5, process_count=2)
