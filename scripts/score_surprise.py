r"""Surprise of any videos under a pretrained V-JEPA (latent prediction error over sliding windows).

  python scripts/score_surprise.py --pretrained=runs/pretrain --videos=my_videos.npy \
      --out=runs/surprise_mine

--videos: a .npy array or an .npz archive (array `frames`, or its only array) of uint8 frames
0..255 (or float in [0, 1]) shaped (N, T, H, W, C), or one video (T, H, W, C); H, W, C as the
model was pretrained on and T at least its clip length. Writes surprise.json (per video: its
score and the per-window curve) and surprise_curves.png (the most surprising videos first), and
prints the videos ranked by surprise. With --random_init the same architecture at init scores
them too, the baseline to compare against.
"""

import os
import time

from absl import app, flags, logging
import numpy as np

from jepa_jax.eval import pretrained, surprise, video_surprise

_PRETRAINED = flags.DEFINE_string("pretrained", None, "A finished experiments.pretrain workdir.",
                                  required=True)
_VIDEOS = flags.DEFINE_string("videos", None, "Frames file (.npy / .npz).", required=True)
_KEY = flags.DEFINE_string("key", "frames", "Array name inside an .npz archive.")
_OUT = flags.DEFINE_string("out", None, "Results directory.", required=True)
_STRIDE = flags.DEFINE_integer("stride", 4, "Frames between window starts.")
_CONTEXT = flags.DEFINE_list("context_frames", [], "Context lengths in frames (multiples of the "
                             "tubelet length; the minimum over them is kept per window). Default: "
                             "half the window.")
_AGGREGATE = flags.DEFINE_enum("aggregate", "max", list(surprise.AGGREGATES),
                               "Video score from its windows.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Windows per model call.")
_RANDOM_INIT = flags.DEFINE_integer("random_init", -1, "If >= 0: also score with the same "
                                    "architecture at init from this seed (baseline).")
_PLOT_MAX = flags.DEFINE_integer("plot_max", 12, "Videos drawn in surprise_curves.png.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace earlier results in --out.")


def default_context(model: surprise.SurpriseModel) -> tuple[int, ...]:
  """Half the window, rounded down to whole tubelets (at least one)."""
  return (max(model.tubelet, (model.window // 2) // model.tubelet * model.tubelet),)


def run(pretrained_dir: str, videos: str, out: str, key: str = "frames", stride: int = 4,
        context_frames=(), how: str = "max", batch_size: int = 32, random_init: int = -1,
        plot_max: int = 12, overwrite: bool = False, progress: bool = True) -> dict:
  """Scores the videos with each model; returns {model name: paths written}."""
  targets = [out] + ([os.path.join(out, "random_init")] if random_init >= 0 else [])
  for target in targets:  # fail before any work: existing results, then a bad file
    video_surprise.check_writable(target, overwrite)
  frames = video_surprise.load_videos(videos, key)
  cfg, models, params, step = pretrained.load_pretrained(pretrained_dir)
  vjepa = pretrained.surprise_model(cfg, models, params)
  surprise.check_frames(frames, vjepa)  # before the random-init baseline is built
  contexts = tuple(int(c) for c in context_frames) or default_context(vjepa)
  scorers = {"vjepa": vjepa}
  if random_init >= 0:
    scorers["random_init"] = pretrained.surprise_model(
        cfg, models, pretrained.random_init_params(models, cfg, random_init))
  written = {}
  for name, model in scorers.items():
    t0 = time.time()
    result = video_surprise.score(model, frames, stride, contexts, how, batch_size, progress)
    meta = {"model": name, "pretrained": os.path.abspath(pretrained_dir), "pretrained_step": step,
            "videos": os.path.abspath(videos), "num_videos": int(frames.shape[0]),
            "window": model.window, "stride": stride, "context_frames": list(contexts),
            "aggregate": how}
    target = out if name == "vjepa" else os.path.join(out, name)
    written[name] = video_surprise.write_results(target, result, meta, overwrite, plot_max)
    order = np.argsort(-result["video"])
    print(f"{name}: {len(order)} videos scored in {time.time() - t0:.1f} s "
          f"({how} over windows of {model.window} frames, context {contexts}); most surprising:")
    for i in order[:10]:
      print(f"  video {i:>5}  {result['video'][i]:.5g}")
    print(f"  -> {written[name]['json']}, {written[name]['plot']}")
  return written


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  run(_PRETRAINED.value, _VIDEOS.value, _OUT.value, _KEY.value, _STRIDE.value, _CONTEXT.value,
      _AGGREGATE.value, _BATCH.value, _RANDOM_INIT.value, _PLOT_MAX.value, _OVERWRITE.value)


if __name__ == "__main__":
  app.run(main)
