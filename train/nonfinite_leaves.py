"""Finding NaN/Inf values: which leaves of the params, optimizer state or gradients hold them.

Used after a restore (a checkpoint whose state is not finite is rejected) and when training stops
after too many skipped steps (to say what went non-finite).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax_muon as om
from flax import nnx

from train.state import TrainState
from train.step import Batch
from train.step import loss_fn


def _is_stacks(x) -> bool:
  return isinstance(x, om.matrices.MatrixStacks)


@jax.jit
def _counts(tree) -> list[jax.Array]:
  """Non-finite values per floating leaf of `tree`; per row (`[rows]`) inside matrix stacks."""
  def count(x, axes):
    if not jnp.issubdtype(x.dtype, jnp.inexact):
      return jnp.zeros(x.shape[:1] if axes else (), jnp.int32)
    return jnp.sum(~jnp.isfinite(x), axis=tuple(range(1, x.ndim)) if axes else None)

  out = []
  for node in jax.tree.leaves(tree, is_leaf=_is_stacks):
    if _is_stacks(node):
      out.append([[count(x, True) for x in jax.tree.leaves(v)] for v in node.values])
    else:
      out.append(count(node, False))
  return out


def nonfinite_leaves(tree, prefix: str = "") -> list[str]:
  """`"path (n of size)"` for every floating leaf of `tree` holding NaN or Inf values.

  The optimizer keeps matrix buffers as stacks of same-shaped matrices (`om.matrices.MatrixStacks`):
  there the path names the stack and, in brackets, the parameter whose rows hold the values.
  """
  counts = jax.device_get(_counts(tree))
  out = []
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_stacks)[0]
  for (path, node), n in zip(flat, counts):
    name = prefix + jax.tree_util.keystr(path, simple=True, separator="/")
    if not _is_stacks(node):
      if n:
        out.append(f"{name} ({int(n)} of {node.size})")
      continue
    for (group, value), per_leaf in zip(node.items(), n):
      for (leaf_path, x), rows in zip(jax.tree_util.tree_flatten_with_path(value)[0], per_leaf):
        sub = name + "/" + group.name + jax.tree_util.keystr(leaf_path, simple=True, separator="/")
        for m in group.members:
          bad = int(np.sum(rows[m.start:m.start + m.rows]))
          if bad:
            out.append(f"{sub}[{m.path}] ({bad} of {x.size // x.shape[0] * m.rows})")
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
