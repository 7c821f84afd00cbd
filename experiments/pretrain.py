r"""I-JEPA / V-JEPA pretraining on procedural physics data, then a physics probe.

  python -m experiments.pretrain                                   # cpu_default, ./runs/pretrain
  python -m experiments.pretrain --config=experiments/configs/pretrain.py:debug --workdir=/tmp/x
  python -m experiments.pretrain --config.total_steps=200 --config.model.size=tiny --resume
"""

import json
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jepa_jax.eval import physics_probe
from jepa_jax.eval.probe import plot_probe
from jepa_jax.train import loop
from jepa_jax.train import pretrain as jepa

_CONFIGS = os.path.join(os.path.dirname(__file__), "configs", "pretrain.py")
CONFIG = config_flags.DEFINE_config_file("config", f"{_CONFIGS}:cpu_default",
                                         "Config file and preset (path:preset).")
WORKDIR = flags.DEFINE_string("workdir", "runs/pretrain", "Checkpoints, metrics and plots go here.")
RESUME = flags.DEFINE_bool("resume", False, "Continue from the latest checkpoint in --workdir.")
PROBE_ONLY = flags.DEFINE_bool("probe_only", False, "Skip training; probe the latest checkpoint.")


def main(argv):
  del argv
  cfg = CONFIG.value
  workdir = WORKDIR.value
  loop.prepare_run(cfg, workdir, resume=RESUME.value or PROBE_ONLY.value)

  # --- Train -----------------------------------------------------------------------------------
  task, models = jepa.make_task(cfg, jax.process_index(), jax.process_count())
  logging.info("token grid %s, %d devices, global batch %d", models.grid_shape,
               jax.device_count(), cfg.batch_size)
  result = loop.train(task, cfg, workdir, resume=RESUME.value or PROBE_ONLY.value,
                      stop_after=0 if PROBE_ONLY.value else None)
  if result.last_metrics:
    print(loop.summary_line(result))

  # --- Probe: does the encoder carry the physics? ----------------------------------------------
  if not cfg.probe.enabled or jax.process_index() != 0:
    return
  target = {"params": jax.device_get(result.state.target_params["encoder"])}
  example = jepa.dummy_batch(cfg, [], 1)["frames"]
  encoders = {"pretrained": target,
              "random_init": physics_probe.random_encoder_params(models.encoder, cfg, example)}
  results = physics_probe.probe_encoders(cfg, models.encoder, encoders, jepa.make_source,
                                          models.grid_shape)
  print("\nProbes on frozen features, held-out videos:")
  print(physics_probe.summary_tables(results))
  with open(f"{workdir}/probe.json", "w") as f:
    json.dump(physics_probe.results_dict(results), f, indent=1)
  plots = [plot_probe(r, f"{workdir}/probe_{kind}.png") for kind, r in results.items()]
  plots += [p for p in [f"{workdir}/curves.png"] if os.path.exists(p)]
  print("plots:", ", ".join(plots))


if __name__ == "__main__":
  app.run(main)
