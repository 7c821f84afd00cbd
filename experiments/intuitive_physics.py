r"""Intuitive physics: violation-of-expectation benchmark; surprise of JEPAs and baselines.

  python -m experiments.intuitive_physics --pretrained=runs/pretrain --workdir=runs/voe
  python -m experiments.intuitive_physics --config=experiments/configs/intuitive_physics.py:debug \
      --workdir=/tmp/voe_debug                        # trains a debug V-JEPA first

Models: the pretrained V-JEPA (latent error of its predictor vs. its target encoder), the same
architecture at random init (same surprise function), a pixel predictor trained on the
same possible videos, and a frame-level JEPA (conv encoder per frame, next-frame latent
predictor; train/frame_jepa.py) trained here on possible videos of the same physics (balls may
also start at rest: frame.train_min_speed), with its random init and a next-frame pixel
predictor (eval/frame_pixel_baseline.py) trained on the same videos beside it, all at the frame
steps (time scales) of frame.frame_steps (eval/frame_step_surprise.py). Two model-free
scores (eval/motion_baseline.py: more change / less change, more surprise) show which violation
types the amount of motion alone gives away. Prints pairwise accuracy / AUROC per violation
type; writes results.json and surprise_<model>.png (surprise over time, violation frame marked).
"""

import dataclasses
import json
import os
import time

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs import pretrain as pretrain_configs
from jepa_jax.data import frame_steps as frame_step_data
from jepa_jax.data import sources
from jepa_jax.data import violations as voe
from jepa_jax.eval import (frame_pixel_baseline, frame_step_surprise, motion_baseline,
                           pixel_baseline, pretrained, surprise, voe_metrics)
from jepa_jax.train import frame_jepa, loop
from jepa_jax.train import pretrain as jepa

_CONFIGS = os.path.join(os.path.dirname(__file__), "configs", "intuitive_physics.py")
CONFIG = config_flags.DEFINE_config_file("config", f"{_CONFIGS}:cpu_default",
                                         "Config file and preset (path:preset).")
WORKDIR = flags.DEFINE_string("workdir", "runs/intuitive_physics", "Results and plots go here.")
PRETRAINED = flags.DEFINE_string("pretrained", "", "A finished experiments.pretrain workdir; "
                                 "empty: pretrain config.pretrain.preset into WORKDIR/pretrain.")


def pretrain_if_needed(cfg, workdir: str) -> str:
  if PRETRAINED.value:
    return PRETRAINED.value
  out = os.path.join(workdir, "pretrain")
  if os.path.isdir(os.path.join(out, "checkpoints")) and os.listdir(f"{out}/checkpoints"):
    print(f"reusing the pretrained model in {out}")
    return out
  pcfg = pretrain_configs.get_config(cfg.pretrain.preset)
  if cfg.pretrain.total_steps:
    pcfg.total_steps = cfg.pretrain.total_steps
  task, _ = jepa.make_task(pcfg)
  result = loop.train(task, pcfg, out)
  print(f"pretrained {cfg.pretrain.preset} for {result.step} steps in "
        f"{result.seconds / 60:.1f} min")
  return out


# cfg.frame keys that change the trained frame JEPA (the others only change how it is scored).
FRAME_TRAINING_KEYS = ("steps", "batch_size", "lr", "context", "ahead", "rollout", "input_norm",
                       "width", "dim", "dilations", "ema", "var", "cov", "clips_per_video",
                       "windows_per_clip", "residual", "hard_weight", "train_min_speed",
                       "frame_steps", "separate_trunks", "frame_weights")
# Training keys added after frame JEPAs were first saved, with the value those were trained with
# (train_min_speed: the pretraining's lowest speed, filled in by frame_keys_since).
FRAME_KEYS_SINCE = {"windows_per_clip": 1, "residual": False, "hard_weight": 0.0,
                    "dilations": list(frame_jepa.DILATIONS), "frame_steps": [1],
                    "separate_trunks": False, "frame_weights": []}


def frame_keys_since(pcfg) -> dict:
  return {**FRAME_KEYS_SINCE, "train_min_speed": float(pcfg.data.physics.speed[0])}


def frame_train_data_config(cfg, pcfg) -> ml_collections.ConfigDict:
  """The pretraining's config with the frame models' training videos: its physics, with initial
  ball speeds from cfg.frame.train_min_speed (px/frame) up to the pretraining's highest. The
  benchmark's videos keep the pretraining's speeds."""
  high = float(pcfg.data.physics.speed[1])
  v = cfg.frame.train_min_speed
  if not 0.0 <= v <= high:
    raise ValueError(f"frame.train_min_speed={v}: the lowest initial ball speed of the frame "
                     f"models' training videos, 0 (balls released from rest) to the "
                     f"pretraining's highest, {high} px/frame")
  out = ml_collections.ConfigDict(pcfg.to_dict())
  out.data.physics.speed = (float(v), high)
  return out


def frame_train_source(cfg, pcfg):
  """The frame models' training videos (frame_train_data_config) at each of cfg.frame.frame_steps:
  at step k, every k-th frame of videos k times as long (data/frame_steps.py)."""
  dcfg = frame_train_data_config(cfg, pcfg)
  num_frames = dcfg.data.physics.num_frames

  def at_step(k: int):
    c = ml_collections.ConfigDict(dcfg.to_dict())
    c.data.physics.num_frames = num_frames * k
    return jepa.make_source(c, "train")

  return frame_step_data.FrameStepSource(at_step, num_frames, cfg.frame.frame_steps)


def calibration_videos(cfg, physics) -> np.ndarray | None:
  """Possible videos of the benchmark's physics and length, from their own split (never the
  benchmark's), that put a frame model's steps on one scale; None with one frame step."""
  if len(cfg.frame.frame_steps) < 2:
    return None
  n = cfg.frame.calibration_videos
  if n < 1:
    raise ValueError(f"frame.calibration_videos={n}: scoring at frame steps "
                     f"{tuple(cfg.frame.frame_steps)} needs at least one calibration video "
                     "(200 by default)")
  source = sources.PhysicsVideoSource(
      dataclasses.replace(physics, num_frames=cfg.benchmark.num_frames), n, seed=cfg.seed,
      split="calibration")
  return np.stack([source[i]["frames"] for i in range(n)])


def frame_training_settings(cfg, pcfg, frame_shape) -> dict:
  """What the frame JEPA trained in this run depends on: the seed, cfg.frame's training keys,
  and the videos (the pretraining's data config and frame shape); JSON-comparable."""
  # Sequences as lists, as they come back from the saved JSON.
  return {"seed": cfg.seed,
          **{k: list(v) if isinstance(v, (tuple, list)) else v
             for k, v in ((k, cfg.frame[k]) for k in FRAME_TRAINING_KEYS)},
          "frame_shape": list(frame_shape), "data": json.loads(pcfg.data.to_json_best_effort())}


def check_saved_frame_jepa(out: str, wanted: dict, keys_since: dict) -> bool:
  """True if `out` holds a frame JEPA trained with `wanted`; False if it holds none; an error
  naming the differing settings otherwise (a finished training is never overwritten). Keys the
  saved metadata lacks take their `keys_since` value (frame_keys_since). Called before anything
  trains."""
  if not frame_jepa.exists(out):
    return False
  saved = frame_jepa.read_meta(out).get("training", {})
  saved = {**keys_since, **saved}
  differ = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
  if differ:
    raise ValueError(f"{out} holds a frame JEPA trained with other settings (saved, wanted): "
                     f"{differ}; use another --workdir, or delete {out} to retrain")
  return True


def frame_jepa_if_needed(cfg, train_source, frame_shape, out: str, wanted: dict,
                         keys_since: dict):
  """Trains the frame JEPA and saves it to `out`, or reuses the one there (see
  check_saved_frame_jepa)."""
  fm = cfg.frame
  if check_saved_frame_jepa(out, wanted, keys_since):
    model, params, meta = frame_jepa.load(out)
    print(f"reusing the frame JEPA in {out} ({fm.steps} steps)")
    return model, params, meta["history"]
  t0 = time.time()
  model, params, history = frame_jepa.train_frame_jepa(
      train_source, context=fm.context, width=fm.width, dim=fm.dim, steps=fm.steps,
      batch_size=fm.batch_size, lr=fm.lr, ema=fm.ema, var_weight=fm.var, cov_weight=fm.cov,
      rollout=fm.rollout, input_norm=fm.input_norm, ahead=fm.ahead,
      clips_per_video=fm.clips_per_video, windows_per_clip=fm.windows_per_clip,
      residual=fm.residual, hard_weight=fm.hard_weight, seed=cfg.seed,
      dilations=tuple(fm.dilations), separate_trunks=fm.separate_trunks,
      frame_weights=tuple(fm.frame_weights), verbose=True)
  print(f"frame JEPA: {fm.steps} steps in {(time.time() - t0) / 60:.1f} min, final prediction "
        f"loss {history[-1]['pred_loss']:.4g}; saved to {out}")
  frame_jepa.save(out, model, params, frame_shape, {"training": wanted, "history": history})
  return model, params, history


def score_pairs(model, bench, s, power: float, frame_steps=(1,), calibration=None,
                quantile: float = frame_step_surprise.DEFAULT_QUANTILE):
  """Per-window scores of both twins (at each frame step, each step's rescaled by its
  `quantile` on the `calibration` videos when there are several); video scores for every
  aggregate (the per-window scores are shared, so reporting all costs nothing); `power`: the
  power mean's exponent."""
  frames = np.concatenate([bench["possible"], bench["impossible"]])
  scores_NKC, windows, scales = frame_step_surprise.calibrated_scores(
      model, frames, frame_steps, s.stride, tuple(s.context_frames), calibration, quantile,
      s.batch_size, progress=True)
  p = len(bench["possible"])
  out = {"windows": windows, "scales": scales}
  for how in surprise.AGGREGATES:
    video, per_window = surprise.aggregate(scores_NKC, how, power)
    out[how] = {"possible": video[:p], "impossible": video[p:]}
  out["window_possible"], out["window_impossible"] = per_window[:p], per_window[p:]
  out["window_end_frames"], curve = frame_step_surprise.per_frame(per_window, windows)
  out["curve_possible"], out["curve_impossible"] = curve[:p], curve[p:]
  return out


def plot_examples(path, name, scores, bench, per_type):
  curves, seen = [], {}
  for i, kind in enumerate(bench["type"]):
    if seen.get(kind, 0) >= per_type:
      continue
    seen[kind] = seen.get(kind, 0) + 1
    curves.append({"x": scores["window_end_frames"], "possible": scores["curve_possible"][i],
                   "impossible": scores["curve_impossible"][i],
                   "t_violation": int(bench["t_violation"][i]),
                   "label": f"{kind} ({bench['variant'][i]})"})
  return voe_metrics.plot_surprise_curves(path, curves, f"{name}: surprise per window")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  cfg = CONFIG.value
  workdir = WORKDIR.value
  surprise.check_aggregate(cfg.surprise.aggregate)
  surprise.check_power(cfg.surprise.power)
  os.makedirs(workdir, exist_ok=True)
  t_start = time.time()

  # --- Models ------------------------------------------------------------------------------------
  pre_dir = pretrain_if_needed(cfg, workdir)
  pcfg, models, params, step = pretrained.load_pretrained(pre_dir)
  if jepa.data_source(pcfg) != "physics":
    raise ValueError(f"--pretrained={pre_dir} was trained on config.data.source="
                     f"{pcfg.data.source!r}; the benchmark needs a V-JEPA of physics videos")
  physics = jepa.physics_config(pcfg)
  vjepa = pretrained.surprise_model(pcfg, models, params)
  window, frame_shape, tubelet = vjepa.window, vjepa.frame_shape, vjepa.tubelet
  frame_dir = os.path.join(workdir, "frame_jepa")
  if cfg.frame.enabled:  # settings the frame JEPA cannot use fail before anything trains
    frame_wanted = frame_training_settings(cfg, pcfg, frame_shape)
    frame_jepa.check_rollout(cfg.frame.rollout, cfg.frame.input_norm, cfg.frame.ahead)
    frame_jepa.check_hard_weight(cfg.frame.hard_weight)
    frame_jepa.check_frame_weights(tuple(cfg.frame.frame_weights), cfg.frame.rollout)
    frame_jepa.check_dilations(cfg.frame.dilations)
    frame_source = frame_train_source(cfg, pcfg)
    frame_step_surprise.check_step_frames(cfg.benchmark.num_frames,
                                          cfg.frame.context + cfg.frame.horizon,
                                          cfg.frame.frame_steps)
    frame_step_surprise.check_quantile(cfg.frame.calibration_quantile)
    frame_jepa.clip_frames(cfg.frame.context, cfg.frame.rollout, cfg.frame.windows_per_clip,
                           physics.num_frames)
    frame_jepa.check_predicted_frames(cfg.frame.horizon, cfg.frame.input_norm, cfg.frame.ahead)
    frame_jepa.check_top_k(cfg.frame.top_k, frame_jepa.tokens_per_frame(frame_shape))
    frame_jepa.check_token_power(cfg.frame.token_power)
    frame_keys = frame_keys_since(pcfg)
    check_saved_frame_jepa(frame_dir, frame_wanted, frame_keys)
  surprise_models = {
      "vjepa": vjepa,
      "random_init": pretrained.surprise_model(
          pcfg, models, pretrained.random_init_params(models, pcfg, cfg.random_init_seed))}
  pixel_history = []
  if cfg.pixel.enabled:
    t0 = time.time()
    px = cfg.pixel
    # Same encoder / predictor sizes as the V-JEPA; pixels instead of target features, on the
    # pretraining's videos.
    pmodels, pparams, pixel_history = pixel_baseline.train_pixel_predictor(
        jepa.make_source(pcfg, "train"), window, tuple(pcfg.model.patch_size),
        tuple(cfg.surprise.context_frames), px.steps, px.batch_size, px.lr, cfg.seed,
        log_every=25, verbose=True, size=pcfg.model.size, width=pcfg.model.predictor.width,
        depth=pcfg.model.predictor.depth, num_heads=pcfg.model.predictor.num_heads)
    print(f"pixel baseline: {px.steps} steps in {(time.time() - t0) / 60:.1f} min, "
          f"final loss {pixel_history[-1]['loss']:.4g}")
    surprise_models["pixel"] = surprise.SurpriseModel(
        pixel_baseline.window_error_fn(pmodels), pparams, window, frame_shape, tubelet)

  frame_history, frame_pixel_history = [], []
  # name -> (window settings, window length, frame steps)
  settings = {name: (cfg.surprise, window, (1,)) for name in surprise_models}
  if cfg.frame.enabled:
    fm = cfg.frame
    fmodel, fparams, frame_history = frame_jepa_if_needed(
        cfg, frame_source, frame_shape, frame_dir, frame_wanted, frame_keys)
    # Its own windows: K context frames, `horizon` predicted, every `stride` frames.
    fs = ml_collections.ConfigDict(dict(stride=fm.stride, context_frames=(fm.context,),
                                        batch_size=cfg.surprise.batch_size))
    random_params = frame_jepa.init_params(fmodel, frame_shape, cfg.random_init_seed)
    for name, p in (("frame_jepa", fparams), ("frame_random_init", random_params)):
      surprise_models[name] = pretrained.frame_surprise_model(fmodel, p, frame_shape, fm.horizon,
                                                              fm.top_k, fm.token_power)
      settings[name] = (fs, fm.context + fm.horizon, tuple(fm.frame_steps))
    if cfg.frame_pixel.enabled:
      t0 = time.time()
      fp = cfg.frame_pixel
      # The frame JEPA's next-frame prediction in pixels: same videos, clip sampler, context
      # and windows (clips of context + 1 frames).
      pmodel, pparams, frame_pixel_history = frame_pixel_baseline.train_frame_pixels(
          frame_source, context=fm.context, steps=fp.steps,
          batch_size=fp.batch_size, lr=fp.lr, width=fp.width, clips_per_video=fp.clips_per_video,
          seed=cfg.seed, verbose=True)
      print(f"frame pixel baseline: {fp.steps} steps in {(time.time() - t0) / 60:.1f} min, "
            f"final loss {frame_pixel_history[-1]['loss']:.4g}")
      surprise_models["frame_pixel"] = surprise.SurpriseModel(
          frame_pixel_baseline.window_error_fn(pmodel, fm.context), pparams,
          fm.context + fm.horizon, frame_shape, 1)
      settings["frame_pixel"] = settings["frame_jepa"]

  if cfg.motion_baselines:
    # Model-free: how far the amount of change alone separates the twins of each type, on the
    # windows of the model they are read against (the frame JEPA's when it is on).
    ms, mwindow, msteps = (settings["frame_jepa"] if cfg.frame.enabled
                           else (cfg.surprise, window, (1,)))
    for name, m in motion_baseline.surprise_models(mwindow, frame_shape,
                                                   min(ms.context_frames)).items():
      surprise_models[name], settings[name] = m, (ms, mwindow, msteps)

  # --- Benchmark ---------------------------------------------------------------------------------
  t0 = time.time()
  b = cfg.benchmark
  vcfg = voe.ViolationConfig(min_prefix=b.min_prefix, min_suffix=b.min_suffix,
                             min_changed_pixels=b.min_changed_pixels,
                             pixel_threshold=b.pixel_threshold, min_jump=b.min_jump)
  source = voe.ViolationSource(dataclasses.replace(physics, num_frames=b.num_frames),
                               b.pairs_per_type, b.seed, vcfg)
  bench = voe.make_benchmark(source)
  calibration = calibration_videos(cfg, physics) if cfg.frame.enabled else None
  print(f"benchmark: {len(source)} pairs of {b.num_frames}-frame videos"
        + (f", {len(calibration)} possible calibration videos" if calibration is not None else "")
        + f" in {time.time() - t0:.0f} s")

  # --- Surprise, metrics, plots ------------------------------------------------------------------
  results = {}
  for name, model in surprise_models.items():
    t0 = time.time()
    s, _, steps = settings[name]
    scores = score_pairs(model, bench, s, cfg.surprise.power, steps, calibration,
                         cfg.frame.calibration_quantile)
    by_agg = {how: voe_metrics.voe_report(scores[how]["possible"], scores[how]["impossible"],
                                          bench["type"]) for how in surprise.AGGREGATES}
    plot = plot_examples(os.path.join(workdir, f"surprise_{name}.png"), name, scores, bench,
                         cfg.plot_pairs_per_type)
    check = voe_metrics.shared_context_accuracy(
        scores["window_possible"], scores["window_impossible"],
        scores["windows"].context_end(max(s.context_frames)), scores["windows"].end,
        bench["t_violation"], bench["type"])
    results[name] = {"report": by_agg, "plot": plot, "seconds": time.time() - t0,
                     "shared_context_accuracy": check,
                     "frame_steps": list(steps), "step_scales": scores["scales"],
                     "window_end_frames": scores["window_end_frames"].tolist(),
                     "curve_possible": scores["curve_possible"].tolist(),
                     "curve_impossible": scores["curve_impossible"].tolist(),
                     **{f"surprise_{how}": {k: v.tolist() for k, v in scores[how].items()}
                        for how in surprise.AGGREGATES}}
  fm = cfg.frame
  pooling = frame_jepa.describe_pooling(fm.top_k, fm.token_power)
  steps_desc = (f"frame steps {tuple(fm.frame_steps)}, each step's window errors / their "
                f"{fm.calibration_quantile:g} quantile on {fm.calibration_videos} possible "
                "videos" if len(fm.frame_steps) > 1 else f"frame step {fm.frame_steps[0]}")
  frame_desc = (f" (frame JEPA: context {fm.context}, {fm.horizon} predicted, stride {fm.stride}, "
                f"{steps_desc}, token pooling: {pooling})" if fm.enabled else "")
  configured_first = [cfg.surprise.aggregate] + [a for a in surprise.AGGREGATES
                                                  if a != cfg.surprise.aggregate]
  how_desc = {how: surprise.describe_aggregate(how, cfg.surprise.power)
              + (" (configured)" if how == cfg.surprise.aggregate else "")
              for how in configured_first}
  for how in configured_first:
    print(f"\nViolation of expectation, {b.pairs_per_type} pairs per type, "
          f"aggregate={how_desc[how]}, "
          f"context={tuple(cfg.surprise.context_frames)} frames, stride={cfg.surprise.stride}"
          + frame_desc
          + " (pairwise accuracy / AUROC, %):")
    reports = {n: r["report"][how] for n, r in results.items()}
    print(voe_metrics.table(reports))
    if how == cfg.surprise.aggregate:
      print(f"95 % intervals (Wilson) of these pairwise accuracies, {b.pairs_per_type} pairs "
            "per type:")
      print(voe_metrics.ci_table(reports))
  print("\nPrediction check (diagnostic; uses the violation frame): on windows whose context is "
        "the twins' shared prefix, the share where the possible future is the closer one, %:")
  kinds = list(next(iter(results.values()))["shared_context_accuracy"])
  print(voe_metrics.text_table(
      {n: [f"{100 * r['shared_context_accuracy'][k]['accuracy']:.1f}" for k in kinds]
       for n, r in results.items()}, kinds, cell_width=12))
  panels = {f"pairwise accuracy, aggregate {how_desc[how]}": {
      n: {k: v["pairwise_acc"] for k, v in r["report"][how].items()} for n, r in results.items()}
      for how in configured_first}
  panels["prediction check (shared-prefix windows)"] = {
      n: {k: v["accuracy"] for k, v in r["shared_context_accuracy"].items()}
      for n, r in results.items()}
  bars = voe_metrics.plot_accuracy_bars(os.path.join(workdir, "accuracy.png"), panels, bar=0.9)
  summary = {"config": cfg.to_dict(), "pretrained_workdir": os.path.abspath(pre_dir),
             "pretrained_step": step, "pixel_history": pixel_history,
             "frame_jepa_history": frame_history, "frame_pixel_history": frame_pixel_history,
             "types": bench["type"], "variants": bench["variant"],
             "t_violation": bench["t_violation"].tolist(), "models": results,
             "seconds": time.time() - t_start}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print("wrote", os.path.join(workdir, "results.json"), "and",
        ", ".join([bars] + [r["plot"] for r in results.values()]))


if __name__ == "__main__":
  app.run(main)
