"""The trained world model of issue 3 behind the planning protocol (see /work/notes/issue3.md)."""

from __future__ import annotations

from jepa_jax.envs import two_rooms


def load(workdir: str, env_cfg: two_rooms.TwoRoomsConfig):
  from jepa_jax.eval.world_models import WorldModel
  from jepa_jax.world_model import load_world_model
  wm, params = load_world_model(workdir)
  if wm.stride != 1:
    raise ValueError(f'world model in {workdir} has predictor.stride={wm.stride}: one step consumes '
                     f'{wm.stride} actions; closed-loop planning needs stride 1 (or set '
                     'control.action_repeat to a multiple of the stride and adapt the step)')
  del env_cfg  # the checkpoint's own config rebuilds the modules
  return WorldModel('learned', wm.encode, lambda p, z, a: wm.step(p, z, a), params)
