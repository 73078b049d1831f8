"""Shape-dependent scaling of orthogonalized updates (docs/algorithms.md, "Spectral scales").

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

import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import matrices
from optax_muon._src import power_iteration as pi
from optax_muon._src import validation

__all__ = ["SCALE_CONVENTIONS", "scale_factor", "spectral_scale"]

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


def spectral_scale(
    convention: Convention = "moonlight",
    *,
    rms: jax.typing.ArrayLike = 0.2,
    exact: bool = False,
    power_iterations: int = 2,
    dimension_numbers: dn.DimensionNumbersSpec = None,
) -> optax.GradientTransformationExtraArgs:
  """Multiplies each matrix update by its convention's shape factor.

  Args:
    convention: ``"jordan"``, ``"width"``, ``"moonlight"``, ``"mup"`` or ``"none"``.
    rms: target update RMS of ``"moonlight"`` (0.2 matches AdamW).
    exact: normalize each matrix to spectral norm 1 first (warm-started power
      iteration, right vectors ``[B, fan_out]`` kept in the state).
    power_iterations: rounds per step when ``exact``.
    dimension_numbers: which leaves are matrices on an ordinary tree (default:
      rank >= 2, last two axes); other leaves pass through.

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = spectral_scale("mup")
    >>> u, _ = tx.update({"w": jnp.ones((4, 16))}, tx.init(None))
    >>> float(u["w"][0, 0])
    2.0
  """
  scale_factor(convention, 1, 1)  # validates the name
  validation.check_positive(rms, "rms")
  validation.check_positive_int(power_iterations, "power_iterations")

  def fn(u, vecs, param):
    del param
    factor = scale_factor(convention, u.shape[1], u.shape[2], rms)
    if not exact:
      return (u * factor).astype(u.dtype), vecs
    sigma, _, vecs = pi.top_singular_triplet(u, vecs, power_iterations)
    inv = jnp.where(sigma > 0, 1.0 / jnp.where(sigma > 0, sigma, 1.0), 0.0)
    return (u * (factor * inv)[:, None, None]).astype(u.dtype), vecs

  init = (lambda p: pi.start_vectors(p.shape[0], p.shape[2])) if exact else None
  return matrices.per_matrix(fn, init, dimension_numbers=dimension_numbers)
