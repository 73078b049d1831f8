"""``describe``: which leaves get Muon, as which matrices, at which scale — before training.

The plan of a Muon-family optimizer (which leaves are matrices, their axes, the
shape scale) is decided once, in Python, from the parameter tree. This module
reads the same plan (:func:`plan_matrices` with the alias's dimension numbers
and its spectral-scale convention) and returns it as a table, one row per leaf,
with the reason each leaf was routed as it was. Nothing here runs in the
update.

An alias records what :func:`describe` needs (its name, dimension numbers and
scale convention) on the transform it returns (:func:`attach`); ``describe``
finds it inside ``optax.chain``, ``skip_nonfinite`` and other wrappers that keep
the transform they wrap.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from typing import Any, Mapping, NamedTuple

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import fused
from optax_muon._src import layouts
from optax_muon._src import matrices
from optax_muon._src import path_kinds
from optax_muon._src import spectral_scale

__all__ = ["AliasInfo", "Description", "Row", "attach", "describe", "find_alias_info"]

_ATTR = "_optax_muon_alias"


class AliasInfo(NamedTuple):
  """What an alias's plan depends on (static)."""

  name: str  # "muon", "muon_plus_plus", "muown", "normuon"
  dimension_numbers: Any  # the alias's dimension_numbers= argument
  scale: str  # spectral-scale convention (SCALE_CONVENTIONS)
  rms: float = 0.2  # update RMS of "moonlight"
  multiplier: float = 1.0  # a further constant factor (Muon++'s update_scale)


class Row(NamedTuple):
  """One leaf of :func:`describe`'s table (plain data).

  ``reduction_axes``/``output_axes``/``batch_axes`` index ``shape`` (for a fused
  leaf, its view ``matrix_view``); ``matrices`` is how many ``fan_in × fan_out``
  matrices the leaf holds; ``scale`` multiplies each orthogonalized matrix
  before the learning rate. Non-matrix leaves have ``None`` there.
  """

  path: str
  shape: tuple[int, ...]
  optimizer: str  # "muon" (every Muon-family alias) or "adamw"
  why: str
  reduction_axes: tuple[int, ...] | None
  output_axes: tuple[int, ...] | None
  batch_axes: tuple[int, ...] | None
  matrices: int | None
  fan_in: int | None
  fan_out: int | None
  scale: float | None
  matrix_view: tuple[int, ...] | None = None  # a fused leaf's view (parts as a batch axis)


class Description(list):
  """The rows of :func:`describe` (a ``list`` of :class:`Row`), printed as a table."""

  def __init__(self, rows: list[Row], header: str):
    super().__init__(rows)
    self.header = header

  def as_dicts(self) -> list[dict[str, Any]]:
    return [r._asdict() for r in self]

  def __str__(self) -> str:
    cols = ("path", "shape", "gets", "matrices", "axes in|out|batch", "scale", "why")
    body = [cols] + [_cells(r) for r in self]
    widths = [max(len(line[i]) for line in body) for i in range(len(cols) - 1)]
    lines = [self.header]
    for line in body:
      lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[-1])
    return "\n".join(l.rstrip() for l in lines)


def _axes_str(axes: tuple[int, ...] | None) -> str:
  if not axes:
    return "-"
  return ",".join(map(str, axes))


def _cells(r: Row) -> tuple[str, ...]:
  shape = str(tuple(r.shape))
  if r.optimizer != "muon":
    return (r.path, shape, r.optimizer, "-", "-", "-", r.why)
  mats = f"{r.matrices}x {r.fan_in}x{r.fan_out}"
  axes = f"{_axes_str(r.reduction_axes)}|{_axes_str(r.output_axes)}|{_axes_str(r.batch_axes)}"
  return (r.path, shape, r.optimizer, mats, axes, f"{r.scale:.4g}", r.why)


def as_float(x: Any) -> float:
  """``float(x)``, or NaN for a value known only at run time (a tracer)."""
  try:
    return float(x)
  except (TypeError, ValueError, Exception):  # pylint: disable=broad-except
    return math.nan


def attach(tx: Any, info: AliasInfo) -> Any:
  """Records ``info`` on ``tx`` (an alias's transform) for :func:`describe`; returns ``tx``."""
  setattr(tx.init, _ATTR, info)
  return tx


def find_alias_info(tx: Any, _depth: int = 10, _seen: set[int] | None = None) -> AliasInfo | None:
  """The :class:`AliasInfo` of the alias inside ``tx`` (also through chains and wrappers)."""
  seen = set() if _seen is None else _seen
  if _depth < 0 or id(tx) in seen:
    return None
  seen.add(id(tx))
  info = getattr(tx, _ATTR, None) if callable(tx) else None
  if isinstance(info, AliasInfo):
    return info
  if isinstance(tx, (tuple, list)):
    children: Any = tx
  elif isinstance(tx, dict):
    children = tx.values()
  elif isinstance(tx, functools.partial):
    children = (tx.func, *tx.args, *tx.keywords.values())
  elif inspect.isfunction(tx):
    children = []
    for cell in tx.__closure__ or ():
      try:
        children.append(cell.cell_contents)
      except ValueError:  # an empty cell
        pass
  else:
    return None
  for child in children:
    found = find_alias_info(child, _depth - 1, seen)
    if found is not None:
      return found
  return None


def _is_transform(x: Any) -> bool:
  return isinstance(x, tuple) and hasattr(x, "init") and hasattr(x, "update") and callable(x.init)


def _default_why(path: str, leaf: Any) -> str:
  shape = tuple(getattr(leaf, "shape", ()))
  if len(shape) < 2:
    return f"default rule: rank {len(shape)}"
  if math.prod(shape) == 0:
    return "default rule: empty"
  kind = path_kinds.path_kind(path)
  if kind in path_kinds.NON_MATRIX_KINDS:
    return f"default rule: kind {kind}"
  if len(shape) >= 3 and path_kinds.is_conv(path):
    return "default rule: conv, [*window, in, out] as one matrix"
  last = "last two axes [in, out]" + (", leading axes a batch" if len(shape) > 2 else "")
  if kind == "qkv":  # a fused projection is one matrix unless the user splits it
    last += " (one fused matrix; FusedDimensionNumbers splits it)"
  return f"default rule: kind {kind}, {last}"


def _reasons(spec: Any, named: list[tuple[str, Any]], dims: list[Any]) -> list[str]:
  """Why each leaf got its dimension numbers, following resolve_dimension_numbers's order."""
  if spec is None:
    return [_default_why(p, x) for p, x in named]
  if dn.is_dimension_numbers(spec):
    return ["given: one for every leaf"] * len(named)
  if isinstance(spec, layouts.LayoutTable):
    return [spec.source(p) or _default_why(p, x) for p, x in named]
  if isinstance(spec, Mapping) and spec and all(isinstance(k, str) for k in spec):
    patterns = [re.compile(k) for k in spec]
    out = []
    for p, x in named:
      hit = next((pat.pattern for pat in patterns if pat.search(p)), None)
      out.append(f"given: regex {hit!r}" if hit is not None else _default_why(p, x))
    return out
  what = "given: " + ("callable" if callable(spec) else "tree")
  out = []
  for (p, x), d in zip(named, dims):
    default = dn.default_matrix_rule(p, x)
    rule = _default_why(p, x)
    out.append(f"{what}, as the {rule}" if d == default else
               f"{what} (the {rule.split(':')[0]} would give {default})")
  return out


def _framework_says(params: Any, spec: Any) -> dict[str, Any]:
  """``{path: MatrixLayout | None}`` the model's framework states, when ``spec`` did not use it."""
  if isinstance(spec, layouts.LayoutTable):
    return {}
  try:
    table = layouts.dimension_numbers_for(params)
  except ValueError:
    return {}
  tree = layouts.param_tree(params)
  out = {}
  for path, leaf in dn.leaves_with_paths(tree)[0]:
    d = table.exact_paths.get(path)
    if d is not None:
      out[path] = dn.matrix_layout(tuple(leaf.shape), d, path)
  return out


def describe(params: Any, tx_or_dimension_numbers: Any = None, *, scale: str | None = None,
             rms: float | None = None) -> Description:
  """Which leaves get Muon and how, one row per leaf (plain data; ``print`` it).

  Args:
    params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``), an
      ``nnx.Module``, an Equinox module, or Linen's boxed parameters.
    tx_or_dimension_numbers: a transform returned by an alias (``muon``,
      ``muown``, ``muon_plus_plus``, ``normuon``; also inside ``optax.chain``),
      whose own dimension numbers and scale convention are described; or a
      ``dimension_numbers=`` spec (``None``: the default rule) described with
      ``muon``'s defaults.
    scale: override the scale convention (``SCALE_CONVENTIONS``).
    rms: override the ``"moonlight"`` update RMS.

  Returns:
    A :class:`Description`: a list of :class:`Row` (path, shape, ``"muon"`` or
    ``"adamw"``, why, axes, matrices, fan_in, fan_out, scale) whose ``str`` is
    an aligned table.

  Raises:
    ValueError: naming ``tx_or_dimension_numbers`` for a transform that no
      alias built; naming the path for dimension numbers that do not fit a leaf.

  Examples:
    >>> import jax.numpy as jnp, optax_muon
    >>> params = {"embed": {"embedding": jnp.zeros((256, 64))},
    ...           "mlp": {"up": {"kernel": jnp.zeros((64, 256))}}}
    >>> table = optax_muon.describe(params, optax_muon.muon(1e-3))
    >>> [(r.path, r.optimizer, r.fan_in, r.fan_out, r.scale) for r in table]
    [('embed/embedding', 'adamw', None, None, None), ('mlp/up/kernel', 'muon', 64, 256, 3.2)]
  """
  arg = tx_or_dimension_numbers
  if _is_transform(arg):
    info = find_alias_info(arg)
    if info is None:
      raise ValueError("tx_or_dimension_numbers: this transform was not built by an optax_muon "
                       "alias (muon, muown, muon_plus_plus, normuon); pass its "
                       "dimension_numbers instead.")
  else:
    info = AliasInfo("muon", arg, "moonlight", 0.2)
  info = info._replace(scale=scale or info.scale, rms=info.rms if rms is None else rms)
  tree = layouts.param_tree(params)
  spec = info.dimension_numbers
  plan = matrices.plan_matrices(tree, spec, default_rule=dn.default_matrix_rule)
  named, _ = dn.leaves_with_paths(tree)
  dims = dn.resolve_dimension_numbers(spec, tree, dn.default_matrix_rule)
  whys = _reasons(spec, named, dims)
  said = _framework_says(params, spec)
  rows = []
  for (path, leaf), lay, why, d in zip(named, plan.layouts, whys, dims):
    shape = tuple(getattr(leaf, "shape", ()))
    if lay is None:
      rows.append(Row(path, shape, "adamw", why, None, None, None, None, None, None, None))
      continue
    if isinstance(d, fused.FusedDimensionNumbers):
      why = f"{why}; fused: {d.parts} parts, axes of the view {lay.shape}"
    if path in said and said[path] is not None and said[path] != lay:
      theirs = said[path]
      why = (f"{why}; NOT the model's layout (in {theirs.reduction_axes}, out "
             f"{theirs.output_axes}): pass dimension_numbers_for(model)")
    factor = info.multiplier * float(
        spectral_scale.scale_factor(info.scale, lay.fan_in, lay.fan_out, info.rms))
    rows.append(Row(path, shape, "muon", why, lay.reduction_axes, lay.output_axes,
                    lay.batch_axes, lay.batch, lay.fan_in, lay.fan_out, factor,
                    lay.shape if lay.leaf_shape is not None else None))
  n_mat = sum(r.matrices or 0 for r in rows)
  header = (f"optax_muon.describe: {info.name}, scale {info.scale!r}"
            + (f" (rms {info.rms:g})" if info.scale == "moonlight" else "")
            + (f" x {info.multiplier:g}" if info.multiplier != 1.0 else "")
            + f"; {n_mat} matrices in {len(plan.groups)} shape groups (Muon), "
            f"{sum(r.optimizer == 'adamw' for r in rows)} leaves to AdamW")
  return Description(rows, header)

