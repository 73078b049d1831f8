"""Muon++'s spectral weight bound: keep ``‖W‖₂ ≤ R`` with the smallest decay that does it.

Our formalization of Zhao (arXiv 2601.01306; docs/algorithms.md, "Muon++").
A first-order rule around ``W`` (``σ(W − ηU − κW) ≈ σ_W − η·uᵀUv − κσ_W``)
misses whenever the step is large or the top direction is not yet found. We act
on the *proposed* weight ``P = W + Δ`` (``Δ`` the incoming update) and, when it
leaves the ball, scale it back onto it:

    W' = c·P,   c = min(1, R/σ_P)        (update = Δ − (1 − c)·P)

Scaling multiplies every singular value by ``c``, so ``‖W'‖₂ = R`` exactly
whenever ``σ_P`` is exact, however far outside the ball ``P`` lies. ``σ_P``
comes from a warm-started power iteration kept in the state (a block of
``vectors`` directions, subspace iteration, when the top of the spectrum
bunches up); its vectors start from the initial weights' own top directions
(``init_iterations`` rounds at ``init``), so the first step is tracked like any
later one. ``1 − c`` is the
step's data-dependent decay ``κ_t``.

``R = weight_radius · s`` with ``s = scale_factor(scale, fan_in, fan_out)``
(``sqrt(fan_out/fan_in)`` for the μP spectral condition).
"""

import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import distributed
from optax_muon._src import matrices
from optax_muon._src import power_iteration as pi
from optax_muon._src import spectral_scale as scale_lib
from optax_muon._src import validation

__all__ = ["spectral_weight_decay"]


def spectral_weight_decay(
    weight_radius: jax.typing.ArrayLike = 4.0,
    *,
    scale: str = "mup",
    power_iterations: int = 1,
    vectors: int = 1,
    init_iterations: int = 30,
    dimension_numbers: dn.DimensionNumbersSpec = None,
) -> optax.GradientTransformationExtraArgs:
  """Scales each proposed matrix back onto ``‖W‖₂ ≤ R`` when it leaves that ball.

  Place it after ``scale_by_learning_rate`` (and any fixed decay): it reads the
  final update ``Δ`` and returns ``Δ − κ_t·(W + Δ)``.

  Args:
    weight_radius: ``R / s`` (> 0).
    scale: the convention of ``s`` (``"mup"``: ``sqrt(fan_out/fan_in)``; any of
      :func:`spectral_scale`'s conventions).
    power_iterations: rounds per step of the warm-started power iteration.
    vectors: how many top directions it tracks together (subspace iteration
      when > 1: robust when the top singular values bunch up, as they do once
      a matrix sits on its bound).
    init_iterations: rounds on the initial weights at ``init``.
    dimension_numbers: which leaves are matrices on an ordinary tree (default:
      rank >= 2, last two axes).

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = spectral_weight_decay(1.0)
    >>> w = {"w": 3.0 * jnp.eye(4)}
    >>> u, _ = tx.update({"w": jnp.zeros((4, 4))}, tx.init(w), w)
    >>> round(float((w["w"] + u["w"])[0, 0]), 5)
    1.0
  """
  validation.check_positive(weight_radius, "weight_radius")
  validation.check_positive_int(power_iterations, "power_iterations")
  validation.check_positive_int(vectors, "vectors")
  if init_iterations < 0:
    raise ValueError(f"init_iterations must be >= 0, got {init_iterations}.")
  scale_lib.scale_factor(scale, 1, 1)  # validates the convention name

  def init(w):
    vecs = pi.start_vectors(w.shape[0], w.shape[2], block=None if vectors == 1 else vectors)
    if init_iterations == 0 or not jnp.issubdtype(w.dtype, jnp.floating):
      return vecs
    # Start from W₀'s own top right singular vector: a fixed start vector is far
    # from it, and the first step would then be tracked worse than later ones.
    refine = functools.partial(_refine, iterations=init_iterations)
    mesh = distributed.explicit_mesh([w])
    if mesh is not None:  # sharding in types: let the partitioner place the matvecs
      refine = jax.sharding.auto_axes(refine, out_sharding=NamedSharding(mesh, P()))
    return refine(w, vecs)

  def fn(delta, vecs, w):
    if w is None:
      raise ValueError("spectral_weight_decay needs params in update(updates, state, params).")
    proposed = w.astype(jnp.float32) + delta.astype(jnp.float32)
    sigma, _, vecs = pi.top_singular_triplet(proposed, vecs, power_iterations)
    radius = weight_radius * scale_lib.scale_factor(scale, w.shape[1], w.shape[2])
    # κ = 1 − R/σ_P above the ball, 0 inside: W' = (1 − κ)·P has ‖W'‖₂ = R.
    kappa = jnp.where(sigma > radius, 1.0 - radius / jnp.where(sigma > 0, sigma, 1.0), 0.0)
    step = delta.astype(jnp.float32) - kappa[:, None, None] * proposed
    return step.astype(delta.dtype), vecs

  return matrices.per_matrix(fn, init, dimension_numbers=dimension_numbers)


def _refine(w: jax.Array, v: jax.Array, iterations: int) -> jax.Array:
  """``top_singular_triplet(w, v, iterations)``'s vectors, as a loop of two-round calls.

  The same rounds and re-orthonormalizations (every second round and at the end)
  as one unrolled call, compiled once: the unrolled form made ``init`` the largest
  program of a Muon++ chain.
  """
  pair = lambda _, v: pi.top_singular_triplet(w, v, 2)[2]
  v = jax.lax.fori_loop(0, iterations // 2, pair, v)
  return pi.top_singular_triplet(w, v, 1)[2] if iterations % 2 else v
