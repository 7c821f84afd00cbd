"""The pretraining probes (eval/probe.py): the linear token-map probe against a closed form, its
cross-validated strength, and both probe kinds reading a planted position."""

import numpy as np
import pytest

from jepa_jax.eval import physics_probe
from jepa_jax.eval.probe import fit_linear_probe, fit_probe, ridge_cv_lambda


def _planted(n, rng, tokens=16, width=8, background=0.0):
  """Token maps where one token (the object's cell) carries a marker: position = its cell.
  `background`: a fixed per-token code on every map (like a ViT's position embedding)."""
  cell = rng.integers(0, tokens, n)
  feat = rng.normal(0, 0.1, (n, tokens, width)).astype(np.float32)
  feat += background * np.random.default_rng(99).normal(size=(tokens, width)).astype(np.float32)
  feat[np.arange(n), cell, 0] += 3.0
  side = int(np.sqrt(tokens))
  pos = np.stack([cell % side, cell // side], 1).astype(np.float32) * 8 + 4
  return feat, {"position": pos}


def test_linear_probe_matches_closed_form_ridge():
  rng = np.random.default_rng(0)
  x_tr, x_te = rng.normal(size=(40, 3, 2)), rng.normal(size=(10, 3, 2))
  w = rng.normal(size=(6, 2))
  y_tr = {"y": x_tr.reshape(40, -1) @ w + 5.0}
  y_te = {"y": x_te.reshape(10, -1) @ w + 5.0}
  r = fit_linear_probe(x_tr, y_tr, x_te, y_te, rel_lambdas=(1e-3,), folds=2)
  # Primal ridge with intercept on standardised targets, same strength.
  xf, xt = x_tr.reshape(40, -1), x_te.reshape(10, -1)
  mu = xf.mean(0)
  lam = 1e-3 * np.mean(np.sum((xf - mu) ** 2, 1))
  sd = y_tr["y"].std(0) + 1e-6
  z = (y_tr["y"] - y_tr["y"].mean(0)) / sd
  beta = np.linalg.solve((xf - mu).T @ (xf - mu) + lam * np.eye(6), (xf - mu).T @ z)
  expect = (xt - mu) @ beta * sd + y_tr["y"].mean(0)
  np.testing.assert_allclose(r.predictions["y"][1], expect, rtol=1e-4, atol=1e-4)
  assert r.r2["y"] > 0.99


def test_cv_picks_small_lambda_for_clean_data_and_large_for_noise():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(60, 5))
  k = x @ x.T
  clean = (x @ rng.normal(size=(5, 1)))
  noise = rng.normal(size=(60, 1))
  rels = (1e-4, 1e-2, 1.0, 100.0)
  scale = np.mean(np.diag(k))
  assert ridge_cv_lambda(k, clean, rels, 5, 0) <= 1e-2 * scale
  assert ridge_cv_lambda(k, noise, rels, 5, 0) >= 1.0 * scale


def test_linear_probe_reads_a_planted_object_position():
  rng = np.random.default_rng(2)
  f_tr, y_tr = _planted(400, rng)
  f_te, y_te = _planted(100, rng)
  r = fit_linear_probe(f_tr, y_tr, f_te, y_te)
  assert r.r2["position"] > 0.95
  # Shuffled features carry nothing: R^2 near zero or below.
  r0 = fit_linear_probe(f_tr, y_tr, f_te[rng.permutation(100)], y_te)
  assert r0.r2["position"] < 0.2


def test_attentive_probe_runs_and_is_deterministic():
  rng = np.random.default_rng(3)
  f_tr, y_tr = _planted(64, rng)
  f_te, y_te = _planted(16, rng)
  kw = dict(steps=5, batch_size=16, lr=1e-3, num_heads=2, seed=0)
  a = fit_probe(f_tr, y_tr, f_te, y_te, **kw)
  b = fit_probe(f_tr, y_tr, f_te, y_te, **kw)
  np.testing.assert_array_equal(a.predictions["position"][1], b.predictions["position"][1])


def test_attentive_probe_finds_one_object_token_among_many():
  """The failure the earlier probe had: one object token among 64 under a strong constant
  per-token code. Standardisation + per-token scores + token coordinates must read it."""
  rng = np.random.default_rng(4)
  f_tr, y_tr = _planted(1500, rng, tokens=64, background=5.0)
  f_te, y_te = _planted(200, rng, tokens=64, background=5.0)
  r = fit_probe(f_tr, y_tr, f_te, y_te, steps=300, batch_size=64, lr=1e-2, num_heads=4,
                hidden=32, grid=(8, 8))
  assert r.r2["position"] > 0.9, r.r2
  # Without the object marker the probe has nothing to read.
  f_none = f_te.copy()
  f_none[..., 0] = f_tr[..., 0].mean(0)
  r0 = fit_probe(f_tr, y_tr, f_none, y_te, steps=300, batch_size=64, lr=1e-2, num_heads=4,
                 hidden=32, grid=(8, 8))
  assert r0.r2["position"] < 0.3, r0.r2


def _moving(n, rng, side=4):
  """Two time slices of a side x side grid; the same marker sits at cell c0 in slice 0 and c1
  in slice 1: the target is the motion c1 - c0 (px), which needs to know *when* each token is."""
  tokens = side * side
  c0, c1 = rng.integers(0, tokens, n), rng.integers(0, tokens, n)
  feat = rng.normal(0, 0.1, (n, 2 * tokens, 8)).astype(np.float32)
  feat[np.arange(n), c0, 0] += 3.0
  feat[np.arange(n), tokens + c1, 0] += 3.0
  xy = lambda c: np.stack([c % side, c // side], 1).astype(np.float32) * 8
  return feat, {"velocity": xy(c1) - xy(c0)}


def test_score_coords_let_heads_choose_tokens_by_time():
  """Without coordinates in the scores both markers score alike, a head pools both slices and
  keeps only their mean position; with them, heads split by time and read the motion."""
  rng = np.random.default_rng(6)
  f_tr, y_tr = _moving(1500, rng)
  f_te, y_te = _moving(200, rng)
  kw = dict(steps=300, batch_size=64, lr=1e-2, num_heads=4, hidden=32, grid=(2, 4, 4))
  with_t = fit_probe(f_tr, y_tr, f_te, y_te, score_coords=True, **kw)
  without = fit_probe(f_tr, y_tr, f_te, y_te, **kw)
  assert with_t.r2["velocity"] > 0.9, with_t.r2
  assert without.r2["velocity"] < 0.5, without.r2
  with pytest.raises(ValueError, match="score_coords"):
    fit_probe(f_tr[:8], {"v": y_tr["velocity"][:8]}, f_te[:8], {"v": y_te["velocity"][:8]},
              steps=1, batch_size=8, lr=1e-3, num_heads=2, score_coords=True)


def test_token_coordinates_and_standardisation():
  from jepa_jax.eval.probe import standardize_tokens, token_coordinates
  c = token_coordinates((2, 3))
  np.testing.assert_allclose(c[:3], [[-1, -1], [-1, 0], [-1, 1]])
  np.testing.assert_allclose(c[3:], [[1, -1], [1, 0], [1, 1]])
  rng = np.random.default_rng(5)
  a = rng.normal(3.0, 2.0, (50, 4, 3)).astype(np.float32)
  b = rng.normal(size=(7, 4, 3)).astype(np.float32)
  sa, sb = standardize_tokens(a, b)
  np.testing.assert_allclose(sa.mean(0), 0, atol=1e-5)  # centred per position
  np.testing.assert_allclose(sa.reshape(-1, 3).std(0), 1, atol=1e-4)  # unit scale per channel
  np.testing.assert_allclose(sb, (b - a.mean(0)) / (a - a.mean(0)).reshape(-1, 3).std(0),
                             rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="probe grid"):
    fit_probe(a, {"y": np.zeros((50, 1))}, b, {"y": np.zeros((7, 1))}, steps=1, batch_size=8,
              lr=1e-3, num_heads=1, grid=(3, 3))


def test_probe_kinds_config_errors_name_the_key():
  import ml_collections
  cfg = ml_collections.ConfigDict({"probe": {"kinds": "linear,knn"}})
  with pytest.raises(ValueError, match="config.probe.kinds"):
    physics_probe.probe_kinds(cfg)
  cfg.probe.kinds = "attentive"
  assert physics_probe.probe_kinds(cfg) == ["attentive"]


def test_probe_encoders_wires_grid_and_linear_cap(monkeypatch):
  """physics_probe.probe_encoders: the linear probe sees at most probe.linear_max_train videos,
  the attentive probe gets the encoder's token grid, and both read a planted position."""
  import ml_collections

  class Source:  # "frames" are already 4x4 token maps; element i is deterministic per split
    def __init__(self, split):
      self.offset = {"probe_train": 0, "probe_test": 10_000}[split]

    def __getitem__(self, i):
      f, y = _planted(1, np.random.default_rng(self.offset + i))
      pos = y["position"].reshape(1, 2)
      return {"frames": f[0], "pos": pos, "vel": -pos}

  class Encoder:
    @staticmethod
    def apply(params, x):
      return x * params["scale"]

  seen = {}
  real_linear, real_attentive = physics_probe.fit_linear_probe, physics_probe.fit_probe

  def linear(f_tr, y_tr, *a, **kw):
    seen["linear_n"] = (len(f_tr), {g: len(y) for g, y in y_tr.items()})
    return real_linear(f_tr, y_tr, *a, **kw)

  def attentive(*a, **kw):
    seen["grid"] = kw["grid"]
    return real_attentive(*a, **kw)

  monkeypatch.setattr(physics_probe, "fit_linear_probe", linear)
  monkeypatch.setattr(physics_probe, "fit_probe", attentive)
  cfg = ml_collections.ConfigDict(dict(seed=0, probe=dict(
      kinds="linear,attentive", num_train=300, linear_max_train=200, num_test=60, steps=300,
      batch_size=64, lr=1e-2, num_heads=4, hidden=32, frame=0)))
  res = physics_probe.probe_encoders(cfg, Encoder, {"enc": {"scale": 1.0}},
                                     lambda c, split, n: Source(split), grid_shape=(4, 4))
  assert seen["linear_n"] == (200, {"position": 200, "velocity": 200})
  assert seen["grid"] == (4, 4)
  assert res["linear"]["enc"].r2["position"] > 0.9
  assert res["attentive"]["enc"].r2["position"] > 0.8
