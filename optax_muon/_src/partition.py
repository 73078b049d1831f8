"""Route parameter leaves to different transforms, without ``MaskedNode``.

``optax.partition`` fills the inner states with ``MaskedNode`` placeholders,
which break ``flax.nnx.Optimizer`` (flax issue 4901) and naive orbax restores.
Here each inner transform sees the parameter tree with ``None`` in place of the
leaves it does not own: ``None`` is an empty pytree node to JAX, so states stay
ordinary trees of arrays that every tool understands.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import optax

__all__ = ["PartitionState", "partition", "mask_leaves"]


class PartitionState(NamedTuple):
  inner_states: dict[str, Any]  # label -> that transform's state.


def mask_leaves(tree: Any, keep: Sequence[bool]) -> Any:
  """``tree`` with ``None`` in place of the leaves whose ``keep`` is False."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef.unflatten([x if k else None for x, k in zip(leaves, keep)])


def partition(
    transforms: Mapping[str, optax.GradientTransformation],
    labels: Callable[[Any], Sequence[str]],
) -> optax.GradientTransformationExtraArgs:
  """Applies ``transforms[label]`` to the leaves labelled ``label``.

  Args:
    transforms: label -> transform.
    labels: ``tree -> list of labels`` in ``jax.tree.leaves`` order (called on
      params at init and on updates at update; only shapes and paths may matter).
  """
  transforms = {k: optax.with_extra_args_support(t) for k, t in transforms.items()}

  def _labels(tree):
    labs = list(labels(tree))
    unknown = set(labs) - set(transforms)
    if unknown:
      raise ValueError(f"labels {sorted(unknown)} have no transform; have {sorted(transforms)}.")
    return labs

  def init_fn(params):
    labs = _labels(params)
    return PartitionState({k: t.init(mask_leaves(params, [l == k for l in labs]))
                           for k, t in transforms.items()})

  def update_fn(updates, state, params=None, **extra):
    labs = _labels(updates)
    leaves, treedef = jax.tree.flatten(updates)
    if params is not None:
      p_leaves, p_def = jax.tree.flatten(params)
      if p_def != treedef:
        raise ValueError(f"updates and params have different tree structures:\n"
                         f"{treedef}\nvs\n{p_def}")
    out = list(leaves)
    new_states = {}
    for k, t in transforms.items():
      keep = [l == k for l in labs]
      masked_params = None if params is None else mask_leaves(params, keep)
      u, new_states[k] = t.update(mask_leaves(updates, keep), state.inner_states[k],
                                  masked_params, **extra)
      for i, (x, kp) in enumerate(zip(treedef.flatten_up_to(u), keep)):
        if kp:
          out[i] = x
    return treedef.unflatten(out), PartitionState(new_states)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
