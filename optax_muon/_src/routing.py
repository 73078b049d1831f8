"""The shared frame of the aliases: matrices to one chain, the rest to AdamW.

``hybrid`` resolves the dimension numbers on the tree it is given (only paths
and shapes matter, so params at init and updates at update agree), labels each
leaf ``"matrix"`` or ``"adam"``, and builds the matrix chain with the resolved
(masked) dimension-numbers tree, so every inner transform sees exactly the
leaves and layouts the user asked for. Integer or otherwise non-float
parameters are rejected with the leaf path; non-finite steps are skipped.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import distributed
from optax_muon._src import labels as labels_lib
from optax_muon._src import nonfinite
from optax_muon._src import partition as partition_lib

__all__ = ["hybrid"]


def _resolve(spec, tree):
  treedef, entries = dn.matrix_leaves(spec, tree, labels_lib.default_matrix_rule)
  for path, leaf, lay in entries:
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(f"{path}: optimizers need floating-point parameters, got dtype {dtype}.")
    if lay is not None and lay.fan_in * lay.fan_out * lay.batch == 0:
      raise ValueError(f"{path}: a Muon matrix must be non-empty, got shape {leaf.shape}.")
  dims = [None if lay is None else _dims_of(lay) for _, _, lay in entries]
  return treedef, dims


def _dims_of(lay: dn.MatrixLayout) -> dn.MuonDimensionNumbers:
  return dn.MuonDimensionNumbers(lay.reduction_axes, lay.output_axes)


def hybrid(
    matrix_chain: Callable[[Any], optax.GradientTransformation],
    adam: optax.GradientTransformation,
    dimension_numbers: dn.DimensionNumbersSpec,
    *,
    skip_nonfinite: bool = True,
) -> optax.GradientTransformationExtraArgs:
  """Matrices -> ``matrix_chain(dims_tree)``, other leaves -> ``adam``.

  Args:
    matrix_chain: builds the matrix transform from a dimension-numbers tree
      (``MuonDimensionNumbers`` on matrix leaves, ``None`` elsewhere).
    adam: the transform for everything else.
    dimension_numbers: the user's spec (see :func:`resolve_dimension_numbers`);
      ``None`` = :func:`default_matrix_rule`.
    skip_nonfinite: wrap in :func:`skip_nonfinite`.
  """

  def build(tree):
    treedef, dims = _resolve(dimension_numbers, tree)
    dims_tree = treedef.unflatten(dims)
    labels = lambda t: ["matrix" if d is not None else "adam" for d in dims]
    tx = partition_lib.partition({"matrix": matrix_chain(dims_tree), "adam": adam}, labels)
    return nonfinite.skip_nonfinite(tx) if skip_nonfinite else tx

  def init_fn(params):
    return build(params).init(params)

  def update_fn(updates, state, params=None, **extra):
    run = lambda u, s, p: build(u).update(u, s, p, **extra)
    mesh = distributed.explicit_mesh(jax.tree.leaves(updates))
    if mesh is not None:
      # Sharding-in-types meshes: run the update with Auto axes (the power
      # iterations and row norms contract sharded axes), and hand back updates
      # and state in the shardings they came in.
      types = lambda t: jax.tree.map(lambda x: jax.typeof(x).sharding, t)
      run = jax.sharding.auto_axes(run, out_sharding=(types(updates), types(state)))
    return run(updates, state, params)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
