"""Matrix layouts read from the framework that built the model (docs/algorithms.md, "Layouts").

The default rule (:func:`default_matrix_rule`) reads every matrix as
``[..., fan_in, fan_out]``, which is Flax's and Haiku's layout. Other libraries
say more, and sometimes say otherwise:

* **Flax logical axis names** (``nnx.with_partitioning``, Linen
  ``with_logical_partitioning``): axes named ``layers``/``stage``/``exp(ert(s))``
  are batch axes, wherever they sit (MaxText scans ``[embed, layers, mlp]``);
  ``vocab`` marks an embedding or head (AdamW); ``embed`` first means
  ``[in=embed, out...]``, ``embed`` last ``[in..., out=embed]``.
* **Equinox** stores ``Linear.weight`` as ``[out, in]`` (PyTorch's layout) and
  ``Conv.weight`` as ``[out, in, *window]``: reduction axes ``1..``, output axis 0.
* **Convolutions** ``[*window, in, out]`` are one ``[prod(window)·in, out]``
  matrix (:func:`conv_dimension_numbers`), or one matrix per tap on request.

:func:`dimension_numbers_for` reads a model (or its boxed parameters) and
returns a :class:`LayoutTable`, a ``{path regex: dimension numbers}`` mapping
that every alias takes as ``dimension_numbers=``; leaves it does not name fall
back to the default rule. The table remembers which source decided each leaf,
for :func:`optax_muon.describe`. All of it runs in Python at plan time.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Mapping, Sequence

import jax
from optax.contrib import MuonDimensionNumbers

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import path_kinds

__all__ = [
    "BATCH_NAMES",
    "LayoutTable",
    "conv_dimension_numbers",
    "dimension_numbers_for",
    "logical_dimension_numbers",
    "param_tree",
]

# Logical axis names that index independent matrices (scanned layers, pipeline stages, experts).
BATCH_NAMES = frozenset({"layers", "layer", "stage", "stages", "exp", "expert", "experts"})
_VOCAB = "vocab"
_EMBED = "embed"


class LayoutTable(dict):
  """``{"^path$": MuonDimensionNumbers | None}`` with the source of each entry.

  A ``dict``, so it is a ``dimension_numbers=`` mapping like any other (keys are
  anchored, escaped paths); ``sources[path]`` says what decided the entry.
  """

  def __init__(self, entries: Mapping[str, tuple[Any, str]] = ()):  # type: ignore[assignment]
    super().__init__({_exact(p): d for p, (d, _) in dict(entries).items()})
    self.sources = {p: s for p, (_, s) in dict(entries).items()}
    # The same entries by path: resolve_dimension_numbers looks them up instead of trying
    # every regex on every leaf (plan time stays linear in the number of leaves).
    self.exact_paths = {p: d for p, (d, _) in dict(entries).items()}

  def source(self, path: str) -> str | None:
    return self.sources.get(path)


def _exact(path: str) -> str:
  return "^" + re.escape(path) + "$"


def conv_dimension_numbers(rank: int, *, channels_first: bool = False,
                           per_tap: bool = False) -> MuonDimensionNumbers:
  """Dimension numbers of a rank-``rank`` convolution kernel.

  Args:
    rank: the kernel's rank (3, 4, 5 for 1-, 2-, 3-D convolutions).
    channels_first: ``[out, in, *window]`` (Equinox, PyTorch) instead of
      ``[*window, in, out]`` (Flax, Haiku).
    per_tap: one ``[in, out]`` matrix per window position instead of one
      ``[prod(window)·in, out]`` matrix.

  Raises:
    ValueError: naming ``rank`` when it is below 3.

  Examples:
    >>> conv_dimension_numbers(4)
    MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=3)
    >>> conv_dimension_numbers(4, channels_first=True)
    MuonDimensionNumbers(reduction_axis=(1, 2, 3), output_axis=0)
    >>> conv_dimension_numbers(4, per_tap=True)
    MuonDimensionNumbers(reduction_axis=2, output_axis=3)
  """
  if isinstance(rank, bool) or not isinstance(rank, int) or rank < 3:
    raise ValueError(f"rank: a convolution kernel has rank >= 3, got {rank!r}.")
  if channels_first:
    return MuonDimensionNumbers(1 if per_tap else tuple(range(1, rank)), 0)
  return MuonDimensionNumbers(rank - 2 if per_tap else tuple(range(rank - 1)), rank - 1)


def logical_dimension_numbers(names: Sequence[str | None], path: str = "<param>"
                              ) -> tuple[MuonDimensionNumbers | None, str]:
  """Dimension numbers from one parameter's logical axis names, and why.

  Raises:
    ValueError: naming ``path`` when an axis name is not a string or ``None``.

  Examples:
    >>> logical_dimension_numbers(("embed", "layers", "mlp"))[0]  # MaxText's scanned kernel
    MuonDimensionNumbers(reduction_axis=0, output_axis=2)
    >>> logical_dimension_numbers(("heads", "kv", "embed"))[0]
    MuonDimensionNumbers(reduction_axis=(0, 1), output_axis=2)
    >>> logical_dimension_numbers(("vocab", "embed"))
    (None, "logical names ('vocab', 'embed'): vocab, an embedding or head")
  """
  names = tuple(names)
  for n in names:
    if n is not None and not isinstance(n, str):
      raise ValueError(f"{path}: logical axis names must be strings or None, got {names!r}.")
  said = f"logical names {names}"
  if _VOCAB in names:
    return None, f"{said}: vocab, an embedding or head"
  rest = [a for a, n in enumerate(names) if n not in BATCH_NAMES]
  if len(rest) < 2:
    return None, f"{said}: fewer than two matrix axes"
  named = [names[a] for a in rest]
  red: tuple[int, ...]
  out: tuple[int, ...]
  if named[-1] == _EMBED and named[0] != _EMBED:
    red, out = tuple(rest[:-1]), (rest[-1],)
  else:  # embed first, or no embed: [in, out...] (Flax's DenseGeneral order)
    red, out = (rest[0],), tuple(rest[1:])
  one = lambda axes: axes[0] if len(axes) == 1 else axes
  return MuonDimensionNumbers(one(red), one(out)), said


def _is_equinox(x: Any) -> bool:
  return any(c.__module__.split(".")[0] == "equinox" for c in type(x).__mro__)


def _is_nnx(x: Any) -> bool:
  return any(c.__module__.startswith("flax.nnx") for c in type(x).__mro__)


def _is_box(x: Any) -> bool:
  """A Linen ``Partitioned``/``LogicallyPartitioned`` box (has ``value`` and ``names``)."""
  return type(x).__module__.startswith("flax") and hasattr(x, "names") and hasattr(x, "value")


def _is_variable(x: Any) -> bool:
  return _is_nnx(x) and hasattr(x, "get_metadata")


def _is_array(x: Any) -> bool:
  return isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) or hasattr(x, "__array__") and hasattr(
      x, "shape")


def _loaded(module: str) -> Any:
  """A framework module the caller has already imported (its objects exist): no import here."""
  return sys.modules[module]


def param_tree(model: Any) -> Any:
  """The parameter tree an optimizer sees for ``model``.

  An ``nnx.Module`` gives ``nnx.state(model, nnx.Param)``, an Equinox module its
  array leaves (``eqx.filter``); anything else (a params dict, Linen boxes, an
  ``nnx.State``) is returned as is.
  """
  if _is_nnx(model) and not _is_variable(model) and not isinstance(model, Mapping):
    nnx = _loaded("flax.nnx")
    if isinstance(model, nnx.Module):
      return nnx.state(model, nnx.Param)
  if _is_equinox(model):  # eqx.filter(model, is_array): the arrays, None elsewhere
    return jax.tree.map(lambda x: x if _is_array(x) else None, model)
  return model


def _equinox_entries(model: Any) -> dict[str, tuple[Any, str]]:
  eqx = _loaded("equinox")
  layers = (eqx.nn.Linear, eqx.nn.Conv, eqx.nn.Embedding)
  entries: dict[str, tuple[Any, str]] = {}
  flat, _ = jax.tree_util.tree_flatten_with_path(
      model, is_leaf=lambda x: isinstance(x, layers))
  for path, layer in flat:
    if not isinstance(layer, layers):
      continue
    prefix = dn.path_to_str(path)
    weight = f"{prefix}/weight" if prefix else "weight"
    shape = tuple(layer.weight.shape)
    if isinstance(layer, eqx.nn.Embedding):
      entries[weight] = (None, "equinox Embedding")
    elif path_kinds.path_kind(weight) in path_kinds.NON_MATRIX_KINDS:
      entries[weight] = (None, f"equinox {type(layer).__name__}, kind "
                               f"{path_kinds.path_kind(weight)}")
    elif isinstance(layer, eqx.nn.Linear) and len(shape) == 2:
      entries[weight] = (MuonDimensionNumbers(1, 0), "equinox Linear [out, in]")
    elif isinstance(layer, eqx.nn.Conv) and not isinstance(layer, eqx.nn.ConvTranspose):
      entries[weight] = (conv_dimension_numbers(len(shape), channels_first=True),
                         "equinox Conv [out, in, *window]")
  return entries


def _names_of(x: Any) -> tuple[str | None, ...] | None:
  if _is_box(x):
    return tuple(x.names)
  meta = x.get_metadata() if _is_variable(x) else {}
  for key in ("out_sharding", "sharding_names", "sharding"):
    names = meta.get(key)
    if names is not None and not hasattr(names, "mesh"):  # names, not a NamedSharding
      return tuple(names)
  return None


def _flax_entries(tree: Any) -> dict[str, tuple[Any, str]]:
  entries: dict[str, tuple[Any, str]] = {}
  flat, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: _is_box(x) or _is_variable(x))
  for path, x in flat:
    names = _names_of(x) if (_is_box(x) or _is_variable(x)) else None
    if names is None:
      continue
    p = dn.path_to_str(path)
    value = x.value
    shape = tuple(getattr(value, "shape", ()))
    if len(names) != len(shape):
      raise ValueError(f"{p}: {len(names)} logical axis names {names} for a rank-{len(shape)} "
                       f"parameter of shape {shape}.")
    dims, why = logical_dimension_numbers(names, p)
    if dims is not None and path_kinds.path_kind(p) in path_kinds.NON_MATRIX_KINDS:
      dims, why = None, f"{why}; kind {path_kinds.path_kind(p)}"
    entries[p] = (dims, why)
  return entries


def dimension_numbers_for(model: Any) -> LayoutTable:
  """The dimension numbers a model's framework states, as a ``dimension_numbers=`` mapping.

  Args:
    model: an Equinox module; an ``nnx.Module`` or ``nnx.State`` whose
      parameters carry logical axis names (``nnx.with_partitioning``); Linen
      parameters as ``init`` returns them, boxed by ``with_logical_partitioning``
      (``jax.eval_shape`` shapes are enough).

  Returns:
    A :class:`LayoutTable` ``{"^path$": dims | None}``. Leaves the framework says
    nothing about are left out, so the default rule decides them (and
    :func:`optax_muon.describe` says so). Pass it to any alias as
    ``dimension_numbers=``, and the plain parameters (:func:`param_tree`) to it.

  Raises:
    ValueError: naming the path, when logical names do not match a parameter's rank.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import linen as nn
    >>> dense = nn.Dense(8, kernel_init=nn.with_logical_partitioning(
    ...     nn.initializers.lecun_normal(), ("embed", "mlp")))
    >>> boxed = jax.eval_shape(dense.init, jax.random.key(0), jnp.zeros((1, 4)))
    >>> table = dimension_numbers_for(boxed)
    >>> table["^params/kernel$"], table.sources["params/kernel"]
    (MuonDimensionNumbers(reduction_axis=0, output_axis=1), "logical names ('embed', 'mlp')")
  """
  if _is_equinox(model):
    return LayoutTable(_equinox_entries(model))
  return LayoutTable(_flax_entries(param_tree(model)))
