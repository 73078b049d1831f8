"""The one power iteration of the library: top singular triplets of matrix stacks.

Used by the ``"spectral"`` Newton–Schulz normalization, ``spectral_scale(exact=True)``,
Muon++'s spectral weight decay and the weight-norm diagnostics.

Start-vector rule (:func:`start_vectors`): the first ``n`` draws of a standard
normal generator seeded with 0 (``numpy.random.default_rng(0)``), normalized.
It is a constant, so runs are reproducible and sharded runs equal unsharded
ones, and it is *unstructured*: its overlap with any fixed unit vector is of
order ``1/sqrt(n)``. Structured starts fail on structured matrices (an
alternating-sign vector is orthogonal, to 1e-4, to the top eigenvector of the
Gram of a DCT-built test matrix; a ones vector to that of a zero-mean one).
Transforms that run every step keep the refined vector in their state (warm
start), so after the first steps one or two rounds suffice.

A block of ``k`` vectors (``[B, n, k]``, :func:`start_vectors` with ``block=k``:
the first ``n·k`` draws of the same generator, orthonormalized) runs subspace
iteration with a Rayleigh–Ritz step instead; it tracks the top ``k`` directions
together, which matters when the top singular values bunch up (a warm-started
single vector then follows one direction while another grows past it).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["start_vectors", "top_singular_triplet"]

_TINY = 1e-30


def start_vectors(batch: int, n: int, dtype=jnp.float32, block: int | None = None) -> jax.Array:
  """``[batch, n]`` copies of the documented unit start vector (``[batch, n, block]``
  orthonormal columns with ``block``).

  Examples:
    >>> v = start_vectors(2, 4)
    >>> v.shape, round(float(jnp.linalg.norm(v[0])), 6)
    ((2, 4), 1.0)
    >>> start_vectors(2, 4, block=3).shape
    (2, 4, 3)
  """
  if block is None:
    v = np.random.default_rng(0).standard_normal(n)
    v = v / max(float(np.linalg.norm(v)), 1e-30)
    return jnp.broadcast_to(jnp.asarray(v, dtype), (batch, n))
  k = min(block, n)
  q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal(n * k).reshape(n, k))
  return jnp.broadcast_to(jnp.asarray(q, dtype), (batch, n, k))


def top_singular_triplet(m: jax.Array, v: jax.Array | None = None, iters: int = 1):
  """``(σ, u, v)`` per matrix of ``m`` (``[B, p, q]``), refining the right vectors ``v``.

  ``iters`` rounds of ``u ← Mv/‖Mv‖, v ← Mᵀu/‖Mᵀu‖`` from ``v`` (default: the
  start vectors), then ``σ = ‖Mv‖``: a lower bound on ``‖M‖₂`` that converges
  geometrically (in ``(σ₂/σ₁)²`` per round). A zero matrix keeps its vector
  and has ``σ = 0``. Computed in float32 (or wider). With a block ``v`` of
  shape ``[B, q, k]``: subspace iteration, ``σ`` the largest singular value of
  ``M`` on the block (a lower bound, never below the single-vector one from
  any of its columns), ``u`` its left vector, and the refined block.

  Examples:
    >>> import jax.numpy as jnp
    >>> s, u, v = top_singular_triplet(jnp.diag(jnp.array([3.0, 1.0]))[None], iters=10)
    >>> round(float(s[0]), 4)
    3.0
  """
  dtype = jnp.promote_types(m.dtype, jnp.float32)
  m = m.astype(dtype)
  v = start_vectors(m.shape[0], m.shape[2], dtype) if v is None else v.astype(dtype)
  if v.ndim == 3:
    return _top_of_subspace(m, v, iters)
  for _ in range(iters):
    u = jnp.einsum("bpq,bq->bp", m, v)
    u = u / (jnp.linalg.norm(u, axis=-1, keepdims=True) + _TINY)
    w = jnp.einsum("bpq,bp->bq", m, u)
    n = jnp.linalg.norm(w, axis=-1, keepdims=True)
    v = jnp.where(n > 0, w / (n + _TINY), v)
  mv = jnp.einsum("bpq,bq->bp", m, v)
  sigma = jnp.linalg.norm(mv, axis=-1)
  return sigma, mv / (sigma[:, None] + _TINY), v


def _top_of_subspace(m: jax.Array, v: jax.Array, iters: int):
  """Subspace iteration on ``[B, q, k]`` blocks, then Rayleigh–Ritz for the top triplet.

  The span of ``(MᵀM)^t V`` does not depend on orthonormalizing between rounds,
  only its float32 conditioning does (``(σ₁/σ_k)^(2t)``), so the rounds rescale
  columns and the block is orthonormalized every second round and at the end
  (it is the next step's warm start). Matrix products only: no LAPACK QR or
  eigh, whose batched CPU kernels share XLA's thread pool and can deadlock when
  two run at once on a small machine.
  """
  for i in range(iters):
    w = jnp.einsum("bpq,bpk->bqk", m, _unit_columns(jnp.einsum("bpq,bqk->bpk", m, v)))
    # A column M maps to zero keeps its direction (a zero matrix keeps the whole
    # block), so a matrix that starts at zero is tracked once it has grown.
    norm = jnp.linalg.norm(w, axis=-2, keepdims=True)
    v = jnp.where(norm > 0, w / (norm + _TINY), v)
    if i % 2 == 1 and i < iters - 1:
      v = _orthonormal_columns(v)
  v = _orthonormal_columns(v)
  y = jnp.einsum("bpq,bqk->bpk", m, v)
  sigma_sq, top = _top_eigenpair(jnp.einsum("bpk,bpl->bkl", y, y))
  sigma = jnp.sqrt(jnp.maximum(sigma_sq, 0.0))
  u_top = jnp.einsum("bpk,bk->bp", y, top) / (sigma[:, None] + _TINY)
  return sigma, u_top, v


def _unit_columns(x: jax.Array) -> jax.Array:
  return x / (jnp.linalg.norm(x, axis=-2, keepdims=True) + _TINY)


@jax.jit  # one compiled loop per shape, also when called outside jit (op by op)
def _orthonormal_columns(x: jax.Array) -> jax.Array:
  """``[B, n, k]`` → orthonormal columns spanning the same space (Gram–Schmidt, twice).

  Two passes of modified Gram–Schmidt keep f32 columns orthogonal to rounding
  ("twice is enough"); a column in the span of the earlier ones becomes zero.
  Loops, not unrolled Python: column ``j`` is projected off every column of the
  result so far, whose not-yet-written columns are zero and leave it unchanged,
  so the program stays the same size for any ``k``.
  """
  k = x.shape[-1]

  def column(j, q):
    def project(t, c):
      qi = jax.lax.dynamic_index_in_dim(q, t % k, axis=-1, keepdims=False)
      return c - jnp.sum(qi * c, axis=-1, keepdims=True) * qi

    c = jax.lax.fori_loop(0, 2 * k, project, jax.lax.dynamic_index_in_dim(x, j, -1, False))
    c = c / (jnp.linalg.norm(c, axis=-1, keepdims=True) + _TINY)
    return jax.lax.dynamic_update_index_in_dim(q, c, j, axis=-1)

  return jax.lax.fori_loop(0, k, column, jnp.zeros_like(x))


@functools.partial(jax.jit, static_argnames="squarings")
def _top_eigenpair(g: jax.Array, squarings: int = 12):
  """Largest eigenvalue and its unit eigenvector of symmetric PSD ``[B, k, k]`` matrices.

  Repeated squaring (trace-normalized) gives ``G^(2^squarings)``, whose
  largest column points along the top eigenvector (error ``(λ₂/λ₁)^(2^squarings)``);
  the Rayleigh quotient of that column is the eigenvalue. A zero ``G`` gives 0.
  """
  def square(_, h):
    h = h / (jnp.trace(h, axis1=1, axis2=2)[:, None, None] + _TINY)
    return jnp.einsum("bij,bjk->bik", h, h)

  h = jax.lax.fori_loop(0, squarings, square, g)
  norms = jnp.linalg.norm(h, axis=1)  # [B, k]: norm of each column
  x = jnp.take_along_axis(h, jnp.argmax(norms, axis=1)[:, None, None], axis=2)[..., 0]
  x = x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + _TINY)
  return jnp.einsum("bi,bij,bj->b", x, g, x), x
