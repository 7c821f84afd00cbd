"""grain pipelines: source -> this process's shard -> masks -> batches (host-local numpy)."""

import grain
import numpy as np

from jepa_jax.masks import MultiBlockMasker


class AddMasks(grain.transforms.RandomMap):
  """Adds `masks`: one {'ctx', 'tgt'} index pair per masker (V-JEPA uses two mask views).
  grain hands each element its own deterministic rng, so masks are reproducible per index."""

  def __init__(self, maskers: list[MultiBlockMasker]):
    self.maskers = maskers

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    masks = []
    for masker in self.maskers:
      ctx, tgt = masker(rng)
      masks.append({"ctx": ctx, "tgt": tgt})
    return {"frames": element["frames"], "masks": masks}


def pretrain_dataset(source, maskers, batch_size: int, seed: int, process_index: int = 0,
                     process_count: int = 1, num_threads: int = 2,
                     prefetch: int = 4) -> grain.IterDataset:
  """Infinite, shuffled, host-local batches of `batch_size // process_count` elements.

  Each process reads a disjoint interleaved shard of the indices, so together the processes see
  the global batch; the iterator's state (for checkpoints) is small and per process.
  """
  if batch_size % process_count:
    raise ValueError(f"batch_size {batch_size} not divisible by {process_count} processes")
  ds = grain.MapDataset.source(source).shuffle(seed=seed)
  ds = ds[process_index::process_count].repeat(None)
  ds = ds.random_map(AddMasks(maskers), seed=seed + 1)
  ds = ds.batch(batch_size // process_count, drop_remainder=True)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                              prefetch_buffer_size=prefetch))
