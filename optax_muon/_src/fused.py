"""Fused projections: one leaf that holds several matrices side by side.

A fused QKV kernel ``[d, 3·d]`` (GPT-2's ``c_attn``), or a gated MLP's
``[d, 2·d_ff]``, is ``parts`` matrices concatenated along one axis. Muon should
orthogonalize and scale each part as its own matrix, exactly as if the model
held them as separate leaves (the Muown authors split a fused QKV per chunk;
nanochat keeps them apart because "Muon prefers separate matrices").

:class:`FusedDimensionNumbers` says so. The leaf is viewed with its split axis
of size ``parts·n`` as ``(parts, n)``; the ``parts`` axis is one more batch
axis, so every part is a ``[fan_in, n]`` (or ``[n, fan_out]``) matrix of its
shape group, with its own Newton–Schulz, scale, momentum and per-neuron state.
``parts = 3·heads`` splits per head as well (chunks are contiguous).
The view is a reshape done at plan time, where the leaf enters its stack.
"""

from typing import NamedTuple, Sequence

__all__ = ["FusedDimensionNumbers", "fused_view"]


class FusedDimensionNumbers(NamedTuple):
  """A leaf of ``parts`` matrices side by side along ``split_axis``.

  Attributes:
    reduction_axis: the leaf's fan_in axes (as in ``MuonDimensionNumbers``).
    output_axis: the leaf's fan_out axes.
    parts: how many matrices the leaf holds (``3`` for QKV, ``3·heads`` per head).
    split_axis: the axis they are concatenated along (default: the output
      axis, which must then be a single axis).

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_muon.matrices import plan_matrices
    >>> plan = plan_matrices({"c_attn": jnp.zeros((64, 192))}, FusedDimensionNumbers(0, 1, parts=3))
    >>> [(g.name, g.rows) for g in plan.groups]
    [('64x64', 3)]
  """

  reduction_axis: Sequence[int] | int = 0
  output_axis: Sequence[int] | int = 1
  parts: int = 1
  split_axis: int | None = None


def _axes(a: Sequence[int] | int) -> tuple[int, ...]:
  return (a,) if isinstance(a, int) else tuple(a)


def fused_view(shape: tuple[int, ...], dims: FusedDimensionNumbers, path: str
               ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
  """``(view shape, reduction axes, output axes)`` of a fused leaf, in the view.

  Raises:
    ValueError: naming ``path`` when ``parts`` is not a positive int, the split
      axis is ambiguous or out of range, or its size is not a multiple of ``parts``.
  """
  ndim = len(shape)
  parts = dims.parts
  if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
    raise ValueError(f"{path}: FusedDimensionNumbers.parts must be a positive int, got {parts!r}.")
  split = dims.split_axis
  if split is None:
    out = _axes(dims.output_axis)
    if len(out) != 1:
      raise ValueError(f"{path}: FusedDimensionNumbers with several output axes {out} needs "
                       "split_axis.")
    split = out[0]
  if not isinstance(split, int) or not -ndim <= split < ndim:
    raise ValueError(f"{path}: FusedDimensionNumbers.split_axis {split!r} is out of range for "
                     f"shape {tuple(shape)}.")
  split %= ndim
  if shape[split] % parts:
    raise ValueError(f"{path}: axis {split} of size {shape[split]} does not split into "
                     f"parts={parts} equal matrices (shape {tuple(shape)}).")
  view = tuple(shape[:split]) + (parts, shape[split] // parts) + tuple(shape[split + 1:])

  def moved(axes, what):
    # The split axis becomes its chunk axis (split + 1); the parts axis (split) is a batch axis.
    out = []
    for a in _axes(axes):
      if isinstance(a, bool) or not isinstance(a, int) or not -ndim <= a < ndim:
        raise ValueError(f"{path}: {what} axis {a!r} is out of range for shape {tuple(shape)}.")
      out.append(a % ndim + (a % ndim >= split))
    return tuple(out)

  return view, moved(dims.reduction_axis, "reduction"), moved(dims.output_axis, "output")
