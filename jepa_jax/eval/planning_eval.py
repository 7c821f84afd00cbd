"""Planning evaluation on Two Rooms: N start/goal pairs in opposite rooms, closed-loop MPC with a
world model, success judged by the environment after each episode.

Episodes run as a jitted vmap over a chunk; chunks are looped with a tqdm bar (ETA). The task set
depends only on (seed, layout kind, N), so every planner sees the same episodes.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from jepa_jax.envs import two_rooms
from jepa_jax.eval import planning_tasks as T
from jepa_jax.eval.stats import wilson_interval
from jepa_jax.eval.world_models import WorldModel
from jepa_jax.planning import costs
from jepa_jax.planning.closed_loop import (ClosedLoopConfig, make_closed_loop, planning_step,
                                           repeated_step)
from jepa_jax.planning.factory import PLANNERS, make_planner
from jepa_jax.planning.goal_rollout import corrected_cost, with_goal_rollout
from jepa_jax.planning.hierarchical import HierarchyConfig, make_hierarchical_planner
from jepa_jax.planning.move_memory import (Remembered, VisitedPenalty, empty_memory,
                                           with_blocked_move_penalty)
from jepa_jax.planning.online_adapt import AdaptConfig, make_adapter
from jepa_jax.planning.rollout import unroll

LAYOUTS = ('fixed', 'random')


@dataclasses.dataclass
class EvalResult:
  planner: str
  layout: str
  success_N: np.ndarray
  final_dist_N: np.ndarray
  pos_NT2: np.ndarray
  goal_N2: np.ndarray
  layout_N2: np.ndarray
  plan_cost_NR: np.ndarray
  compile_s: float
  run_s: float  # all chunks, after compilation
  replan_latency_s: float  # one replan for one episode (jitted, median of repeats)
  num_replans: int
  threshold: float

  @property
  def n(self) -> int:
    return int(self.success_N.shape[0])

  @property
  def rate(self) -> float:
    return float(self.success_N.mean())

  @property
  def ci(self) -> tuple[float, float]:
    return wilson_interval(int(self.success_N.sum()), self.n)

  @property
  def per_episode_s(self) -> float:
    return self.run_s / self.n

  def summary(self) -> dict[str, Any]:
    lo, hi = self.ci
    return dict(planner=self.planner, layout=self.layout, episodes=self.n,
                successes=int(self.success_N.sum()), success_rate=self.rate, ci95=(lo, hi),
                pldm_success_rate=float((self.final_dist_N < T.PLDM_THRESHOLD).mean()),
                median_final_dist=float(np.median(self.final_dist_N)),
                replan_latency_ms=1e3 * self.replan_latency_s,
                batched_replan_ms=1e3 * self.run_s / (self.n * self.num_replans),
                per_episode_s=self.per_episode_s, run_s=self.run_s, compile_s=self.compile_s)


def env_config(cfg, layout: str) -> two_rooms.TwoRoomsConfig:
  if layout not in LAYOUTS:
    raise ValueError(f'layout {layout!r} unknown; choose from {LAYOUTS} (config key: layouts)')
  return two_rooms.TwoRoomsConfig(**dict(cfg.env), fixed_layout=(layout == 'fixed'))


def blocked_section(cfg):
  """`cost.blocked` (weight, radius, action_radius, slots) or None when its weight is 0."""
  blk = cfg.cost.get('blocked', None)
  if blk is None or not float(blk.get('weight', 0.0)):
    return None
  return _checked_memory(blk)


def memory_section(cfg):
  """`cost.blocked`, whose `slots` and `radius` size the closed loop's memory, when either charge
  that reads the memory is on (`cost.blocked` or `cost.visited`), else None."""
  blk = blocked_section(cfg)
  if blk is not None or visited_section(cfg) is None:
    return blk
  return _checked_memory(cfg.cost.blocked)


def _checked_memory(blk):
  for key in ('radius', 'action_radius'):
    if not float(blk.get(key, 0.0)) > 0:
      raise ValueError(f'cost.blocked.{key} must be > 0 (radius: RMS latent difference; '
                       f'action_radius: action units), got {blk.get(key)!r}')
  slots = blk.get('slots', 0)
  if not isinstance(slots, int) or slots < 0:
    raise ValueError(f'cost.blocked.slots must be an int >= 0 (0: every replan of the episode), '
                     f'got {slots!r}')
  return blk


def visited_section(cfg) -> VisitedPenalty | None:
  """`cost.visited` (weight, radius, gate) or None when its weight is 0. It reads the memory whose
  size `cost.blocked.slots` sets (kept whenever either charge is on)."""
  vis = cfg.cost.get('visited', None)
  if vis is None:
    return None
  unknown = sorted(set(vis.keys()) - {'weight', 'radius', 'gate'})
  if unknown:
    raise ValueError(f"cost.visited: unknown keys {unknown}; choose from ['gate', 'radius', "
                     "'weight']")
  if not float(vis.get('weight', 0.0)):
    return None
  gate = vis.get('gate', (0.8, 0.9))
  try:
    gate = tuple(float(g) for g in gate)
    if len(gate) != 2:
      raise ValueError
  except (TypeError, ValueError):
    raise ValueError(f'cost.visited.gate must be (near, far), two RMS latent differences to the '
                     f'goal, e.g. (0.8, 0.9), got {gate!r}') from None
  try:
    return VisitedPenalty(float(vis.weight), float(vis.get('radius', 0.45)), gate)
  except ValueError as e:
    raise ValueError(f'cost.visited: {e}') from None


def adapt_config(cfg) -> AdaptConfig | None:
  """`adapt` (steps, learning_rate, clip, anchor, params_key; slots goes to the closed loop) or
  None when steps is 0."""
  sec = cfg.get('adapt', None)
  if sec is None:
    return None
  fields = [f.name for f in dataclasses.fields(AdaptConfig)]
  unknown = sorted(set(sec.keys()) - set(fields) - {'slots'})
  if unknown:
    raise ValueError(f'adapt: unknown keys {unknown}; choose from {fields + ["slots"]}')
  if not int(sec.get('steps', 0)):
    return None
  slots = sec.get('slots', 0)
  if not isinstance(slots, int) or slots < 0:
    raise ValueError(f'adapt.slots must be an int >= 0 (0: every block of the episode), got '
                     f'{slots!r}')
  return AdaptConfig(**{k: sec[k] for k in fields if k in sec})


def control_config(cfg) -> ClosedLoopConfig:
  c = cfg.control
  cl = ClosedLoopConfig(episode_steps=c.episode_steps, replan_every=c.replan_every,
                        horizon=cfg.planner.horizon, action_dim=2, action_repeat=c.action_repeat,
                        action_max_norm=c.action_max_norm, shift_fill=c.shift_fill,
                        cold_restart=c.get('cold_restart', False))
  if adapt_config(cfg) is not None:
    cl = dataclasses.replace(cl, adapt_slots=int(cfg.adapt.get('slots', 0)) or cl.num_replans)
  blk = memory_section(cfg)
  if blk is None:
    return cl
  return dataclasses.replace(cl, move_memory=int(blk.get('slots', 0)) or cl.num_replans,
                             move_scale=float(blk.radius))


@functools.lru_cache(maxsize=4)
def _goal_distance(workdir: str, saved_at: float):
  """Loaded once per workdir and save time (a distance re-fitted into the same workdir reloads).
  Its params become constants of the jitted planner: ~0.4 M numbers; MPPI still compiled in
  4.1 s, as without it (BUILD_NOTES session 9)."""
  del saved_at
  from jepa_jax.train import goal_distance  # lazy: only runs that use one load it
  return goal_distance.load(workdir)


def distance_term(cfg):
  """(weight, cost) of the learned goal distance in `cost.distance`, or None when its weight is 0.
  The distance must have been fitted on this world model's latents."""
  dist = cfg.cost.get('distance', None)
  if dist is None or not float(dist.get('weight', 0.0)):
    return None
  if not dist.get('workdir', ''):
    raise ValueError('cost.distance.weight > 0 needs cost.distance.workdir (an '
                     '`experiments.goal_distance` run on this world model)')
  floor = float(dist.get('floor', 0.0))
  if not floor >= 0:
    raise ValueError(f'cost.distance.floor must be >= 0 (steps below which the distance is not '
                     f'charged; 0: all of it), got {floor}')
  from jepa_jax.train.goal_distance import META  # lazy: only runs that use one load it
  meta_path = os.path.join(dist.workdir, META)
  distance_fn, meta = _goal_distance(dist.workdir, os.path.getmtime(meta_path)
                                     if os.path.exists(meta_path) else 0.0)
  wm_dir = cfg.world_model.get('workdir', '')
  fitted_on = meta.get('world_model_workdir', '')
  if fitted_on and os.path.abspath(fitted_on) != os.path.abspath(wm_dir):
    raise ValueError(f'cost.distance.workdir={dist.workdir!r} was fitted on the latents of '
                     f'{fitted_on!r}, but planning uses world_model.workdir={wm_dir!r}; fit a '
                     'distance on this world model (experiments.goal_distance '
                     '--config.world_model_workdir=...) or plan with that model')
  return float(dist.weight), costs.learned_goal_distance(
      distance_fn, reduction=dist.get('reduction', 'final'), floor=floor)


def cost_fn(cfg, project=None, distance=None):
  """Goal energy over the plan (reduction/discount) + final_weight * goal energy of the last state
  + action_weight * sum of squared plan actions (a guardrail: near the goal, where a learned goal
  energy stops resolving small offsets, moving costs more than it can gain).

  With `project` (z -> metric space, e.g. the world model's position probe) the energy is measured
  between projected latents. With `cost.pyramid.sigmas` (token latents on a grid) the goal energy
  is also measured between Gaussian-blurred latent maps, one term per sigma (costs.token_grid_blur).
  """
  c = cfg.cost
  goal_terms = [(1.0, costs.goal_energy(metric=c.metric, reduction=c.reduction,
                                        discount=c.discount, average=c.average))]
  if c.final_weight:
    goal_terms.append((float(c.final_weight),
                       costs.goal_energy(metric=c.metric, reduction='final', average=c.average)))
  goal = goal_terms[0][1] if len(goal_terms) == 1 else costs.weighted_sum(goal_terms)
  pyramid = c.get('pyramid', {})
  sigmas, weights = tuple(pyramid.get('sigmas', ())), tuple(pyramid.get('weights', ()))
  if len(sigmas) != len(weights):
    raise ValueError(f'cost.pyramid: sigmas {sigmas} and weights {weights} must have the same '
                     'length (one weight per blur level)')
  if sigmas and project is not None:
    raise ValueError('cost.pyramid blurs token latents on their grid; it cannot be combined with '
                     'the position-probe metric (world_model.probe.frames > 0): set one of them off')
  terms = [(1.0, goal if project is None else costs.project_cost(goal, project))]
  terms += [(float(w), costs.project_cost(goal, costs.token_grid_blur(float(s))))
            for s, w in zip(sigmas, weights)]
  if c.get('action_weight', 0.0):
    terms.append((float(c.action_weight), costs.action_energy()))
  if distance is not None:
    terms.append(distance)
  total = terms[0][1] if len(terms) == 1 else costs.weighted_sum(terms)
  blk = memory_section(cfg)
  if blk is None:
    return total
  return with_blocked_move_penalty(total, float(blk.weight), float(blk.radius),
                                   float(blk.action_radius), visited_section(cfg))


def config_planner(cfg, name: str, planner_cfg, step, cost):
  """Planner `name` with the section `planner_cfg` (a `planner` config), on the drift-corrected
  cost when `cost.goal_rollout` is on."""
  if cfg.cost.get('goal_rollout', False):  # compare with the goal's own zero-action rollout
    return with_goal_rollout(lambda st, co: make_planner(name, planner_cfg, st, co), step, cost)
  return make_planner(name, planner_cfg, step, cost)


def unrolled_cost(cfg, cost, step, params, z_traj, actions_HA, z_goal):
  """What a planner built by `config_planner` charges for the unrolled plan `z_traj` (H+1
  latents) to the encoded goal: drift-corrected when `cost.goal_rollout` is on."""
  if cfg.cost.get('goal_rollout', False):
    return corrected_cost(step, cost, params, z_traj, actions_HA, z_goal)
  return cost(z_traj, actions_HA, z_goal)


def _two_scale_cost(cfg, cost, step_low, step_high):
  """The 'tail' selection's cost: a fine plan's goal cost plus that of the high-level tail
  unrolled from the fine plan's end (the fine plan is unrolled once for both)."""
  def two_scale_cost(params, z0, fine_HA, tail_HA, z_goal):
    fine = unroll(step_low, params, z0, fine_HA)
    tail = unroll(step_high, params, jax.tree.map(lambda z: z[-1], fine), tail_HA)
    return (unrolled_cost(cfg, cost, step_low, params, fine, fine_HA, z_goal)
            + unrolled_cost(cfg, cost, step_high, params, tail, tail_HA, z_goal))
  return two_scale_cost


def _hierarchical(cfg, hier, wm: WorldModel, cl: ClosedLoopConfig, plan_low, step_low, cost):
  """The evaluated planner becomes the fine level under a coarse `hierarchy.planner` whose macro
  actions are held `hierarchy.action_repeat` env steps (planning/hierarchical.py)."""
  if hier.planner not in PLANNERS:
    raise ValueError(f'hierarchy.planner={hier.planner!r}: choose from {PLANNERS}')
  high_cfg = ml_collections.ConfigDict(cfg.planner.to_dict())
  high_cfg.horizon = int(hier.horizon)
  for section, values in hier.get('overrides', {}).items():
    if section not in high_cfg:
      raise ValueError(f'hierarchy.overrides.{section}: no such planner section; choose from '
                       f'{PLANNERS}')
    high_cfg[section].update(values)
  repeat = int(hier.action_repeat)
  if repeat <= 0:
    raise ValueError(f'hierarchy.action_repeat must be a positive int, got {hier.action_repeat!r}')
  if int(hier.subgoal_after) * repeat > cl.horizon * cl.action_repeat:
    raise ValueError(f'hierarchy: the subgoal lies subgoal_after * action_repeat = '
                     f'{int(hier.subgoal_after) * repeat} env steps ahead, beyond the fine '
                     f'planner\'s lookahead planner.horizon * control.action_repeat = '
                     f'{cl.horizon * cl.action_repeat}; the fine level could not reach it. Lower '
                     'hierarchy.subgoal_after or hierarchy.action_repeat')
  step_high = repeated_step(wm.step, repeat, cl.action_max_norm)
  plan_high = config_planner(cfg, hier.planner, high_cfg, step_high, cost)
  hcfg = HierarchyConfig(horizon=int(hier.horizon), subgoal_after=int(hier.subgoal_after),
                         cold_restart=bool(cl.cold_restart))
  select = hier.get('select', 'subgoal')
  if select not in ('subgoal', 'tail'):
    raise ValueError(f"hierarchy.select={select!r}: choose 'subgoal' (the fine level aims at "
                     "the subgoal) or 'tail' (goal- and subgoal-aimed fine plans, the one whose "
                     "plan plus the high-level tail costs less to the goal is kept)")
  two_scale_cost = (_two_scale_cost(cfg, cost, step_low, step_high) if select == 'tail'
                    else None)
  return make_hierarchical_planner(plan_high, step_high, plan_low, hcfg, cl.action_dim,
                                   two_scale_cost=two_scale_cost)


def step_and_cost(cfg, wm: WorldModel, cl: ClosedLoopConfig):
  """(the planning step: one plan action as the closed loop executes it, the planning cost)"""
  return planning_step(wm.step, cl), cost_fn(cfg, wm.project, distance_term(cfg))


def planner_label(cfg, planner: str) -> str:
  hier = cfg.get('hierarchy', None)
  return f'{planner}+hier' if hier is not None and hier.enabled else planner


def build(cfg, wm: WorldModel, planner: str, layout: str):
  """(plan, run_episode, env_cfg, control_cfg). run_episode(params, key, state0, goal_obs)."""
  env_cfg, cl = env_config(cfg, layout), control_config(cfg)
  if cl.action_max_norm is not None and cl.action_max_norm > env_cfg.max_action_norm:
    raise ValueError(f'control.action_max_norm={cl.action_max_norm} exceeds the environment\'s '
                     f'max_action_norm={env_cfg.max_action_norm}: the env would clip differently '
                     'from the model; lower control.action_max_norm')
  step, cost = step_and_cost(cfg, wm, cl)
  plan = config_planner(cfg, planner, cfg.planner, step, cost)
  hier = cfg.get('hierarchy', None)
  if hier is not None and hier.enabled:
    plan = _hierarchical(cfg, hier, wm, cl, plan, step, cost)
    cl = dataclasses.replace(cl, cold_restart=False)  # the fine level restarts inside the planner
  adapt = adapt_config(cfg)
  if adapt is not None and (not wm.name.startswith('learned') or 'ensemble' in wm.name):
    raise ValueError(f'adapt.steps > 0 adapts a learned world model\'s predictor; the '
                     f'{wm.name!r} model has none to adapt: set adapt.steps=0 or '
                     'world_model.kind=learned with one workdir')
  run = make_closed_loop(wm.encode, plan, lambda s, a: two_rooms.step(s, a, env_cfg),
                         lambda s: two_rooms.render(s, env_cfg), cl, predict=step,
                         adapt=None if adapt is None else make_adapter(step, adapt))
  return plan, run, env_cfg, cl


def tasks_for(cfg, layout: str, n: int) -> T.Task:
  key = jax.random.fold_in(jax.random.key(cfg.seed), LAYOUTS.index(layout))
  return T.sample_tasks(key, n, env_config(cfg, layout), cfg.task.margin)


def _time_one_replan(plan, wm: WorldModel, task: T.Task, cl: ClosedLoopConfig,
                     repeats: int = 5) -> float:
  """Seconds for one plan call (the search alone: with `adapt`, the model's update before each
  plan is not in it; the per-episode and batched figures include it)."""
  z0 = wm.encode(wm.params, task.goal_obs)  # any latent of the right shape
  goal = z0
  if cl.move_memory:  # a full memory: what a late replan of an episode costs
    starts, actions_MA, _, _ = empty_memory(z0, cl.move_memory, cl.action_dim)
    full_M = jnp.ones((cl.move_memory,), jnp.float32)
    goal = Remembered(z0, starts, actions_MA, full_M, full_M)
  f = jax.jit(plan)
  args = (wm.params, z0, goal, jax.random.key(0),
          jnp.zeros((cl.horizon, cl.action_dim), jnp.float32))
  jax.block_until_ready(f(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def evaluate(cfg, wm: WorldModel, planner: str, layout: str, progress: bool = True) -> EvalResult:
  n, chunk = int(cfg.episodes), int(min(cfg.chunk, cfg.episodes))
  if n <= 0 or chunk <= 0:
    raise ValueError(f'episodes={cfg.episodes} and chunk={cfg.chunk} must be > 0')
  plan, run, env_cfg, cl = build(cfg, wm, planner, layout)
  tasks = tasks_for(cfg, layout, n)
  num_chunks = -(-n // chunk)
  pad = num_chunks * chunk - n  # the last chunk is padded with copies of episode 0, then dropped
  take = lambda x: jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])]) if pad else x
  tasks_p = jax.tree.map(take, tasks)
  ep_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(cfg.seed + 1), i))(
      jnp.arange(n + pad))

  def run_chunk(params, keys, state0, goal_obs):
    ep = jax.vmap(run, in_axes=(None, 0, 0, 0))(params, keys, state0, goal_obs)
    return ep.states.pos, ep.plan_cost_R

  sl = lambda x, i: x[i * chunk:(i + 1) * chunk]
  args0 = (wm.params, sl(ep_keys, 0), jax.tree.map(lambda x: sl(x, 0), tasks_p.state0),
           sl(tasks_p.goal_obs, 0))
  t0 = time.perf_counter()
  compiled = jax.jit(run_chunk).lower(*args0).compile()
  compile_s = time.perf_counter() - t0

  pos, pcost = [], []
  t0 = time.perf_counter()
  label = planner_label(cfg, planner)
  bar = tqdm(range(num_chunks), desc=f'{label}/{layout}', unit='chunk', disable=not progress,
             postfix=dict(eps=chunk))
  for i in bar:
    p, c = compiled(wm.params, sl(ep_keys, i), jax.tree.map(lambda x: sl(x, i), tasks_p.state0),
                    sl(tasks_p.goal_obs, i))
    pos.append(np.asarray(p))
    pcost.append(np.asarray(c))
    done = np.concatenate(pos)[:n, -1]
    dist = np.linalg.norm(done - np.asarray(tasks.goal_pos[:len(done)]), axis=-1)
    bar.set_postfix(success=f'{float(np.mean(dist < cfg.task.threshold)):.3f}')
  run_s = time.perf_counter() - t0

  pos_NT2 = np.concatenate(pos)[:n]
  goal_N2 = np.asarray(tasks.goal_pos)
  final_dist = np.linalg.norm(pos_NT2[:, -1] - goal_N2, axis=-1)
  latency = _time_one_replan(plan, wm, jax.tree.map(lambda x: x[0], tasks), cl)
  return EvalResult(planner=label, layout=layout, success_N=final_dist < cfg.task.threshold,
                    final_dist_N=final_dist, pos_NT2=pos_NT2, goal_N2=goal_N2,
                    layout_N2=np.asarray(tasks.state0.layout), plan_cost_NR=np.concatenate(pcost)[:n],
                    compile_s=compile_s, run_s=run_s, replan_latency_s=latency,
                    num_replans=cl.num_replans, threshold=float(cfg.task.threshold))


def save_episodes(path: str, r: EvalResult, **extra) -> str:
  """Every episode of one evaluation in one .npz: trajectory (N, T+1, 2), goal, layout, start,
  success, final distance, the planner's cost per replan, plus `extra` per-episode arrays."""
  np.savez_compressed(path, pos_NT2=r.pos_NT2, goal_N2=r.goal_N2, layout_N2=r.layout_N2,
                      start_N2=r.pos_NT2[:, 0], success_N=r.success_N, final_dist_N=r.final_dist_N,
                      plan_cost_NR=r.plan_cost_NR, threshold=r.threshold,
                      **{k: np.asarray(v) for k, v in extra.items()})
  return path


def format_table(results: list[EvalResult]) -> str:
  head = (f"{'planner':<9} {'layout':<7} {'success':>8} {'95% CI (Wilson)':>17} {'<1.41px':>8} "
          f"{'med.dist':>8} {'replan ms':>9} {'batched ms':>10} {'s/episode':>9} {'total s':>8}")
  lines = [head, '-' * len(head)]
  for r in results:
    s = r.summary()
    lo, hi = s['ci95']
    lines.append(f"{r.planner:<9} {r.layout:<7} {s['successes']:>4}/{r.n:<3} "
                 f"[{100 * lo:5.1f}, {100 * hi:5.1f}] % {100 * s['pldm_success_rate']:7.1f}% "
                 f"{s['median_final_dist']:8.2f} {s['replan_latency_ms']:9.2f} "
                 f"{s['batched_replan_ms']:10.3f} {s['per_episode_s']:9.3f} {s['run_s']:8.1f}")
  return '\n'.join(lines)
