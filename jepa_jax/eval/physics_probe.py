"""The pretraining quality check: probe ball position/velocity from a pretrained encoder and from
the same architecture at random init, on held-out procedural videos, with each probe kind of
eval/probe.py (config.probe.kinds: 'linear', 'attentive')."""

import jax

from jepa_jax.data.sources import materialize
from jepa_jax.eval.probe import extract_features, fit_linear_probe, fit_probe, physics_targets

PROBE_KINDS = ("linear", "attentive")


def probe_kinds(cfg) -> list[str]:
  kinds = [k.strip() for k in cfg.probe.get("kinds", "linear,attentive").split(",") if k.strip()]
  bad = [k for k in kinds if k not in PROBE_KINDS]
  if bad or not kinds:
    raise ValueError(f"config.probe.kinds={cfg.probe.kinds!r}: a comma-separated subset of "
                     f"{PROBE_KINDS}")
  return kinds


def probe_encoders(cfg, encoder, encoders: dict, make_source, grid_shape=None) -> dict:
  """encoders: name -> encoder params ({'params': ...}); grid_shape: the encoder's token grid
  (its coordinates join the attentive probe's pooled values).
  Returns kind -> name -> ProbeResult."""
  p = cfg.probe
  kinds = probe_kinds(cfg)
  train = materialize(make_source(cfg, "probe_train", p.num_train), p.num_train)
  test = materialize(make_source(cfg, "probe_test", p.num_test), p.num_test)
  frame = p.frame if train["pos"].ndim == 4 else None
  targets = {}
  for split, data in (("train", train), ("test", test)):
    pos, vel = physics_targets(data, frame)
    targets[split] = {"position": pos, "velocity": vel}
  results = {k: {} for k in kinds}
  for name, params in encoders.items():
    f_tr = extract_features(encoder.apply, params, train["frames"])
    f_te = extract_features(encoder.apply, params, test["frames"])
    if "linear" in results:
      n = min(len(f_tr), p.get("linear_max_train", len(f_tr)))
      results["linear"][name] = fit_linear_probe(
          f_tr[:n], {g: y[:n] for g, y in targets["train"].items()}, f_te, targets["test"],
          seed=cfg.seed)
    if "attentive" in results:
      results["attentive"][name] = fit_probe(
          f_tr, targets["train"], f_te, targets["test"], steps=p.steps, batch_size=p.batch_size,
          lr=p.lr, num_heads=p.num_heads, hidden=p.get("hidden", 128),
          grid=None if grid_shape is None else tuple(grid_shape),
          score_coords=bool(p.get("score_coords", False)), seed=cfg.seed,
          desc=f"attentive probe, {name}")
    del f_tr, f_te  # the training features are ~1 GB at the default probe sizes
  return results


def random_encoder_params(encoder, cfg, example_frames):
  """Same architecture, untrained (a different init seed from the pretrained run's)."""
  return encoder.init(jax.random.key(cfg.seed + 12345), example_frames)


def summary_tables(results_by_kind: dict) -> str:
  return "\n\n".join(f"{kind} probe:\n{summary_table(r)}" for kind, r in results_by_kind.items())


def summary_table(results: dict) -> str:
  names = list(results)
  groups = list(results[names[0]].r2)
  lines = [f"{'encoder':<14}" + "".join(f"{g + ' R2':>16}{g + ' RMSE':>18}" for g in groups)]
  for n in names:
    lines.append(f"{n:<14}" + "".join(f"{results[n].r2[g]:>16.3f}{results[n].rmse[g]:>18.3f}"
                                      for g in groups))
  if "pretrained" in results and "random_init" in results:
    ratio = {g: results["pretrained"].rmse[g] / max(results["random_init"].rmse[g], 1e-12)
             for g in groups}
    lines.append("RMSE ratio pretrained/random: " +
                 ", ".join(f"{g} {r:.2f}" for g, r in ratio.items()))
  return "\n".join(lines)


def results_dict(results_by_kind: dict) -> dict:
  return {kind: {n: {"r2": r.r2, "rmse": r.rmse} for n, r in results.items()}
          for kind, results in results_by_kind.items()}

