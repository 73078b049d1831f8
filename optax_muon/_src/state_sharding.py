"""Shardings for optimizer states: every per-parameter buffer lives with its parameter.

Under ``jax.jit`` a freshly made buffer (``zeros_like`` momentum, a
power-iteration start vector) has no data dependence on the parameter, so the
compiler is free to replicate it: ZeRO/FSDP memory is lost and the state's
sharding changes at the first update. ``state_shardings`` gives each state leaf
a sharding derived from the parameter it belongs to (found by path suffix):

* same shape as the parameter: the parameter's sharding (AdamW's moments);
* a matrix group's buffers (:class:`MatrixStacks` inside ``matrix_partition``'s
  state): ``[rows, fan_in, fan_out]`` stacks (momenta) take the member
  parameter's ``fan_in`` and ``fan_out`` shardings, ``[rows, fan_out]``
  per-neuron vectors (Muown magnitudes, power-iteration vectors) its
  ``fan_out`` sharding, or, where ``fan_out`` is not sharded, the parameter's
  mesh axes on ``fan_out`` (when they divide it); ``[rows]`` vectors are replicated;
* a group of stacked non-matrix leaves ``[rows, *shape]`` (AdamW's moments):
  the member parameter's sharding behind an unsharded stack axis;
* anything else (counters, scalars): replicated.
"""

import math
from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import matrices

__all__ = ["state_shardings", "init_sharded"]


def _spec_entries(sharding: NamedSharding, ndim: int) -> list[Any]:
  spec = list(sharding.spec)
  return spec + [None] * (ndim - len(spec))


def _axis_spec(entries: list[Any], axes: tuple[int, ...]) -> Any:
  return entries[axes[0]] if len(axes) == 1 else None


def _group_specs(group: matrices.Group, param_sharding: NamedSharding, ndim: int):
  """``(rows, fan_in, fan_out)`` specs of a group, from its first member's parameter."""
  lay = group.members[0].layout
  assert lay is not None  # a matrix group
  if lay.leaf_shape is not None:  # a fused leaf's parts: its axes are not the parameter's
    return None, None, None
  entries = _spec_entries(param_sharding, ndim)
  rows = _axis_spec(entries, lay.batch_axes) if len(group.members) == 1 and lay.batch_axes else None
  return rows, _axis_spec(entries, lay.reduction_axes), _axis_spec(entries, lay.output_axes)


def _spread(param_sharding: NamedSharding, size: int, exclude: Any) -> Any:
  """The mesh axes sharding the parameter, as one spec entry for a dimension of ``size``
  (``None`` when they do not divide it): per-neuron state of a matrix sharded on its fan-in
  is then not replicated on every device."""
  excluded = set(exclude if isinstance(exclude, tuple) else (exclude,))
  axes = tuple(a for entry in param_sharding.spec if entry is not None
               for a in (entry if isinstance(entry, tuple) else (entry,)) if a not in excluded)
  devices = math.prod(param_sharding.mesh.shape[a] for a in axes)
  if devices == 1 or size % devices:
    return None
  return axes[0] if len(axes) == 1 else axes


def state_shardings(abstract_state: Any, params: Any, param_shardings: Any) -> Any:
  """``NamedSharding`` per leaf of an optimizer state, following the parameters.

  Args:
    abstract_state: the state or its shapes (``jax.eval_shape(tx.init, params)``).
    params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``).
    param_shardings: a ``NamedSharding`` per parameter (same tree).

  Returns:
    A tree like ``abstract_state`` of ``NamedSharding``; use it as the
    ``out_shardings`` of ``jax.jit(tx.init)`` and the state's in/out shardings
    of the train step.

  Examples:
    >>> import jax, jax.numpy as jnp, optax_muon
    >>> from jax.sharding import NamedSharding, PartitionSpec as P
    >>> mesh = jax.make_mesh((1,), ("fsdp",))
    >>> params = {"w": jnp.ones((8, 4))}
    >>> shardings = {"w": NamedSharding(mesh, P("fsdp", None))}
    >>> tx = optax_muon.muon(1e-3)
    >>> specs = optax_muon.state_shardings(jax.eval_shape(tx.init, params), params, shardings)
    >>> specs.matrix[0][0].mu["8x4"].spec  # the momentum stack of the 8x4 kernels
    P(None, 'fsdp', None)
  """
  param_leaves = jax.tree.leaves(params)
  sharding_leaves = jax.tree.leaves(param_shardings)
  by_path = {}
  for (path, x), sh in zip(jax.tree_util.tree_leaves_with_path(params), sharding_leaves):
    by_path[tuple(dn.path_to_str((k,)) for k in path)] = (tuple(x.shape), sh)
  mesh = sharding_leaves[0].mesh
  replicated = NamedSharding(mesh, P())

  def stacks_sharding(stacks: matrices.MatrixStacks) -> matrices.MatrixStacks:
    def one(group, value):
      first = group.members[0].leaf
      shape = tuple(param_leaves[first].shape)
      if group.fan_in is None:  # stacked non-matrix leaves: [rows, *shape]
        by_shape = {(group.rows,) + shape:
                    P(None, *_spec_entries(sharding_leaves[first], len(shape)))}
        spec = lambda s: by_shape.get(s, P())
      else:
        rows, fan_in, fan_out = _group_specs(group, sharding_leaves[first], len(shape))

        neurons = fan_out if fan_out is not None else _spread(
            sharding_leaves[first], group.fan_out, exclude=rows)

        def spec(s):  # the matrices, or per-neuron state [rows, fan_out, *k] (vectors, blocks)
          if s == (group.rows, group.fan_in, group.fan_out):
            return P(rows, fan_in, fan_out)
          if s[:2] == (group.rows, group.fan_out):
            return P(rows, neurons, *([None] * (len(s) - 2)))
          return P()
      return jax.tree.map(lambda x: NamedSharding(mesh, spec(tuple(x.shape))), value)
    return stacks.map(one)

  def sharding(path, x):
    if isinstance(x, matrices.MatrixStacks):
      return stacks_sharding(x)
    names = tuple(dn.path_to_str((k,)) for k in path)
    shape = tuple(x.shape)
    for start in range(len(names)):
      param_shape, s = by_path.get(names[start:], (None, None))
      if s is not None and shape == param_shape:
        return s
    return replicated

  return jax.tree_util.tree_map_with_path(
      sharding, abstract_state, is_leaf=lambda x: isinstance(x, matrices.MatrixStacks))


def init_sharded(tx, params: Any, param_shardings: Any) -> Any:
  """``tx.init(params)`` with every buffer created where its parameter lives."""
  shardings = state_shardings(jax.eval_shape(tx.init, params), params, param_shardings)
  return jax.jit(tx.init, out_shardings=shardings)(params)
