"""Finding NaN/Inf values: which leaves of the params, optimizer state or gradients hold them.

Used after a restore (a checkpoint whose state is not finite is rejected) and when training stops
after too many skipped steps (to say what went non-finite).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from train.state import TrainState
from train.step import Batch
from train.step import loss_fn


@jax.jit
def _counts(tree) -> list[jax.Array]:
  """Number of non-finite values per floating leaf of `tree` (0 for other leaves)."""
  return [jnp.sum(~jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact)
          else jnp.zeros((), jnp.int32) for x in jax.tree.leaves(tree)]


def nonfinite_leaves(tree, prefix: str = "") -> list[str]:
  """`"path (n of size)"` for every floating leaf of `tree` holding NaN or Inf values."""
  counts = jax.device_get(_counts(tree))
  out = []
  for (path, x), n in zip(jax.tree_util.tree_leaves_with_path(tree), counts):
    if n:
      name = jax.tree_util.keystr(path, simple=True, separator="/")
      out.append(f"{prefix}{name} ({int(n)} of {x.size})")
  return out


def state_report(state: TrainState) -> list[str]:
  """Non-finite leaves of the params and optimizer state."""
  return (nonfinite_leaves(state.params, "params/") +
          nonfinite_leaves(state.opt_state, "opt_state/"))


def step_report(state: TrainState, batch: Batch, graphdef: nnx.GraphDef) -> list[str]:
  """Non-finite leaves of the state, and of the loss and gradients on `batch`."""
  grad_fn = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, graphdef, batch)[0]))
  loss, grads = grad_fn(state.params)
  out = state_report(state)
  if not jnp.isfinite(loss):
    out.append(f"loss ({float(loss)})")
  return out + nonfinite_leaves(grads, "grads/")
