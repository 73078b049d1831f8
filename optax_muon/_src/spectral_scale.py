"""Shape-dependent scaling of orthogonalized updates (ALGORITHMS.md §2).

With an exact polar factor ``O`` of a full-rank ``fan_in × fan_out`` matrix,
``‖O‖₂ = 1`` and ``RMS(O) = 1/sqrt(max(fan_in, fan_out))``. The conventions
multiply ``O`` by:

============== ====================================== =============================
convention     factor                                 effect
============== ====================================== =============================
``jordan``     ``sqrt(max(1, fan_out/fan_in))``       Keller Jordan; optax default
``width``      same as ``jordan``                     optax ``scale_by_shape()``
``moonlight``  ``rms·sqrt(max(fan_in, fan_out))``     update RMS = ``rms`` (0.2, AdamW-like)
``mup``        ``sqrt(fan_out/fan_in)``               ``‖ΔW‖₂ = η·sqrt(fan_out/fan_in)``
``none``       ``1``
============== ====================================== =============================

``exact=True`` first divides each matrix by a warm-started power-iteration
estimate of its spectral norm, so the factor sets ``‖U‖₂`` exactly instead of
within Newton–Schulz's 0.68–1.13 band (used by Muon++).
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import power_iteration as pi

__all__ = ["SCALE_CONVENTIONS", "scale_factor", "spectral_scale", "SpectralScaleState"]

SCALE_CONVENTIONS = ("jordan", "width", "moonlight", "mup", "none")
Convention = Literal["jordan", "width", "moonlight", "mup", "none"]


def scale_factor(convention: str, fan_in: int, fan_out: int, rms: Any = 0.2):
  """The multiplier a convention applies to an orthogonalized ``fan_in × fan_out`` update."""
  if convention in ("jordan", "width"):
    return math.sqrt(max(1.0, fan_out / fan_in))
  if convention == "moonlight":
    return rms * math.sqrt(max(fan_in, fan_out))
  if convention == "mup":
    return math.sqrt(fan_out / fan_in)
  if convention == "none":
    return 1.0
  raise ValueError(f"unknown scale convention {convention!r}; valid: {SCALE_CONVENTIONS}.")


class SpectralScaleState(NamedTuple):
  """Power-iteration vectors per matrix (``[B, fan_out]``) when ``exact``; else None."""
  right_vectors: Any


def spectral_scale(
    convention: Convention = "moonlight",
    *,
    rms: jax.typing.ArrayLike = 0.2,
    exact: bool = False,
    power_iterations: int = 2,
    dimension_numbers: dn.DimensionNumbersSpec = None,
) -> optax.GradientTransformation:
  """Multiplies each matrix update by its convention's shape factor.

  Args:
    convention: ``"jordan"``, ``"width"``, ``"moonlight"``, ``"mup"`` or ``"none"``.
    rms: target update RMS of ``"moonlight"`` (0.2 matches AdamW).
    exact: normalize each matrix to spectral norm 1 first (warm-started power
      iteration, vectors kept in the state).
    power_iterations: rounds per step when ``exact``.
    dimension_numbers: which leaves are matrices (default: rank >= 2, last two
      axes); other leaves pass through.

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = spectral_scale("mup")
    >>> u, _ = tx.update({"w": jnp.ones((4, 16))}, tx.init(None))
    >>> float(u["w"][0, 0])
    2.0
  """
  scale_factor(convention, 1, 1)  # validates the name

  def init_fn(params):
    if not exact:
      return SpectralScaleState(right_vectors=None)
    treedef, entries = dn.matrix_leaves(dimension_numbers, params)
    vecs = [None if lay is None else pi.init_right_vectors(lay.batch, lay.fan_out)
            for _, _, lay in entries]
    return SpectralScaleState(right_vectors=treedef.unflatten(vecs))

  def update_fn(updates, state, params=None):
    del params
    treedef, entries = dn.matrix_leaves(dimension_numbers, updates)
    out = [u for _, u, _ in entries]
    new_vecs = [None] * len(entries)
    matrices = [i for i, (_, _, lay) in enumerate(entries) if lay is not None]
    if exact:
      vecs = treedef.flatten_up_to(state.right_vectors)
      mats = [dn.to_matrices(entries[i][1], entries[i][2]) for i in matrices]
      triplets = pi.grouped_by_shape(
          lambda m, v: pi.top_singular_triplet(m, v, power_iterations),
          mats, [vecs[i] for i in matrices])
    for k, i in enumerate(matrices):
      _, u, lay = entries[i]
      factor = scale_factor(convention, lay.fan_in, lay.fan_out, rms)
      if exact:
        sigma, _, new_vecs[i] = triplets[k]
        inv = jnp.where(sigma > 0, 1.0 / jnp.where(sigma > 0, sigma, 1.0), 0.0)
        out[i] = dn.from_matrices(mats[k] * (factor * inv)[:, None, None].astype(u.dtype), lay)
      else:
        out[i] = (u * factor).astype(u.dtype)
    new_state = SpectralScaleState(
        right_vectors=treedef.unflatten(new_vecs) if exact else None)
    return treedef.unflatten(out), new_state

  return optax.GradientTransformation(init_fn, update_fn)
