"""Muon++'s spectral weight bound: decay each matrix just enough to keep ``‖W‖₂ ≤ R``.

Our formalization of Zhao (arXiv 2601.01306; docs/algorithms.md, "Muon++").
The first-order rule around ``W`` is ``σ(W − ηU − κW) ≈ σ_W − η·uᵀUv − κσ_W``.
We linearize around the *proposed* weight ``P = W + Δ`` instead (``Δ = −ηU``
the incoming update), whose top triplet ``(σ_P, u, v)`` a warm-started power
iteration tracks in the state; that removes the error of the update's own step
from the prediction ``σ(P − κW) ≈ σ_P − κ·uᵀWv`` and gives the smallest decay
that keeps the top singular value at or below ``R``:

    κ_t = clip((σ_P − R) / uᵀWv, 0, 1)

``R = weight_radius · sqrt(fan_out/fan_in)`` (the μP spectral condition).
"""

import math

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import matrices
from optax_muon._src import power_iteration as pi
from optax_muon._src import validation

__all__ = ["spectral_weight_decay"]


def spectral_weight_decay(
    weight_radius: jax.typing.ArrayLike = 4.0,
    *,
    power_iterations: int = 1,
    dimension_numbers: dn.DimensionNumbersSpec = None,
) -> optax.GradientTransformationExtraArgs:
  """Decays each matrix just enough to keep its spectral norm at most ``R``.

  Place it after ``scale_by_learning_rate``: it reads the final update ``Δ``
  and adds ``−κ_t·W``.

  Args:
    weight_radius: ``R / sqrt(fan_out/fan_in)`` (> 0).
    power_iterations: rounds per step of the warm-started power iteration.
    dimension_numbers: which leaves are matrices on an ordinary tree (default:
      rank >= 2, last two axes).

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = spectral_weight_decay(1.0)
    >>> w = {"w": 3.0 * jnp.eye(4)}
    >>> u, _ = tx.update({"w": jnp.zeros((4, 4))}, tx.init(w), w)
    >>> float((w["w"] + u["w"])[0, 0])
    1.0
  """
  validation.check_positive(weight_radius, "weight_radius")
  validation.check_positive_int(power_iterations, "power_iterations")

  def fn(delta, vecs, w):
    if w is None:
      raise ValueError("spectral_weight_decay needs params in update(updates, state, params).")
    w32, d32 = w.astype(jnp.float32), delta.astype(jnp.float32)
    sigma, u_vec, vecs = pi.top_singular_triplet(w32 + d32, vecs, power_iterations)
    along = jnp.einsum("bp,bpq,bq->b", u_vec, w32, vecs)  # uᵀWv
    radius = weight_radius * math.sqrt(w.shape[2] / w.shape[1])
    kappa = jnp.clip((sigma - radius) / jnp.maximum(along, 1e-30), 0.0, 1.0)
    kappa = jnp.where(sigma > radius, kappa, 0.0)
    return (d32 - kappa[:, None, None] * w32).astype(delta.dtype), vecs

  return matrices.per_matrix(fn, lambda p: pi.start_vectors(p.shape[0], p.shape[2]),
                             dimension_numbers=dimension_numbers)
