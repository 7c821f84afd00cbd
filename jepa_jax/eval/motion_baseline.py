"""Model-free confound check for the violation benchmark: surprise from how much the video moves.

A violation changes how much a video moves after it: a teleport or an appearing ball adds
change, a vanishing or hovering ball removes some. A detector that knows no physics can then
tell twins apart by motion alone. These two scores measure how far that goes on each violation
type, so a model's accuracy can be read against them:

    motion     surprise of a window = mean |frame_t - frame_{t-1}| over its predicted frames
               (pixels in [0, 1]): more change, more surprise
    stillness  1 - that: less change, more surprise (non-negative, as the power mean needs)

Both see the same windows as the model they sit beside (context frames, then predicted ones);
the change of the first predicted frame is taken from the last context frame. No parameters.
"""

import jax.numpy as jnp

from jepa_jax.eval import surprise

KINDS = ("motion", "stillness")


def check_context(context_frames: int, window: int):
  if not 1 <= context_frames < window:
    raise ValueError(f"context_frames={context_frames}: need at least one context frame and "
                     f"one predicted frame in a window of {window}")


def window_error_fn(kind: str):
  """The surprise driver's interface: (params (unused), clips_BWHWC uint8, context_frames) ->
  (B,)."""
  if kind not in KINDS:
    raise ValueError(f"motion baseline kind={kind!r}: choose one of {KINDS}")

  def window_error(params, clips_BWHWC, context_frames: int):
    del params
    check_context(context_frames, clips_BWHWC.shape[1])
    x = clips_BWHWC[:, context_frames - 1:].astype(jnp.float32) / 255.0
    change_B = jnp.mean(jnp.abs(x[:, 1:] - x[:, :-1]), axis=(1, 2, 3, 4))
    return change_B if kind == "motion" else 1.0 - change_B

  return window_error


def surprise_models(window: int, frame_shape, context_frames: int) -> dict:
  """{'motion': SurpriseModel, 'stillness': SurpriseModel} on windows of `window` frames (score
  them with context_frames=(context_frames,), as the model they are compared with)."""
  check_context(context_frames, window)
  return {kind: surprise.SurpriseModel(window_error_fn(kind), None, window, tuple(frame_shape), 1)
          for kind in KINDS}
