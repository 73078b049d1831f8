"""Warm-started power iteration for the top singular triplet of matrix stacks."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["grouped_by_shape", "init_right_vectors", "top_singular_triplet"]


def init_right_vectors(batch: int, fan_out: int, dtype=jnp.float32) -> jax.Array:
  """A deterministic, non-degenerate unit start vector per matrix: ``[B, fan_out]``."""
  v = 1.0 + jnp.arange(fan_out, dtype=dtype) / max(fan_out, 1)
  v = v * jnp.where(jnp.arange(fan_out) % 2 == 0, 1.0, -0.5).astype(dtype)
  v = v / jnp.linalg.norm(v)
  return jnp.broadcast_to(v, (batch, fan_out))


def top_singular_triplet(m: jax.Array, v: jax.Array, iters: int = 1):
  """Refines ``v`` and returns ``(σ, u, v)`` for each matrix of ``m`` ([B, p, q]).

  ``σ = ‖M v‖`` after ``iters`` rounds of ``u ← Mv/‖Mv‖, v ← Mᵀu/‖Mᵀu‖``; a lower
  bound on ``‖M‖₂`` that converges geometrically, fast when warm-started from the
  previous step's ``v``.
  """
  m = m.astype(jnp.float32)
  v = v.astype(jnp.float32)
  tiny = 1e-30
  for _ in range(iters):
    u = jnp.einsum("bpq,bq->bp", m, v)
    u = u / (jnp.linalg.norm(u, axis=-1, keepdims=True) + tiny)
    w = jnp.einsum("bpq,bp->bq", m, u)
    n = jnp.linalg.norm(w, axis=-1, keepdims=True)
    v = jnp.where(n > 0, w / (n + tiny), v)  # a zero matrix keeps its vector
  mv = jnp.einsum("bpq,bq->bp", m, v)
  sigma = jnp.linalg.norm(mv, axis=-1)
  u = mv / (sigma[:, None] + tiny)
  return sigma, u, v


def grouped_by_shape(fn, *columns: list[jax.Array]) -> list[tuple[jax.Array, ...]]:
  """``fn`` on concatenations of same-shaped stacks, results split back per item.

  ``columns`` are equal-length lists of arrays with a leading batch axis (item
  ``i`` is ``columns[0][i], columns[1][i], ...``); items whose arrays agree in
  shape past that axis and in dtype share one call. ``fn`` returns a tuple of
  arrays with the same leading batch axis. Twelve layers of the same shape then
  compile to one batched power iteration, not twelve.
  """
  groups: dict[tuple, list[int]] = {}
  for i, item in enumerate(zip(*columns)):
    key = tuple((x.shape[1:], x.dtype) for x in item)
    groups.setdefault(key, []).append(i)
  out: list[tuple[jax.Array, ...] | None] = [None] * len(columns[0])
  for idx in groups.values():
    stacked = [col[idx[0]] if len(idx) == 1 else jnp.concatenate([col[i] for i in idx])
               for col in columns]
    results = fn(*stacked)
    lo = 0
    for i in idx:
      hi = lo + columns[0][i].shape[0]
      out[i] = tuple(r if len(idx) == 1 else r[lo:hi] for r in results)
      lo = hi
  return out
