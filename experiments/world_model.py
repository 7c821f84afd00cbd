r"""Action-conditioned world model on Two Rooms, then the open-loop rollout probe.

  python -m experiments.world_model --workdir=runs/wm          # cpu_default
  python -m experiments.world_model --config=experiments/configs/world_model.py:debug --workdir=/tmp/x
  python -m experiments.world_model --config=experiments/configs/world_model.py:cpu_two_stage \
      --config.two_stage.encoder_workdir=runs/wm --workdir=runs/wm_two_stage
  python -m experiments.world_model --workdir=... --probe_only        # re-evaluate the latest checkpoint

Writes to --workdir: checkpoints/, metrics.jsonl, curves.png (loss curves and collapse
diagnostics), rollout_probe.json and rollout_probe.png (position error vs horizon; the JSON also
holds "wall_push": does the model stop an agent pushed into the middle wall, or let it tunnel).
"""

import json
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from jepa_jax.eval import rollout_probe
from jepa_jax.train import loop
from jepa_jax.train import world_model as wmt
from jepa_jax.world_model import WorldModel, params_from_state

_CONFIGS = os.path.join(os.path.dirname(__file__), "configs", "world_model.py")
CONFIG = config_flags.DEFINE_config_file("config", f"{_CONFIGS}:cpu_default",
                                         "Config file and preset (path:preset).")
WORKDIR = flags.DEFINE_string("workdir", "runs/world_model", "Checkpoints, metrics, plots.")
RESUME = flags.DEFINE_bool("resume", False, "Continue from the latest checkpoint in --workdir.")
PROBE_ONLY = flags.DEFINE_bool("probe_only", False, "Skip training; probe the latest checkpoint.")


def run_probe(cfg, models, params, workdir: str) -> dict:
  """Rollout probe on held-out random-layout trajectories and the push-into-the-wall check (same
  probe); writes JSON + PNG into workdir."""
  p = cfg.probe
  length = p.horizon * models.stride + 1
  train_data = wmt.train_walks(cfg, p.num_train, length)
  test_data = wmt.held_out_walks(cfg, p.num_test, length)
  wm = WorldModel(models.encoder, models.predictor, models.stride)
  probe = rollout_probe.fit_probe(wm, params, train_data, p)
  result = rollout_probe.evaluate(wm, params, train_data, test_data, p, models.stride, probe)
  result["recipe"] = cfg.recipe
  env = wmt.walks_config(cfg, random_layout=True).env  # the held-out trajectories' layouts
  result["wall_push"] = rollout_probe.wall_push_check(wm, params, probe, env,
                                                      stride=models.stride,
                                                      seed=cfg.seed + wmt.TEST_STREAM)
  with open(f"{workdir}/rollout_probe.json", "w") as f:
    json.dump(result, f, indent=1)
  rollout_probe.plot_errors({cfg.recipe: result}, f"{workdir}/rollout_probe.png")
  print(rollout_probe.summary(cfg.recipe, result))
  print(rollout_probe.wall_push_summary(cfg.recipe, result["wall_push"]))
  return result


def main(argv):
  del argv
  cfg = CONFIG.value
  workdir = WORKDIR.value
  loop.prepare_run(cfg, workdir, resume=RESUME.value or PROBE_ONLY.value)

  # --- Train -----------------------------------------------------------------------------------
  task, models = wmt.make_task(cfg, jax.process_index(), jax.process_count())
  result = loop.train(task, cfg, workdir, resume=RESUME.value or PROBE_ONLY.value,
                      stop_after=0 if PROBE_ONLY.value else None)
  if result.last_metrics:
    print(loop.summary_line(result))

  # --- Rollout probe ---------------------------------------------------------------------------
  if not cfg.probe.enabled or jax.process_index() != 0:
    return
  params = jax.device_get(params_from_state(result.state))
  run_probe(cfg, models, params, workdir)
  plots = [f"{workdir}/rollout_probe.png"]
  plots += [p for p in [f"{workdir}/curves.png"] if os.path.exists(p)]
  print("plots:", ", ".join(plots))


if __name__ == "__main__":
  app.run(main)
