"""Which axes of a parameter form the matrices Muon orthogonalizes.

A parameter of any rank is read as a batch of independent matrices: the
*reduction* axes (the ``fan_in`` side, contracted with the layer's input) and
the *output* axes (``fan_out``, one index per output neuron); every other axis
is a batch axis. Flax ``Dense``/``nnx.Linear`` kernels are ``[fan_in, fan_out]``,
so a plain 2-D kernel is ``MuonDimensionNumbers(0, 1)`` and a scanned stack
``[L, fan_in, fan_out]`` is ``MuonDimensionNumbers(1, 2)``.

We reuse ``optax.contrib.MuonDimensionNumbers`` so trees written for optax keep
working here unchanged.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from optax.contrib import MuonDimensionNumbers

from optax_muon._src import fused
from optax_muon._src import path_kinds

__all__ = [
    "MuonDimensionNumbers",
    "MatrixLayout",
    "matrix_layout",
    "to_matrices",
    "from_matrices",
    "path_to_str",
    "leaves_with_paths",
    "prefix_to_leaves",
    "resolve_dimension_numbers",
    "is_dimension_numbers",
    "DimensionNumbersSpec",
    "default_matrix_rule",
    "rank_rule",
]

# None | MuonDimensionNumbers | tree of (MuonDimensionNumbers | None)
# | Callable[[params], tree] | Mapping[regex, MuonDimensionNumbers | None].
DimensionNumbersSpec = Any


def is_dimension_numbers(x: Any) -> bool:
  return isinstance(x, (MuonDimensionNumbers, fused.FusedDimensionNumbers))


def _is_spec_leaf(x: Any) -> bool:
  return x is None or is_dimension_numbers(x)


class MatrixLayout(NamedTuple):
  """Static description of how one parameter maps to ``[batch, fan_in, fan_out]``."""

  shape: tuple[int, ...]
  batch_axes: tuple[int, ...]
  reduction_axes: tuple[int, ...]
  output_axes: tuple[int, ...]
  # The leaf's own shape when ``shape`` is a view of it (a fused leaf split into parts).
  leaf_shape: tuple[int, ...] | None = None

  @property
  def batch(self) -> int:
    return math.prod(self.shape[a] for a in self.batch_axes)

  @property
  def fan_in(self) -> int:
    return math.prod(self.shape[a] for a in self.reduction_axes)

  @property
  def fan_out(self) -> int:
    return math.prod(self.shape[a] for a in self.output_axes)

  @property
  def permutation(self) -> tuple[int, ...]:
    return self.batch_axes + self.reduction_axes + self.output_axes


def _as_axes(axes: Any, ndim: int, what: str, path: str) -> tuple[int, ...]:
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  if not axes:
    raise ValueError(f"{path}: {what} axes are empty.")
  out = []
  for a in axes:
    if not isinstance(a, int) or not -ndim <= a < ndim:
      raise ValueError(
          f"{path}: {what} axis {a!r} is out of range for a rank-{ndim} parameter."
      )
    out.append(a % ndim)
  if len(set(out)) != len(out):
    raise ValueError(f"{path}: {what} axes {axes} repeat an axis.")
  return tuple(out)


def matrix_layout(
    shape: tuple[int, ...], dims: MuonDimensionNumbers, path: str = "<param>"
) -> MatrixLayout:
  """Validates ``dims`` against ``shape`` and returns the matrix layout.

  Raises:
    ValueError: naming ``path`` when the parameter has rank < 2 or the axes are
      out of range, repeated or overlapping.
  """
  if isinstance(dims, fused.FusedDimensionNumbers):
    view, red_view, out_view = fused.fused_view(tuple(shape), dims, path)
    lay = matrix_layout(view, MuonDimensionNumbers(red_view, out_view), path)
    return lay._replace(leaf_shape=tuple(shape))
  ndim = len(shape)
  if ndim < 2:
    raise ValueError(
        f"{path}: a Muon matrix needs rank >= 2, got shape {tuple(shape)}; "
        "route it to AdamW (dimension numbers None)."
    )
  red = _as_axes(dims.reduction_axis, ndim, "reduction", path)
  out = _as_axes(dims.output_axis, ndim, "output", path)
  if set(red) & set(out):
    raise ValueError(
        f"{path}: reduction axes {red} and output axes {out} overlap "
        f"(shape {tuple(shape)})."
    )
  batch = tuple(a for a in range(ndim) if a not in red and a not in out)
  return MatrixLayout(tuple(shape), batch, red, out)


def to_matrices(x: jax.Array, layout: MatrixLayout) -> jax.Array:
  """``x`` as a ``[batch, fan_in, fan_out]`` stack (a no-op view for 2-D kernels)."""
  if layout.leaf_shape is not None:
    x = x.reshape(layout.shape)
  y = x if layout.permutation == tuple(range(x.ndim)) else jnp.transpose(x, layout.permutation)
  return y.reshape(layout.batch, layout.fan_in, layout.fan_out)


def from_matrices(y: jax.Array, layout: MatrixLayout) -> jax.Array:
  """Inverse of :func:`to_matrices`."""
  perm = layout.permutation
  y = y.reshape(tuple(layout.shape[a] for a in perm))
  if perm != tuple(range(len(perm))):
    y = jnp.transpose(y, tuple(perm.index(a) for a in range(len(perm))))
  return y if layout.leaf_shape is None else y.reshape(layout.leaf_shape)


def path_to_str(path: tuple[Any, ...]) -> str:
  """``('layers', 0, 'attn', 'kernel')``-style key paths as ``layers/0/attn/kernel``.

  A final ``.value`` attribute (the field of a Flax ``nnx.Variable`` inside an
  ``nnx.State``) is dropped, so a state of variables and the plain gradients
  of the same model name their leaves alike.
  """
  path = tuple(path)
  if path and getattr(path[-1], "name", None) == "value" and not hasattr(path[-1], "key"):
    path = path[:-1]
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def leaves_with_paths(params: Any) -> tuple[list[tuple[str, Any]], Any]:
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  return [(path_to_str(p), leaf) for p, leaf in flat], treedef


def resolve_dimension_numbers(
    spec: DimensionNumbersSpec,
    params: Any,
    default_rule: Callable[[str, Any], MuonDimensionNumbers | None],
) -> Any:
  """Turns any accepted ``dimension_numbers`` spec into a full per-leaf tree.

  Args:
    spec: ``None`` (use ``default_rule`` on every leaf); one
      ``MuonDimensionNumbers`` for every leaf; a tree with the structure of
      ``params`` (or a prefix of it) of ``MuonDimensionNumbers | None``; a
      callable ``params -> such a tree``; or a mapping ``{regex: dims | None}``
      matched with ``re.search`` against ``a/b/c`` leaf paths, first match wins,
      unmatched leaves fall back to ``default_rule`` (a mapping with a key that
      names a top-level entry of ``params`` is read as a tree instead).
    params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``).
    default_rule: ``(path, leaf) -> dims | None``.

  Returns:
    A list, in ``jax.tree.leaves(params)`` order, of ``MuonDimensionNumbers``
    or ``None`` (``None`` = not a Muon matrix).

  Raises:
    ValueError: if a tree spec does not match the parameter tree.
  """
  named, treedef = leaves_with_paths(params)
  if spec is None:
    return [default_rule(p, x) for p, x in named]
  if is_dimension_numbers(spec):
    return [spec for _ in named]
  exact = getattr(spec, "exact_paths", None)  # a LayoutTable: its regexes are exact paths
  if isinstance(exact, Mapping):
    return [exact[p] if p in exact else default_rule(p, x) for p, x in named]
  if isinstance(spec, Mapping) and spec and all(isinstance(k, str) for k in spec) and all(
      _is_spec_leaf(v) for v in spec.values()
  ) and not _mapping_matches_tree(spec, params):
    patterns = [(re.compile(k), v) for k, v in spec.items()]
    out = []
    for p, x in named:
      for pat, v in patterns:
        if pat.search(p):
          out.append(v)
          break
      else:
        out.append(default_rule(p, x))
    return out
  tree = spec(params) if callable(spec) else spec
  per_leaf = prefix_to_leaves(tree, params, _is_spec_leaf, "dimension_numbers")
  for (p, _), d in zip(named, per_leaf):
    if not _is_spec_leaf(d):
      raise ValueError(
          f"{p}: dimension numbers must be MuonDimensionNumbers or None, got {d!r}."
      )
  return per_leaf


def prefix_to_leaves(prefix: Any, tree: Any, is_leaf: Callable[[Any], bool],
                     what: str) -> list[Any]:
  """Broadcasts a tree prefix of ``tree`` to one value per leaf of ``tree``.

  Raises:
    ValueError: naming ``what`` when ``prefix`` is not a prefix of ``tree``.
  """
  treedef = jax.tree.structure(tree)
  try:
    return treedef.flatten_up_to(jax.tree.map(  # type: ignore[attr-defined]
        lambda v, sub: jax.tree.map(lambda _: v, sub), prefix, tree, is_leaf=is_leaf))
  except (ValueError, TypeError) as e:
    paths = [p for p, _ in leaves_with_paths(tree)[0]][:8]
    raise ValueError(f"{what} tree does not match the parameter tree: {e}. "
                     f"Parameter paths: {paths}...") from None


def _mapping_matches_tree(spec: Mapping, params: Any) -> bool:
  """True when ``spec`` is meant as a tree (prefix) of ``params``, not a regex table:
  some key names a top-level entry of ``params``."""
  return isinstance(params, Mapping) and bool(set(spec) & set(params))


def rank_rule(path: str, leaf: Any) -> MuonDimensionNumbers | None:
  """Default rule of the standalone transforms: every rank >= 2 leaf is a stack
  of matrices over its last two axes ``[..., fan_in, fan_out]``."""
  del path
  ndim = len(getattr(leaf, "shape", ()))
  return MuonDimensionNumbers(ndim - 2, ndim - 1) if ndim >= 2 else None


def default_matrix_rule(path: str, leaf: Any) -> MuonDimensionNumbers | None:
  """The aliases' default: hidden matrices over their last two axes, the rest to AdamW.

  A leaf is a Muon matrix when it has rank >= 2, is non-empty, and its path
  does not name an embedding, the LM head, a norm gain or a bias
  (:func:`path_kind`). Leading axes are a batch of matrices (scanned layers
  ``[L, fan_in, fan_out]``), except in a convolution (a path component such as
  ``Conv_0`` or ``conv2_d``: :func:`path_kinds.is_conv`), whose
  ``[*window, in, out]`` kernel is one ``[prod(window)·in, out]`` matrix, as in
  Keller Jordan's Muon.

  Examples:
    >>> import jax.numpy as jnp
    >>> default_matrix_rule("layers/0/mlp/up/kernel", jnp.zeros((4, 8)))
    MuonDimensionNumbers(reduction_axis=0, output_axis=1)
    >>> default_matrix_rule("embed/embedding", jnp.zeros((256, 8))) is None
    True
  """
  shape = tuple(getattr(leaf, "shape", ()))
  if len(shape) < 2 or math.prod(shape) == 0:
    return None
  if path_kinds.path_kind(path) in path_kinds.NON_MATRIX_KINDS:
    return None
  if len(shape) >= 3 and path_kinds.is_conv(path):  # [*window, in, out]: one matrix
    return MuonDimensionNumbers(tuple(range(len(shape) - 1)), len(shape) - 1)
  return MuonDimensionNumbers(len(shape) - 2, len(shape) - 1)
