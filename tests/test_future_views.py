"""Loss options in the real train step: past -> future mask views with per-position VICReg,
VICReg on tube views (loss.vc_views), focal token weighting (loss.hard_weight)."""

import jax
import ml_collections
import numpy as np
import pytest

from conftest import debug_config, fixed_batch
from jepa_jax.train import pretrain as jepa


def _future_config(var_weight, cov_weight):
  cfg = debug_config("debug")   # token grid (2, 4, 4): one past and one future time slice
  cfg.masks = [ml_collections.ConfigDict(dict(num_blocks=0, spatial_scale=(0.15, 0.15),
                                              context_frames=0.5))]
  cfg.loss.update(var_weight=var_weight, cov_weight=cov_weight)
  return cfg


def _loss_and_metrics(cfg):
  task, models = jepa.make_task(cfg)
  maskers = jepa.make_maskers(cfg, models.grid_shape)
  batch = fixed_batch(cfg, maskers, cfg.batch_size)
  state = task.init(jax.random.key(0))
  _, metrics = jax.jit(task.train_step)(state, batch)
  return jax.device_get(metrics)


def test_regulariser_adds_weighted_terms_to_the_loss():
  plain = _loss_and_metrics(_future_config(0.0, 0.0))
  reg = _loss_and_metrics(_future_config(2.0, 0.5))
  assert "reg/var_view0" not in plain
  assert 0.0 < reg["reg/var_view0"] <= 1.0 and reg["reg/cov_view0"] >= 0.0
  # Same init and batch: the prediction term is unchanged and the total adds 2*var + 0.5*cov.
  np.testing.assert_allclose(reg["loss_view0"], plain["loss_view0"], rtol=1e-6)
  np.testing.assert_allclose(
      reg["loss"], plain["loss"] + 2.0 * reg["reg/var_view0"] + 0.5 * reg["reg/cov_view0"],
      rtol=1e-5)
  assert "target/content_std" in reg


def test_regulariser_without_a_future_view_is_a_clear_error():
  cfg = debug_config("debug")
  cfg.loss.var_weight = 1.0
  with pytest.raises(ValueError, match="context_frames.*vc_views='all'"):
    jepa.make_train_step(jepa.make_models(cfg), cfg, 10)
  cfg.loss.vc_views = "every"
  with pytest.raises(ValueError, match="loss.vc_views='every'"):
    jepa.make_train_step(jepa.make_models(cfg), cfg, 10)


def test_tube_views_are_regularised_by_content_with_vc_views_all():
  def config(var_weight, cov_weight):
    cfg = debug_config("debug")
    cfg.masks = [ml_collections.ConfigDict(m) for m in (
        dict(num_blocks=2, spatial_scale=(0.3, 0.3), aspect=(0.75, 1.5)),   # tube view
        dict(num_blocks=0, spatial_scale=(0.15, 0.15), context_frames=0.5))]  # future view
    cfg.loss.update(var_weight=var_weight, cov_weight=cov_weight, vc_views="all")
    return cfg

  plain = _loss_and_metrics(config(0.0, 0.0))
  reg = _loss_and_metrics(config(2.0, 0.5))
  assert {"reg/var_view0", "reg/cov_view0", "reg/var_view1", "reg/cov_view1"} <= set(reg)
  assert 0.0 < reg["reg/var_view0"] <= 1.0 and reg["reg/cov_view0"] >= 0.0
  np.testing.assert_allclose([reg["loss_view0"], reg["loss_view1"]],
                             [plain["loss_view0"], plain["loss_view1"]], rtol=1e-6)
  # Weighted terms averaged over the two regularised views.
  extra = (2.0 * (reg["reg/var_view0"] + reg["reg/var_view1"]) +
           0.5 * (reg["reg/cov_view0"] + reg["reg/cov_view1"])) / 2
  np.testing.assert_allclose(reg["loss"], plain["loss"] + extra, rtol=1e-5)


def test_focal_weighting_changes_the_objective_not_the_reported_view_losses():
  plain = _loss_and_metrics(debug_config("debug"))
  cfg = debug_config("debug")
  cfg.loss.hard_weight = 2.0
  focal = _loss_and_metrics(cfg)
  # Same init and batch: the per-view losses are the plain means; the objective is weighted,
  # and with unnormalised weights (mean(e^a) / mean(e)^a >= 1) it is larger.
  np.testing.assert_allclose(focal["loss_view0"], plain["loss_view0"], rtol=1e-6)
  assert focal["loss"] > plain["loss"]
  cfg.loss.hard_weight = -1.0
  with pytest.raises(ValueError, match="config.loss.hard_weight=-1.0"):
    jepa.make_train_step(jepa.make_models(cfg), cfg, 10)
