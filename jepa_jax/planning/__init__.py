"""Planning in latent space: costs, rollouts and planners built on the world-model protocol.

Every planner is built as `make_<name>_planner(step_fn, cost_fn, cfg)` and returns
`plan(params, z0, z_goal, key, init_plan_HA) -> (actions_HA, info)`, pure and jittable;
a batch of episodes is `jax.vmap(plan, in_axes=(None, 0, 0, 0, 0))`.
"""

from jepa_jax.planning.bounds import Bound
from jepa_jax.planning.cem import CEMConfig, CEMResult, cem_search, make_cem_planner
from jepa_jax.planning.costs import (action_bound_penalty, action_energy, ball_penalty, box_penalty,
                                     goal_energy, keep_out, quadratic_goal_cost, smoothness_penalty,
                                     weighted_sum)
from jepa_jax.planning.goal_rollout import goal_rollout_cost, with_goal_rollout
from jepa_jax.planning.gradient_mpc import (GradientMPCConfig, descend, make_gradient_planner,
                                            make_optimizer)
from jepa_jax.planning.hybrid import HybridConfig, make_hybrid_planner
from jepa_jax.planning.mppi import MPPIConfig, make_mppi_planner
from jepa_jax.planning.rollout import finite_or_inf, shift_plan, trajectory_cost, unroll
from jepa_jax.planning.closed_loop import (ClosedLoopConfig, Episode, clip_norm, clipped_step,
                                           make_closed_loop, planning_step)
from jepa_jax.planning.factory import PLANNERS, make_planner, planner_config
from jepa_jax.planning.online_adapt import AdaptConfig, make_adapter
from jepa_jax.planning.move_memory import (Remembered, VisitedPenalty, blocked_move_penalty,
                                           move_shortfall, visited_penalty,
                                           with_blocked_move_penalty)
