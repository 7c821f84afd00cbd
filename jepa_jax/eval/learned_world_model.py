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
import jax.numpy as jnp
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


def _load_one(workdir: str):
  from jepa_jax.world_model import load_world_model
  wm, params = load_world_model(workdir)
  if wm.stride != 1:
    raise ValueError(f'world model in {workdir} has predictor.stride={wm.stride}: one step consumes '
                     f'{wm.stride} actions; closed-loop planning needs stride 1 (or set '
                     'control.action_repeat to a multiple of the stride and adapt the step)')
  return wm, params


def ensemble(members, obs_shape):
  """K (encode, step) members -> one (encode, step) on their latents concatenated along the
  feature axis: z (N, D_1 + ... + D_K). Every member sees the same observations and actions and
  moves its own slice, so a goal energy on the concatenation sums the members' energies: a plan
  is cheap only where every member agrees it reaches the goal (one member's error, e.g. passing
  through a wall, is paid for by the others). Members need the same token count N."""
  dummy = jax.ShapeDtypeStruct(obs_shape, np.uint8)
  shapes = [jax.eval_shape(enc, p, dummy).shape for (enc, _, p) in members]
  if len({s[:-1] for s in shapes}) != 1:
    raise ValueError(f'world_model.workdir ensemble members have latents {shapes}: they must '
                     'agree on every axis but the last (same encoder grid)')
  split_at = np.cumsum([s[-1] for s in shapes])[:-1].tolist()

  def encode(params, obs):
    return jnp.concatenate([enc(p, obs) for (enc, _, _), p in zip(members, params)], -1)

  def step(params, z, a):
    parts = jnp.split(z, split_at, axis=-1)
    return jnp.concatenate([st(p, zk, a) for (_, st, _), p, zk in zip(members, params, parts)], -1)

  return encode, step, tuple(p for (_, _, p) in members)


def load(workdir: str, env_cfg: two_rooms.TwoRoomsConfig, probe_cfg=None):
  """`workdir`: one training run, or several separated by commas (an ensemble, see `ensemble`)."""
  from jepa_jax.eval.world_models import WorldModel
  dirs = [d.strip() for d in workdir.split(',') if d.strip()]
  wants_probe = probe_cfg is not None and int(probe_cfg.get('frames', 0)) > 0
  if len(dirs) > 1:
    if wants_probe:
      raise ValueError('world_model.probe.frames > 0 fits a probe on one model; with an ensemble '
                       f'(world_model.workdir={workdir!r}) set world_model.probe.frames=0')
    members = []
    for d in dirs:
      wm, params = _load_one(d)
      members.append((wm.encode, wm.step, params))
    obs_shape = jax.eval_shape(lambda: two_rooms.render_pos(
        jnp.zeros(2), two_rooms.sample_layout(jax.random.key(0), env_cfg), env_cfg)).shape
    encode, step, params = ensemble(members, obs_shape)
    return WorldModel(f'learned-ensemble-{len(dirs)}', encode, step, params)
  wm, params = _load_one(dirs[0] if dirs else workdir)
  project = None
  if wants_probe:
    project = fit_probe(wm, params, env_cfg, int(probe_cfg['frames']), int(probe_cfg['steps']),
                        int(probe_cfg.get('seed', 0)))
  name = 'learned' if project is None else 'learned+probe-metric'
  return WorldModel(name, wm.encode, lambda p, z, a: wm.step(p, z, a), params, project)
