r"""Surprise of any videos under a pretrained V-JEPA or frame JEPA (latent prediction error over
sliding windows).

  python scripts/score_surprise.py --pretrained=runs/pretrain --videos=my_videos.npy \
      --out=runs/surprise_mine
  python scripts/score_surprise.py --frame_jepa=runs/intuitive_physics/frame_jepa \
      --videos=my_videos.npy --out=runs/surprise_mine_frame

--videos: a .npy array or an .npz archive (array `frames`, or its only array) of uint8 frames
0..255 (or float in [0, 1]) shaped (N, T, H, W, C), or one video (T, H, W, C); H, W, C as the
model was trained on and T at least its window. Writes surprise.json (per video: its
score and the per-window curve) and surprise_curves.png (the most surprising videos first), and
prints the videos ranked by surprise. With --random_init the same architecture at init scores
them too, the baseline to compare against.

A frame JEPA trained at several frame steps (frame.frame_steps) scores at each of them by
default (--frame_steps to choose), each step's errors divided by their 99th percentile on
--calibration (possible videos of the same kind; default: the scored videos themselves); the
curve then holds, at each window end frame, the largest rescaled error of the windows ending there.
"""

import os
import time

from absl import app, flags, logging
import numpy as np

from jepa_jax.eval import frame_step_surprise, pretrained, surprise, video_surprise
from jepa_jax.train import frame_jepa

_PRETRAINED = flags.DEFINE_string("pretrained", "", "A finished experiments.pretrain workdir.")
_FRAME_JEPA = flags.DEFINE_string("frame_jepa", "", "Instead of --pretrained: a frame JEPA saved "
                                  "by experiments.intuitive_physics (WORKDIR/frame_jepa).")
_HORIZON = flags.DEFINE_integer("horizon", 1, "Frame JEPA: frames predicted per window.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Frame JEPA: pool the top_k largest token errors of "
                              "each predicted frame (0: the mean over all tokens).")
_TOKEN_POWER = flags.DEFINE_float("token_power", frame_jepa.TOKEN_POWER, "Frame JEPA: order of "
                                   "the power mean over each predicted frame's token errors (1: "
                                   "the mean; 2: the quadratic mean, which weighs a few large "
                                   "errors more).")
_FRAME_STEPS = flags.DEFINE_list("frame_steps", [], "Frame JEPA: the frame steps (time scales) to "
                                 "score at, e.g. 1,2 (every frame, every other frame). Default: "
                                 "the steps it was trained at.")
_CALIBRATION = flags.DEFINE_string("calibration", "", "With several frame steps: possible videos "
                                   "(.npy / .npz, like --videos) whose window errors set each "
                                   "step's scale; empty: the scored videos themselves.")
_QUANTILE = flags.DEFINE_float("calibration_quantile", frame_step_surprise.DEFAULT_QUANTILE,
                               "Each frame step's errors are divided by this quantile of its "
                               "errors on the calibration videos.")
_VIDEOS = flags.DEFINE_string("videos", None, "Frames file (.npy / .npz).", required=True)
_KEY = flags.DEFINE_string("key", "frames", "Array name inside an .npz archive.")
_OUT = flags.DEFINE_string("out", None, "Results directory.", required=True)
_STRIDE = flags.DEFINE_integer("stride", 0, "Frames between window starts; 0: 4 for a V-JEPA, "
                               "1 for a frame JEPA (one window per frame).")
_CONTEXT = flags.DEFINE_list("context_frames", [], "Context lengths in frames (multiples of the "
                             "tubelet length; the minimum over them is kept per window). Default: "
                             "half the window (V-JEPA), the model's context (frame JEPA).")
_AGGREGATE = flags.DEFINE_enum("aggregate", "power", list(surprise.AGGREGATES),
                               "Video score from its windows: their mean, max, or power mean "
                               "(exponent --power; between the mean and the max, every window "
                               "counts).")
_POWER = flags.DEFINE_float("power", surprise.DEFAULT_POWER, "Exponent of --aggregate=power.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Windows per model call.")
_RANDOM_INIT = flags.DEFINE_integer("random_init", -1, "If >= 0: also score with the same "
                                    "architecture at init from this seed (baseline).")
_PLOT_MAX = flags.DEFINE_integer("plot_max", 12, "Videos drawn in surprise_curves.png.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace earlier results in --out.")


def default_context(model: surprise.SurpriseModel) -> tuple[int, ...]:
  """Half the window, rounded down to whole tubelets (at least one)."""
  return (max(model.tubelet, (model.window // 2) // model.tubelet * model.tubelet),)


def load_scorers(pretrained_dir: str, frame_jepa_dir: str, random_init: int, horizon: int,
                 top_k: int, token_power: float = frame_jepa.TOKEN_POWER):
  """-> ({name: SurpriseModel}, default context lengths, metadata) for one of the two kinds."""
  if bool(pretrained_dir) == bool(frame_jepa_dir):
    raise ValueError("give exactly one model: --pretrained (a V-JEPA pretraining workdir) or "
                     "--frame_jepa (a saved frame JEPA)")
  if frame_jepa_dir:
    model, params, meta = frame_jepa.load(frame_jepa_dir)
    shape = tuple(meta["frame_shape"])
    scorers = {"frame_jepa": pretrained.frame_surprise_model(model, params, shape, horizon, top_k,
                                                             token_power)}
    if random_init >= 0:
      scorers["random_init"] = pretrained.frame_surprise_model(
          model, frame_jepa.init_params(model, shape, random_init), shape, horizon, top_k,
          token_power)
    return scorers, (model.context,), {
        "frame_jepa": os.path.abspath(frame_jepa_dir), "horizon": horizon, "top_k": top_k,
        "token_power": token_power,
        "trained_steps": meta.get("training", {}).get("steps"),
        "trained_frame_steps": meta.get("training", {}).get("frame_steps", [1])}
  cfg, models, params, step = pretrained.load_pretrained(pretrained_dir)
  scorers = {"vjepa": pretrained.surprise_model(cfg, models, params)}
  if random_init >= 0:
    scorers["random_init"] = pretrained.surprise_model(
        cfg, models, pretrained.random_init_params(models, cfg, random_init))
  return scorers, default_context(scorers["vjepa"]), {
      "pretrained": os.path.abspath(pretrained_dir), "pretrained_step": step}


def run(pretrained_dir: str, videos: str, out: str, key: str = "frames", stride: int = 0,
        context_frames=(), how: str = "power", batch_size: int = 32, random_init: int = -1,
        plot_max: int = 12, overwrite: bool = False, progress: bool = True,
        frame_jepa_dir: str = "", horizon: int = 1, top_k: int = 0,
        power: float = surprise.DEFAULT_POWER,
        token_power: float = frame_jepa.TOKEN_POWER, frame_steps=(), calibration: str = "",
        quantile: float = frame_step_surprise.DEFAULT_QUANTILE) -> dict:
  """Scores the videos with each model; returns {model name: paths written}."""
  if how == "power":
    surprise.check_power(power)
  frame_step_surprise.check_quantile(quantile)
  if frame_jepa_dir:
    frame_jepa.check_token_power(token_power)
  elif ((horizon, top_k, token_power) != (1, 0, frame_jepa.TOKEN_POWER) or frame_steps
        or calibration):
    raise ValueError("--horizon, --top_k, --token_power, --frame_steps and --calibration set how "
                     "a frame JEPA (--frame_jepa) scores; a V-JEPA (--pretrained) predicts whole "
                     "windows: leave them unset")
  targets = [out] + ([os.path.join(out, "random_init")] if random_init >= 0 else [])
  for target in targets:  # fail before any work: existing results, then a bad file
    video_surprise.check_writable(target, overwrite)
  frames = video_surprise.load_videos(videos, key)
  scorers, contexts, model_meta = load_scorers(pretrained_dir, frame_jepa_dir, random_init,
                                               horizon, top_k, token_power)
  main_name = next(iter(scorers))
  surprise.check_frames(frames, scorers[main_name])
  contexts = tuple(int(c) for c in context_frames) or contexts
  stride = stride or (1 if frame_jepa_dir else 4)
  steps = frame_step_surprise.check_step_frames(
      frames.shape[1], scorers[main_name].window,
      frame_steps or model_meta.get("trained_frame_steps", [1]))
  cal_frames = None
  if len(steps) > 1:  # the scored videos set each step's scale unless --calibration is given
    cal_frames = (video_surprise.load_videos(calibration, key, "--calibration") if calibration
                  else frames)
    surprise.check_frames(cal_frames, scorers[main_name])
  written = {}
  for name, model in scorers.items():
    t0 = time.time()
    result = video_surprise.score(model, frames, stride, contexts, how, batch_size, progress,
                                  power, steps, cal_frames, quantile)
    meta = {"model": name, **model_meta, "videos": os.path.abspath(videos),
            "num_videos": int(frames.shape[0]), "window": model.window, "stride": stride,
            "context_frames": list(contexts), "aggregate": how,
            **({"power": power} if how == "power" else {}),
            "frame_steps": list(steps),
            **({"calibration": os.path.abspath(calibration) if calibration else "the videos",
                "calibration_quantile": quantile,
                "step_scales": {str(k): v for k, v in result["scales"].items()}}
               if len(steps) > 1 else {})}
    target = out if name == main_name else os.path.join(out, name)
    written[name] = video_surprise.write_results(target, result, meta, overwrite, plot_max)
    order = np.argsort(-result["video"])
    how_desc = surprise.describe_aggregate(how, power)
    print(f"{name}: {len(order)} videos scored in {time.time() - t0:.1f} s "
          f"({how_desc} over windows of {model.window} frames, context {contexts}, frame "
          f"step(s) {steps}); most "
          "surprising:")
    for i in order[:10]:
      print(f"  video {i:>5}  {result['video'][i]:.5g}")
    print(f"  -> {written[name]['json']}, {written[name]['plot']}")
  return written


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  run(_PRETRAINED.value, _VIDEOS.value, _OUT.value, _KEY.value, _STRIDE.value, _CONTEXT.value,
      _AGGREGATE.value, _BATCH.value, _RANDOM_INIT.value, _PLOT_MAX.value, _OVERWRITE.value,
      frame_jepa_dir=_FRAME_JEPA.value, horizon=_HORIZON.value, top_k=_TOP_K.value,
      power=_POWER.value, token_power=_TOKEN_POWER.value,
      frame_steps=tuple(_FRAME_STEPS.value), calibration=_CALIBRATION.value,
      quantile=_QUANTILE.value)


if __name__ == "__main__":
  app.run(main)
