r"""Upper bound for the pretraining probe: the same encoder + attentive probe trained end to end,
supervised on the probe's targets (ball position and velocity at `probe.frame`).

If this bound is below the probe target, no self-supervised recipe with this architecture and
budget can reach it; change the architecture / data trade-off first.

  python scripts/supervised_probe_bound.py --steps=400
  python scripts/supervised_probe_bound.py --config=experiments/configs/pretrain.py:cpu_future
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from jepa_jax.data.sources import materialize  # noqa: E402
from jepa_jax.eval.probe import AttentiveProbe, physics_targets, r2_score  # noqa: E402
from jepa_jax.losses import layer_norm_no_affine  # noqa: E402
from jepa_jax.train import pretrain as jepa  # noqa: E402

_CONFIGS = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "pretrain.py")
CONFIG = config_flags.DEFINE_config_file("config", f"{_CONFIGS}:cpu_default", "Pretrain config.")
STEPS = flags.DEFINE_integer("steps", 400, "Supervised training steps.")
LR = flags.DEFINE_float("lr", 1e-3, "Peak learning rate (AdamW, warmup + cosine).")


def main(argv):
  del argv
  cfg = CONFIG.value
  models = jepa.make_models(cfg)
  test = materialize(jepa.make_source(cfg, "probe_test", cfg.probe.num_test), cfg.probe.num_test)
  train_src = jepa.make_source(cfg, "train")
  frame = cfg.probe.frame if cfg.data.modality == "video" else None

  def targets(d):
    return np.concatenate(physics_targets(d, frame), 1)

  y_te = targets(test)
  mu, sd = y_te.mean(0), y_te.std(0) + 1e-6
  probe = AttentiveProbe(out_dim=y_te.shape[1], num_heads=cfg.probe.num_heads,
                         hidden=cfg.probe.get("hidden", 128), grid=tuple(models.grid_shape))
  k_enc, k_probe = jax.random.split(jax.random.key(cfg.seed))
  enc = models.encoder.init(k_enc, test["frames"][:1])

  def tokens(enc_params, x):
    # The encoder trains here, so fixed standardisation statistics do not exist: LayerNorm.
    return layer_norm_no_affine(models.encoder.apply(enc_params, x))

  params = {"encoder": enc, "probe": probe.init(k_probe, tokens(enc, test["frames"][:1]))}

  def forward(p, x):
    return probe.apply(p["probe"], tokens(p["encoder"], x))

  tx = optax.adamw(optax.warmup_cosine_decay_schedule(LR.value / 10, LR.value,
                                                      min(30, STEPS.value // 2), STEPS.value),
                   weight_decay=cfg.optim.weight_decay)
  opt_state = tx.init(params)

  @jax.jit
  def step(p, o, x, y):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean((forward(p, x) - y) ** 2))(p)
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), o, loss

  t0 = time.time()
  for i in range(STEPS.value):
    batch = materialize(train_src, cfg.batch_size, start=i * cfg.batch_size)
    params, opt_state, loss = step(params, opt_state, batch["frames"], (targets(batch) - mu) / sd)
    if i % 50 == 0 or i == STEPS.value - 1:
      done = time.time() - t0
      eta = done / (i + 1) * (STEPS.value - i - 1)
      print(f"step {i}: normalised MSE {float(loss):.3f}  ({done:.0f} s, ETA {eta:.0f} s)",
            flush=True)
  fwd = jax.jit(forward)
  pred = np.concatenate([np.asarray(fwd(params, test["frames"][i:i + 100]))
                         for i in range(0, len(y_te), 100)]) * sd + mu
  half = y_te.shape[1] // 2
  print(f"supervised bound after {STEPS.value} steps x {cfg.batch_size}: position R2 "
        f"{r2_score(y_te[:, :half], pred[:, :half]):.3f}, velocity R2 "
        f"{r2_score(y_te[:, half:], pred[:, half:]):.3f}; {time.time() - t0:.0f} s")


if __name__ == "__main__":
  app.run(main)
