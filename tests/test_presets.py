"""Every config preset builds; the GPU/TPU preset is a real ViT-L V-JEPA (checked abstractly)."""

import jax
import numpy as np
import pytest

from experiments.configs import pretrain as configs
from jepa_jax.train import pretrain as jepa


def _num_params(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("preset", ["debug", "image_debug", "cpu_default", "vitl_vjepa"])
def test_preset_builds_abstract_state(preset):
  cfg = configs.get_config(preset)
  models = jepa.make_models(cfg)
  maskers = jepa.make_maskers(cfg, models.grid_shape)
  example = jepa.dummy_batch(cfg, maskers, 1)
  state = jax.eval_shape(lambda k: jepa.init_state(models, cfg, k, example, cfg.total_steps),
                         jax.random.key(0))
  assert _num_params(state.target_params) == _num_params(state.params["encoder"])
  for m in maskers:
    assert 0 < m.n_ctx and 0 < m.n_tgt and m.n_ctx + m.n_tgt <= np.prod(models.grid_shape)


def test_vitl_preset_matches_published_sizes():
  cfg = configs.get_config("vitl_vjepa")
  models = jepa.make_models(cfg)
  assert models.grid_shape == (8, 14, 14)  # 16x224x224 clips, 2x16x16 tubelets
  enc = models.encoder
  assert (enc.width, enc.depth, enc.num_heads) == (1024, 24, 16)
  assert enc.scan and enc.remat
  params = jax.eval_shape(enc.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 16, 224, 224, 3), np.uint8))
  # ViT-L/16 has ~303M parameters; the 3-D tubelet embedding adds 768x1024 more.
  assert 300e6 < _num_params(params) < 310e6
  leaf = jax.tree.leaves(params)[0]
  assert leaf.dtype == np.float32  # bf16 compute, fp32 parameters


def test_unknown_preset_names_the_choices():
  with pytest.raises(ValueError, match="debug, cpu_default"):
    configs.get_config("nope")
