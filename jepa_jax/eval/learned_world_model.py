"""The trained world model behind the planning protocol (BUILD_NOTES.md, "World model").

Optional position-probe goal metric (`world_model.probe.frames > 0`): the token-map latent of the
session-3 cpu_default checkpoint (4x4x16 map) is *local* — its L2 distance to a goal latent grows
over the first ~8 px and is flat (~17-19) beyond, so a latent goal energy ranks nothing far from
the goal (BUILD_NOTES.md, planning notes, "Learned world model"). A small MLP probe z -> (x, y),
fitted at load time on encoded frames of random layouts and random free positions (SUPERVISED:
it uses the true positions of those frames; the planner itself still sees images only), gives a
metric on the latent: cost = |probe(z) - probe(z_goal)|.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from jepa_jax.envs import two_rooms


def fit_probe(wm, params, env_cfg: two_rooms.TwoRoomsConfig, frames: int, steps: int, seed: int = 0):
  """project(z) -> (x, y) px: an MLP probe fitted on `frames` encoded random-layout frames."""
  from jepa_jax.eval.rollout_probe import fit_position_probe
  cfg = two_rooms.TwoRoomsConfig(**{**env_cfg.__dict__, 'fixed_layout': False})

  def sample(key):
    kl, kp = jax.random.split(key)
    lay = two_rooms.sample_layout(kl, cfg)
    pos = two_rooms.sample_free_pos(kp, lay, cfg)
    return pos, two_rooms.render_pos(pos, lay, cfg)

  keys = jax.random.split(jax.random.key(10_007 + seed), frames)
  pos, obs = jax.jit(jax.vmap(sample))(keys)
  z = jax.jit(lambda o: wm.encode(params, o))(obs)
  t0 = time.perf_counter()
  probe = fit_position_probe(np.asarray(z), np.asarray(pos), steps=steps, seed=seed)
  project = probe.pure()
  err = np.linalg.norm(np.asarray(jax.jit(project)(z)) - np.asarray(pos), axis=-1)
  print(f'position probe for the goal metric: {frames} frames, {steps} steps, '
        f'{time.perf_counter() - t0:.1f} s, train error median {np.median(err):.2f} px', flush=True)
  return project


def load(workdir: str, env_cfg: two_rooms.TwoRoomsConfig, probe_cfg=None):
  from jepa_jax.eval.world_models import WorldModel
  from jepa_jax.world_model import load_world_model
  wm, params = load_world_model(workdir)
  if wm.stride != 1:
    raise ValueError(f'world model in {workdir} has predictor.stride={wm.stride}: one step consumes '
                     f'{wm.stride} actions; closed-loop planning needs stride 1 (or set '
                     'control.action_repeat to a multiple of the stride and adapt the step)')
  project = None
  if probe_cfg is not None and int(probe_cfg.get('frames', 0)) > 0:
    project = fit_probe(wm, params, env_cfg, int(probe_cfg['frames']), int(probe_cfg['steps']),
                        int(probe_cfg.get('seed', 0)))
  name = 'learned' if project is None else 'learned+probe-metric'
  return WorldModel(name, wm.encode, lambda p, z, a: wm.step(p, z, a), params, project)
