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
    v = v / max(np.linalg.norm(v), 1e-30)
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
  """Subspace iteration on ``[B, q, k]`` blocks, then Rayleigh–Ritz for the top triplet."""
  for _ in range(iters):
    u, _ = jnp.linalg.qr(jnp.einsum("bpq,bqk->bpk", m, v))
    v, _ = jnp.linalg.qr(jnp.einsum("bpq,bpk->bqk", m, u))
  y = jnp.einsum("bpq,bqk->bpk", m, v)
  evals, evecs = jnp.linalg.eigh(jnp.einsum("bpk,bpl->bkl", y, y))  # ascending
  top = evecs[:, :, -1]
  sigma = jnp.sqrt(jnp.maximum(evals[:, -1], 0.0))
  u_top = jnp.einsum("bpk,bk->bp", y, top) / (sigma[:, None] + _TINY)
  return sigma, u_top, v
