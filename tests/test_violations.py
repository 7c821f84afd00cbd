"""Violation-of-expectation benchmark: twins share their prefix, and each type breaks its
principle on the generator's ground-truth state."""

import dataclasses

import numpy as np
import pytest

from jepa_jax.data import physics as ph
from jepa_jax.data import violations as voe
from jepa_jax.data.sources import PhysicsVideoSource

CFG = dataclasses.replace(ph.PhysicsConfig(), num_frames=24)
VCFG = voe.ViolationConfig()
PAIRS_PER_TYPE = 6


@pytest.fixture(scope="module")
def pairs():
  source = voe.ViolationSource(CFG, PAIRS_PER_TYPE, seed=0, vcfg=VCFG)
  return [source[i] for i in range(len(source))]


def _of(pairs, kind):
  out = [p for p in pairs if p["type"] == kind]
  assert len(out) == PAIRS_PER_TYPE
  return out


def _ball_state(p, twin, key):
  return p["state"][key][twin][:, p["ball"]]   # twin 0 = possible, 1 = impossible


def test_twins_share_prefix_exactly_and_differ_after(pairs):
  for p in pairs:
    t_v = p["t_violation"]
    assert VCFG.min_prefix <= t_v <= CFG.num_frames - VCFG.min_suffix
    np.testing.assert_array_equal(p["possible"][:t_v], p["impossible"][:t_v])
    assert (p["possible"][t_v] != p["impossible"][t_v]).any()
    changed = voe.changed_pixels_T(p["possible"][t_v:t_v + VCFG.min_suffix],
                                   p["impossible"][t_v:t_v + VCFG.min_suffix],
                                   VCFG.pixel_threshold).sum()
    assert changed >= VCFG.min_changed_pixels, (p["type"], changed)
    # Ground truth agrees before t_v too (a ball hidden behind an occluder may be flagged
    # invisible earlier: that is the point of vanish_behind_occluder).
    keys = ["pos", "radius", "color"] + ["visible"] * (p["variant"] != "vanish_behind_occluder")
    for key in keys:
      np.testing.assert_array_equal(p["state"][key][0][:t_v], p["state"][key][1][:t_v])


def test_deterministic_per_index_and_disjoint_from_training():
  a = voe.ViolationSource(CFG, 2, seed=0)
  b = voe.ViolationSource(CFG, 2, seed=0)
  c = voe.ViolationSource(CFG, 2, seed=1)
  for i in (0, 3):
    np.testing.assert_array_equal(a[i]["impossible"], b[i]["impossible"])
    assert a[i]["t_violation"] == b[i]["t_violation"]
    assert not np.array_equal(a[i]["possible"], c[i]["possible"])
  train = PhysicsVideoSource(CFG, 10, seed=0, split="train")
  first_frames = {train[i]["frames"][0].tobytes() for i in range(10)}
  assert all(a[i]["possible"][0].tobytes() not in first_frames for i in range(len(a)))


def test_types_cycle_and_bad_arguments_raise():
  source = voe.ViolationSource(CFG, 1)
  assert [source[i]["type"] for i in range(len(source))] == list(voe.TYPES)
  with pytest.raises(ValueError, match="unknown violation type"):
    voe.ViolationSource(CFG, 1, types=("levitation",))
  with pytest.raises(ValueError, match="cannot hold"):
    voe.make_pair(np.random.default_rng(0), dataclasses.replace(CFG, num_frames=10), "gravity")
  with pytest.raises(IndexError):
    source[len(source)]


def test_permanence_visibility_changes_while_not_hidden(pairs):
  for p in _of(pairs, "permanence"):
    t_v, b = p["t_violation"], p["ball"]
    vis_pos, vis_imp = _ball_state(p, 0, "visible"), _ball_state(p, 1, "visible")
    assert vis_pos[t_v] != vis_imp[t_v]
    # Constant in the possible twin (always shown, or never: "appear"); flips once in the other.
    assert len(set(vis_pos.tolist())) == 1
    assert np.count_nonzero(np.diff(vis_imp.astype(int))) == 1
    pos, radius = p["state"]["pos"][0][:, [b]], p["state"]["radius"][0][:, [b]]
    assert not voe.hidden_TN(pos[t_v:t_v + 1], radius[t_v:t_v + 1], p["occluders"])[0, 0]
    if p["variant"] != "vanish_behind_occluder":
      assert not voe.occluded_TN(pos[t_v:t_v + 1], radius[t_v:t_v + 1], p["occluders"])[0, 0]


def test_continuity_jump_exceeds_every_possible_motion(pairs):
  for p in _of(pairs, "continuity"):
    t_v = p["t_violation"]
    max_step = np.linalg.norm(np.diff(p["state"]["pos"][0], axis=0), axis=-1).max()
    pos_imp = _ball_state(p, 1, "pos")
    jump = np.linalg.norm(pos_imp[t_v] - pos_imp[t_v - 1])
    assert jump > 2 * max_step and jump >= VCFG.min_jump


def test_constancy_property_changes_in_view(pairs):
  for p in _of(pairs, "constancy"):
    t_v, b = p["t_violation"], p["ball"]
    key = "color" if p["variant"] == "colour" else "radius"
    before, after = _ball_state(p, 1, key)[t_v - 1], _ball_state(p, 1, key)[t_v]
    assert np.abs(np.asarray(after) - before).max() > (0.39 if key == "color" else 1.0)
    assert np.ptp(_ball_state(p, 0, key), axis=0).max() == 0      # constant in the possible
    assert _ball_state(p, 1, "visible")[t_v]
    occ = voe.occluded_TN(p["state"]["pos"][1][t_v:t_v + 1], p["state"]["radius"][1][t_v:t_v + 1],
                          p["occluders"])
    assert not occ[0, b]


def test_gravity_vertical_acceleration_flips_sign(pairs):
  for p in _of(pairs, "gravity"):
    t_v = p["t_violation"]
    acc = {}
    for twin in (0, 1):
      y = _ball_state(p, twin, "pos")[:, 1]
      acc[twin] = y[t_v + 1:t_v + 3] - 2 * y[t_v:t_v + 2] + y[t_v - 1:t_v + 1]   # a_y at t_v..+1
    np.testing.assert_allclose(acc[0], CFG.gravity, atol=1e-3)    # free fall, y is downwards
    if p["variant"] == "upward":
      np.testing.assert_allclose(acc[1][1:], -CFG.gravity, atol=1e-3)
      assert (acc[1] < 0).all()
    else:
      np.testing.assert_allclose(acc[1][1:], 0.0, atol=1e-3)
      assert (acc[1] <= 1e-3).all()


def test_solidity_ball_inside_the_floor(pairs):
  floor_y = CFG.size - CFG.floor_height
  for p in _of(pairs, "solidity"):
    t_v = p["t_violation"]
    bottom = {t: _ball_state(p, t, "pos")[:, 1] + _ball_state(p, t, "radius") for t in (0, 1)}
    assert (bottom[0] <= floor_y + 1e-3).all()       # the possible ball never enters the floor
    assert (bottom[1][t_v:] > floor_y + 1).any()     # the impossible one does, from t_v on
    assert (bottom[1][:t_v] <= floor_y + 1e-3).all()


def test_simulate_state_defaults_match_simulate():
  scene = ph.sample_scene(np.random.default_rng(3), CFG)
  pos, vel = ph.simulate(scene, CFG)
  pos2, vel2 = ph.simulate_state(scene.pos0_N2, scene.vel0_N2, scene.radius_N, CFG,
                                 CFG.num_frames, gravity_N=np.full(CFG.num_balls, CFG.gravity),
                                 solid_N=np.ones(CFG.num_balls, bool))
  np.testing.assert_array_equal(pos, pos2)
  np.testing.assert_array_equal(vel, vel2)


def test_make_benchmark_stacks():
  bench = voe.make_benchmark(voe.ViolationSource(CFG, 1))
  assert bench["possible"].shape == (5, CFG.num_frames, CFG.size, CFG.size, 3)
  assert bench["possible"].dtype == np.uint8
  assert bench["type"] == list(voe.TYPES) and bench["t_violation"].shape == (5,)
