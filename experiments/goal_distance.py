r"""A goal-conditioned distance on a trained world model's latents, for planning (issue 4).

  python -m experiments.goal_distance --config.world_model_workdir=runs/wm --workdir=runs/dist
  python -m experiments.goal_distance --config=experiments/configs/goal_distance.py:debug \
      --config.world_model_workdir=/tmp/wm --workdir=/tmp/dist
  # then plan with it:
  python -m experiments.plan --config=experiments/configs/plan.py:cpu_learned \
      --config.cost.distance.workdir=runs/dist --config.cost.distance.weight=30 ...

Reward-free: walks in random layouts (most steered through the door) are encoded by the
frozen world-model encoder and a distance d(z, z_goal) in steps is fitted by goal-conditioned
TD (jepa_jax/train/goal_distance.py). Held-out check: how well it ranks random pairs of states
by their true shortest-path length (Spearman), beside the plain and blurred latent L2 energies.

Writes to --workdir: params/ and goal_distance.json (what `cost.distance.workdir` loads; the JSON
also holds the held-out figures), curves.png, maps.png (distance to a goal from every position).
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from jepa_jax.train.goal_distance_job import run

_CONFIGS = os.path.join(os.path.dirname(__file__), 'configs', 'goal_distance.py')
CONFIG = config_flags.DEFINE_config_file('config', f'{_CONFIGS}:cpu_default',
                                         'Config file and preset (path:preset).')
WORKDIR = flags.DEFINE_string('workdir', 'runs/goal_distance', 'Distance params, figures, plots.')
OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace a distance already in --workdir.')


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  try:
    run(CONFIG.value, WORKDIR.value, OVERWRITE.value)
  except FileExistsError as e:
    raise app.UsageError(str(e)) from None


if __name__ == '__main__':
  app.run(main)
