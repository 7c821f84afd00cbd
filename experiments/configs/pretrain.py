"""I-JEPA / V-JEPA pretraining configs. Use as `--config=experiments/configs/pretrain.py:PRESET`.

Presets:
  debug       seconds; tiny model and data, for tests and smoke runs.
  cpu_default the README main job: a V-JEPA on procedural physics videos; training 12.8 min on 2
              CPU cores, 23.5 min with both probes (BUILD_NOTES session 17).
  cpu_future  cpu_default with a past -> future mask view and per-position VICReg.
  cpu_content_future
              cpu_default with the past -> future view, targets standardised per token position
              over the batch instead of VICReg (measured: no better, BUILD_NOTES session 10).
  cpu_small_tube / cpu_small_future / cpu_small_content
              32x32 8-frame videos, 2x4x4 tubelets (small_physics); V-JEPA tube masks / past ->
              future view + per-position VICReg / tube masks with position-standardised targets.
  cpu_two_rooms V-JEPA on Two Rooms walk videos: the frozen encoder of the two-stage world model.
  image_debug I-JEPA (2-D masks, smooth-L1) on single frames, tiny.
  vitl_vjepa  ViT-L/16 V-JEPA (published recipe sizes) for a GPU/TPU mesh; bf16, scan, remat, fsdp.
"""

import ml_collections

VJEPA_MASKS = (
    dict(num_blocks=8, spatial_scale=(0.15, 0.15), aspect=(0.75, 1.5)),  # short range
    dict(num_blocks=2, spatial_scale=(0.7, 0.7), aspect=(0.75, 1.5)),    # long range
)
FUTURE_MASKS = (
    dict(num_blocks=8, spatial_scale=(0.15, 0.15), aspect=(0.75, 1.5)),  # short range
    dict(num_blocks=0, spatial_scale=(0.15, 0.15), context_frames=0.5),  # past -> future
)
IJEPA_MASKS = (
    dict(num_blocks=4, spatial_scale=(0.15, 0.2), aspect=(0.75, 1.5), context_scale=(0.85, 1.0)),
)


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 900
  c.batch_size = 32                 # global, across all processes and devices
  c.log_every = 25
  c.eval_every = 0                  # 0: probe only at the end

  # source 'physics': balls under gravity (data.physics); 'two_rooms': Two Rooms walks as
  # action-free videos (data.two_rooms; data.physics.num_frames sets the clip length).
  c.data = ml_collections.ConfigDict(dict(
      source="physics", modality="video", num_videos=1_000_000, num_threads=2, prefetch=4,
      two_rooms=dict(size=64, random_layout=True, cross_wall_rate=0.35, wall_push_rate=0.15,
                     heading_kappa=4.0),
      physics=dict(num_frames=16, size=64, num_balls=2, radius=(3.0, 6.0), min_radius_gap=1.5,
                   speed=(1.0, 3.5),
                   gravity=0.35, restitution=0.85, floor_height=6, num_occluders=(0, 1),
                   occluder_width=(6, 12), substeps=4)))

  c.model = ml_collections.ConfigDict(dict(
      size="micro", patch_size=(4, 8, 8), dtype="float32", scan=False, remat=False,
      predictor=dict(width=64, depth=2, num_heads=4)))
  c.masks = [ml_collections.ConfigDict(m) for m in VJEPA_MASKS]
  # var/cov_weight: VICReg terms on the context encoder's tokens, of the views vc_views names:
  # 'future' (past -> future views, per token position) or 'all' (tube views too, on each
  # token's deviation from its position's batch mean; losses.masked_content_vc_loss).
  # target_norm: 'layer' (V-JEPA) or 'position_batch' (per position over the batch: removes the
  # position code from the targets; an experiment, see BUILD_NOTES session 3).
  # hard_weight: each target token's error weighted by (error / mean)^hard_weight (focal; the
  # frame JEPA's, see losses.focal_token_loss); 0 the plain mean.
  c.loss = ml_collections.ConfigDict(dict(kind="l1", var_weight=0.0, cov_weight=0.0,
                                          vc_views="future", target_norm="layer",
                                          hard_weight=0.0))

  c.optim = ml_collections.ConfigDict(dict(
      lr=1e-3, warmup_init_lr=1e-4, final_lr=1e-6, warmup_steps=50,
      weight_decay=0.04, final_weight_decay=0.04, b1=0.9, b2=0.999, grad_clip=0.0,
      ema_start=0.99, ema_end=0.999))

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  c.sharding = ml_collections.ConfigDict(dict(rules=[], min_size=2**14))
  c.checkpoint = ml_collections.ConfigDict(dict(every=500, keep=3, async_save=True))
  c.distributed = ml_collections.ConfigDict(dict(
      enabled=False, coordinator_address="", num_processes=1, process_id=0, cpu_collectives=True))
  # kinds: 'linear' (ridge on the token map, CV strength) and/or 'attentive' (V-JEPA's probe
  # family; steps/batch_size/lr are its training settings, num_heads/hidden its size). The
  # attentive probe needs thousands of videos (with 2000 it overfits: BUILD_NOTES session 4);
  # the linear one solves an N x N system, so it uses at most linear_max_train of them.
  # score_coords: token coordinates also enter the attentive probe's scores, so a head can pick
  # tokens by time slice (velocity needs two); README main job's encoder, velocity R2 0.418 ->
  # 0.484 pretrained, 0.244 -> 0.262 random init (BUILD_NOTES session 7). See eval/probe.py.
  c.probe = ml_collections.ConfigDict(dict(
      enabled=True, kinds="linear,attentive", num_train=8000, linear_max_train=3000,
      num_test=500, steps=3000, batch_size=128, lr=1e-3, frame=7, num_heads=8, hidden=128,
      score_coords=True))
  return c


def small_physics(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """32x32, 8-frame videos (the 64x64 scene at half scale, same dynamics in canvas units) with
  2x4x4 tubelets: the same 256 tokens as 16x64x64 with 4x8x8, but every token sees 4x4 px
  over 2 frames. Measured: the supervised bound of ViT-micro + attentive probe rises from
  R2 0.48/0.34 (64x64) to 0.84/0.70 (position/velocity) in 400-600 steps (BUILD_NOTES)."""
  c.data.physics.update(num_frames=8, size=32, radius=(1.5, 3.0), min_radius_gap=0.75,
                        speed=(0.5, 1.75), gravity=0.175, floor_height=3, occluder_width=(3, 6))
  c.model.patch_size = (2, 4, 4)
  c.probe.frame = 3
  return c


def get_config(preset: str = "cpu_default") -> ml_collections.ConfigDict:
  c = base()
  if preset == "cpu_default":
    pass
  elif preset == "cpu_future":
    c.masks = [ml_collections.ConfigDict(m) for m in FUTURE_MASKS]
    c.loss.update(var_weight=1.0, cov_weight=0.04)
  elif preset == "cpu_content_future":
    # cpu_default data and model; short-range tubes + past -> future view, with targets
    # standardised per token position over the batch instead of VICReg.
    c.masks = [ml_collections.ConfigDict(m) for m in FUTURE_MASKS]
    c.loss.target_norm = "position_batch"
  elif preset == "cpu_small_tube":
    small_physics(c)
  elif preset == "cpu_small_content":
    small_physics(c)
    c.loss.target_norm = "position_batch"
  elif preset == "cpu_small_future":
    small_physics(c)
    c.masks = [ml_collections.ConfigDict(m) for m in FUTURE_MASKS]
    c.loss.update(var_weight=1.0, cov_weight=0.04)
  elif preset == "cpu_two_rooms":
    # Stage 1 of the two-stage world model (V-JEPA 2-AC): V-JEPA on Two Rooms walk videos; the
    # world model then encodes single frames duplicated into one 2-frame tubelet, as V-JEPA 2-AC.
    c.total_steps = 400
    c.data.source = "two_rooms"
    c.data.physics.num_frames = 8
    c.model.patch_size = (2, 8, 8)
    c.masks = [ml_collections.ConfigDict(m) for m in FUTURE_MASKS]
    c.loss.update(var_weight=1.0, cov_weight=0.04)
    c.checkpoint.every = 200
    c.probe.update(frame=3, steps=1000)
  elif preset == "debug":
    c.total_steps = 6
    c.batch_size = 8
    c.log_every = 2
    c.data.num_threads = 1
    c.data.physics.update(num_frames=4, size=32, radius=(2.0, 4.0), floor_height=3,
                          occluder_width=(3, 6))
    c.model.update(patch_size=(2, 8, 8))
    c.model.predictor.update(width=64, depth=1, num_heads=2)
    c.model.size = "micro"
    c.masks = [ml_collections.ConfigDict(dict(num_blocks=2, spatial_scale=(0.15, 0.3),
                                              aspect=(0.75, 1.5)))]
    c.optim.warmup_steps = 2
    c.checkpoint.every = 3
    c.probe.update(num_train=64, num_test=32, steps=20, batch_size=32, frame=1)
  elif preset == "image_debug":
    c = get_config("debug")
    c.data.modality = "image"
    c.data.physics.size = 64
    c.model.patch_size = (8, 8)
    c.masks = [ml_collections.ConfigDict(m) for m in IJEPA_MASKS]
    c.loss.kind = "smooth_l1"
  elif preset == "vitl_vjepa":
    # V-JEPA ViT-L/16 recipe sizes: 16x224x224 clips, 2x16x16 tubelets, predictor 384 x 12,
    # batch 3072, lr 6.25e-4, wd 0.04 -> 0.4, EMA 0.998 -> 1.0. Needs a GPU/TPU mesh.
    c.total_steps = 90_000
    c.batch_size = 3072
    c.log_every = 50
    c.data.physics.update(num_frames=16, size=224, radius=(8.0, 20.0), floor_height=16,
                          occluder_width=(20, 40))
    c.data.update(num_threads=16, prefetch=16)  # grain warns (and idles threads) if prefetch < threads
    c.model.update(size="large", patch_size=(2, 16, 16), dtype="bfloat16", scan=True,
                   remat=True)
    c.model.predictor.update(width=384, depth=12, num_heads=12)
    c.optim.update(warmup_steps=12_000, grad_clip=10.0)
    c.mesh.update(data=-1, fsdp=8)
    c.checkpoint.every = 1000
    # Probe features live in host memory: 4000 x 1568 tokens x 1024 x fp32 = 26 GB, ~3x that at
    # peak while standardising (the accelerator only sees one batch at a time).
    c.probe.update(num_train=4000, num_test=1000, steps=5000)
  else:
    raise ValueError(f"unknown preset {preset!r}: debug, cpu_default, cpu_future, "
                     "cpu_content_future, cpu_small_tube, "
                     "cpu_small_content, cpu_small_future, cpu_two_rooms, image_debug, vitl_vjepa")
  return c
