r"""Write an offline Two Rooms random-walk dataset (sharded .npz + meta.json).

  python scripts/make_two_rooms_data.py --out=/data/two_rooms_fixed \
      --num_trajectories=100000 --length=17 --shard_size=2000
  python scripts/make_two_rooms_data.py --out=/data/two_rooms_random --random_layout

Read it back with ``jepa_jax.data.two_rooms_walks.TwoRoomsWindowSource(out, window)``.
Disk: ~8 KiB per uint8 frame (64x64x2), i.e. ~8.7 GB per million transitions at length 17.
"""

import time

from absl import app, flags
import jax
import tqdm

from jepa_jax.data import two_rooms_walks
from jepa_jax.envs import two_rooms

_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_NUM = flags.DEFINE_integer("num_trajectories", 10_000, "Number of trajectories.")
_LENGTH = flags.DEFINE_integer("length", 17, "Frames per trajectory (actions: length - 1).")
_SHARD = flags.DEFINE_integer("shard_size", 1000, "Trajectories per .npz shard.")
_GEN_BATCH = flags.DEFINE_integer("gen_batch", 256, "Trajectories generated per device call.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_RANDOM_LAYOUT = flags.DEFINE_bool("random_layout", False, "Sample wall/door per trajectory.")
_SIZE = flags.DEFINE_integer("size", 64, "Canvas size in px.")
_CROSS = flags.DEFINE_float("cross_wall_rate", 0.35, "Share of door-steered trajectories.")
_PUSH = flags.DEFINE_float("wall_push_rate", 0.35, "Share of trajectories pushing into the "
                           "middle wall away from the door (as experiments/configs/world_model.py).")
_EDGE = flags.DEFINE_float("push_door_edge_share", 0.0, "Share of the wall pushes aimed at the "
                           "wall just beside the door gap (0.5-4.5 px from its edge).")
_KAPPA = flags.DEFINE_float("heading_kappa", 4.0, "Von Mises concentration of heading noise.")
_OBS_DTYPE = flags.DEFINE_enum("obs_dtype", "uint8", ["uint8", "float16"], "Stored obs dtype.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Overwrite an existing dataset.")


def main(argv):
    del argv
    env = two_rooms.TwoRoomsConfig(size=_SIZE.value, fixed_layout=not _RANDOM_LAYOUT.value)
    cfg = two_rooms_walks.WalksConfig(env=env, heading_kappa=_KAPPA.value,
                                      cross_wall_rate=_CROSS.value, wall_push_rate=_PUSH.value,
                                      push_door_edge_share=_EDGE.value, obs_dtype=_OBS_DTYPE.value)
    n, t = _NUM.value, _LENGTH.value
    print(f"Writing {n} trajectories x {t} frames ({n * (t - 1):,} transitions) to {_OUT.value}")
    start = time.time()
    with tqdm.tqdm(total=n, unit="traj", smoothing=0.1) as bar:  # tqdm shows rate and ETA
        meta = two_rooms_walks.write_dataset(
            _OUT.value, jax.random.key(_SEED.value), cfg, n, t, shard_size=_SHARD.value,
            gen_batch=_GEN_BATCH.value, overwrite=_OVERWRITE.value, progress=bar.update)
    print(f"Done in {time.time() - start:.1f}s: {len(meta['shards'])} shards, "
          f"{meta['num_transitions']:,} transitions.")


if __name__ == "__main__":
    app.run(main)
