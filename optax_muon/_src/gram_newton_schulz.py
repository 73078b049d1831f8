"""Gram Newton–Schulz: the Newton–Schulz iteration run on the small Gram matrix.

For an oriented ``X`` (``m × n``, ``m ≤ n``) the standard step is
``X ← (aI + bA + cA²) X`` with ``A = XXᵀ``. Every step multiplies ``X`` on the
left by a polynomial in the current Gram matrix, so after ``k`` steps
``X_k = Q_k X_0`` where ``Q_k`` is an ``m × m`` polynomial in ``R_0 = X_0X_0ᵀ``;
all ``Q_k``, ``R_k = X_kX_kᵀ`` and ``P_k = aI + bR_k + cR_k²`` commute. Gram
Newton–Schulz (Zhang, Amsel, Chen, Dao 2026) therefore iterates on ``m × m``
matrices only::

    P = aI + bR + cR²;   Q ← Q P;   R ← P R P
    ... and applies X ← Q X once at the end of a block of steps.

Restarts. In exact arithmetic one block would do. In floating point ``R_0``
carries rounding noise of about ``u·‖R‖`` (``u`` the unit roundoff), i.e. it
resolves singular values only down to ``√u·σ₁`` (the Gram squares the
condition number), and a spurious negative eigenvalue ``−δ`` of ``R`` is not
damped like a positive one but grows by at least ``a²`` per step (``b < 0``,
``c > 0``) and then explodes. A *restart* applies the accumulated ``Q`` to ``X``
and recomputes the Gram from the actual ``X``, resetting that noise. The
default placement (:func:`default_restarts`) bounds, per block, the gain
``Π = ∏ a_k²`` that the block applies to the Gram's rounding floor (``a_k`` the
slope of step ``k`` at 0): ``Π ≤ 250``, except ``Π ≤ 2000`` for the first block
under the ``"frobenius"`` normalization, whose ``R_0`` has ``tr R_0 = 1/ν²``
and so (for any matrix of rank > 1) top eigenvalues below 1 and a lower
rounding floor; later blocks, and the other normalizations, put ``R``'s top
eigenvalues at ≈1. Calibrated on f32 and bf16 against a float64 NumPy
reference over Gaussian, geometric (to 1e-5), power-law and low-rank spectra;
both precisions land on the same placements: with ``"frobenius"``, Jordan×5 →
``(3,)`` (blocks 3+2), nanogpt5, Polar Express ×5 and ×8 → ``(2, 4)``; with
the others, Jordan×5 → ``(2, 4)`` too.

Precision. As in the standard kernel every product accumulates in ≥ f32 and
is rounded once to the compute dtype. In addition every ``m × m`` matrix is
stored as ``s·I + M`` with ``M`` traceless and the scalar ``s`` kept in f32
(``c = tr/m`` moved into ``s`` before rounding; m² work per product). ``Q``'s
eigenvalues span ``[≈1, ∏a]`` and ``R``'s cluster near 1 in late steps, so this
takes the large identity part out of what is rounded: in bf16 it halves the
error and brings it to (or below) the standard iteration's; it helps f32 too.
Measured against the exact float64 iteration ``U f(σ̂) Vᵀ`` (ratios gram /
standard, default restarts): f32 0.1–3 (absolute ≤ 1e-4; ≤ 4e-6 from the
standard kernel on Gaussian inputs), bf16 0.5–1.4 from ``m = 64`` up. Weak spot:
small bf16 matrices (``m ≤ 32``) under Polar Express, up to ≈2.5×: there the
top singular values are large, their gains ``q ≈ 1/σ`` small, and the rounding
of ``Q`` (spread ``[1/σ₁, ∏a]``) is not relative to them; likewise square
Gaussian matrices in bf16, ≈1.5× (``"auto"`` keeps those on the standard path).

Cost (2 flops per multiply-add, iteration matmuls only; ``r`` = restarts + 1
blocks of lengths ``L_j`` summing to ``T``): a block costs one Gram and one
apply (``4m²n``) plus ``4L_j − 3`` ``m × m`` products (first step: ``R²``,
``RP``, ``P(RP)``; middle: also ``QP``; last: ``R²``, ``QP``), so

    standard:  T (4m²n + 2m³)          gram:  4 r m²n + (8T − 6r) m³

Their break-even aspect ratio is exactly ``n/m = 3/2`` for every ``T`` and
``r``; at 1:4, Jordan×5 with one restart needs 60/90 = 67 % of the standard
flops (56 % without restart). ``method="auto"`` picks Gram when it saves at
least ``AUTO_MIN_SAVING`` (10 %) of the flops: for 5 steps, at ``n/m ≥ 1.9``
with one restart and ``≥ 2.17`` with two.

References:
  Zhang, Amsel, Chen, Dao, `Gram Newton-Schulz
  <https://tridao.me/blog/2026/gram-newton-schulz/>`_, 2026.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import ns_prologue as prologue

__all__ = [
    "METHODS",
    "Method",
    "AUTO_MIN_SAVING",
    "check_method",
    "choose_method",
    "default_restarts",
    "flops",
    "iterate",
    "table_flops",
]

METHODS = ("standard", "gram", "auto")
Method = Literal["standard", "gram", "auto"]
AUTO_MIN_SAVING = 0.1
# Largest gain ∏ a_k² a block may apply to its Gram's rounding floor.
_FIRST_BLOCK_GAIN = 2000.0
_BLOCK_GAIN = 250.0


def check_method(method: str) -> None:
  """Raises ``ValueError`` unless ``method`` is one of ``METHODS``."""
  if method not in METHODS:
    raise ValueError(f"unknown Newton–Schulz method {method!r}; valid choices: {METHODS}.")


def _table(table) -> np.ndarray:
  return np.atleast_2d(np.asarray(table, np.float64))


def default_restarts(table, normalization: str = "frobenius") -> tuple[int, ...]:
  """Default restart steps of a ``(steps, 3)`` table (see the module docstring).

  Greedy from the first step: a block grows while ``∏ a_k²`` over it stays
  within 250, or 2000 for the first block under ``"frobenius"``. Returns the
  0-based step indices before which ``X`` is re-formed.

  Examples:
    >>> from optax_muon import ns_coefficients
    >>> default_restarts(ns_coefficients("jordan", 5))
    (3,)
    >>> default_restarts(ns_coefficients("polar_express", 8))
    (2, 4)
    >>> default_restarts(ns_coefficients("jordan", 5), "spectral")
    (2, 4)
  """
  out, gain = [], 1.0
  budget = _FIRST_BLOCK_GAIN if normalization == "frobenius" else _BLOCK_GAIN
  for i, a in enumerate(_table(table)[:, 0]):
    if i > 0 and gain * a * a > budget:
      out.append(i)
      gain, budget = 1.0, _BLOCK_GAIN
    gain *= a * a
  return tuple(out)


def check_restarts(steps: int, restarts: Sequence[int]) -> tuple[int, ...]:
  """Sorted, de-duplicated restart indices; each must be in ``[1, steps − 1]``."""
  try:
    out = tuple(sorted({int(r) for r in restarts}))
  except (TypeError, ValueError):
    raise ValueError(f"restarts must be a sequence of step indices, got {restarts!r}.") from None
  if any(not 0 < r < steps for r in out):
    raise ValueError(f"Gram Newton–Schulz restarts must be step indices in [1, {steps - 1}] "
                     f"(X is re-formed before that step); got {tuple(restarts)}.")
  return out


def _resolve_restarts(table: np.ndarray, restarts, normalization: str) -> tuple[int, ...]:
  if restarts is None:
    return default_restarts(table, normalization)
  return check_restarts(len(table), restarts)


def _flops(m: int, n: int, steps: int, blocks: int) -> tuple[float, float]:
  m, n = min(m, n), max(m, n)
  standard = steps * (4.0 * m * m * n + 2.0 * m**3)
  gram = 4.0 * blocks * m * m * n + (8.0 * steps - 6.0 * blocks) * m**3
  return standard, gram


def choose_method(method: str, m: int, n: int, table, normalization: str = "frobenius",
                  restarts: Sequence[int] | None = None) -> str:
  """``"standard"`` or ``"gram"``: ``method`` itself, or the flop model's pick for ``"auto"``.

  Examples:
    >>> from optax_muon import ns_coefficients
    >>> [choose_method("auto", 1024, n, ns_coefficients("jordan", 5))
    ...  for n in (1024, 1536, 2048, 4096)]
    ['standard', 'standard', 'gram', 'gram']
  """
  check_method(method)
  if method != "auto":
    return method
  table = _table(table)
  blocks = 1 + len(_resolve_restarts(table, restarts, normalization))
  standard, gram = _flops(m, n, len(table), blocks)
  return "gram" if gram <= (1.0 - AUTO_MIN_SAVING) * standard else "standard"


def flops(m: int, n: int, steps: int, method: str = "standard", *,
          schedule: coeffs_lib.Schedule = "jordan",
          normalization: str = "frobenius",
          restarts: Sequence[int] | None = None) -> float:
  """Matmul flops of one ``m × n`` orthogonalization (either orientation).

  Args:
    m, n: the matrix shape.
    steps: Newton–Schulz steps.
    method: ``"standard"``, ``"gram"``, or ``"auto"`` (the flops of the method
      ``"auto"`` picks).
    schedule, normalization: whose default restarts ``"gram"``/``"auto"`` use.
    restarts: explicit restart steps instead of the schedule's default.

  Returns:
    ``T(4m²n + 2m³)`` (standard) or ``4rm²n + (8T − 6r)m³`` (gram, ``r``
    blocks), ``m`` the short side.

  Examples:
    >>> flops(1024, 4096, 5, "gram") / flops(1024, 4096, 5, "standard")
    0.6666666666666666
  """
  check_method(method)
  return table_flops(m, n, coeffs_lib.ns_coefficients(schedule, steps), method,
                     normalization, restarts)


def table_flops(m: int, n: int, table, method: str = "standard",
                normalization: str = "frobenius",
                restarts: Sequence[int] | None = None) -> float:
  """:func:`flops` for a concrete ``(steps, 3)`` coefficient table.

  Examples:
    >>> from optax_muon import ns_coefficients
    >>> table_flops(1024, 4096, ns_coefficients("jordan", 5), "gram") == flops(
    ...     1024, 4096, 5, "gram")
    True
  """
  table = _table(table)
  method = choose_method(method, m, n, table, normalization, restarts)
  standard, gram = _flops(m, n, len(table),
                          1 + len(_resolve_restarts(table, restarts, normalization)))
  return standard if method == "standard" else gram


def iterate(prepared: prologue.Prepared, table: np.ndarray, normalization: str,
            restarts: Sequence[int] | None = None) -> jax.Array:
  """Gram Newton–Schulz steps on a prepared (oriented, normalized) ``[B, m, n]`` stack.

  Called by ``newton_schulz.orthogonalize_matrices(..., method="gram")``, which
  prepares the input and orients the result back.

  Args:
    prepared: the stack after :func:`ns_prologue.prepare` (``m <= n``), with the
      first Gram (and its square) when the normalization made them.
    table: ``(steps, 3)`` coefficients.
    normalization: the first-step normalization used (sets the default restarts).
    restarts: 0-based steps before which ``X ← QX`` and the Gram is recomputed;
      ``None``: :func:`default_restarts`; ``()``: none; every step: the
      standard iteration.

  Returns:
    The iterated ``[B, m, n]`` stack, in the compute dtype.
  """
  table = _table(table)
  steps = [tuple(float(c) for c in row) for row in table]
  cuts = [0, *_resolve_restarts(table, restarts, normalization), len(steps)]
  x = prepared.x
  b, m, _ = x.shape
  dt, acc = x.dtype, prologue.acc_dtype(x.dtype)
  r0 = None if prepared.first_gram is None else prepared.first_gram.astype(acc)
  r0_sq = None if prepared.first_gram_sq is None else prepared.first_gram_sq.astype(acc)

  # m × m matrices are pairs (s, M) meaning s·I + M: s [B,1,1] in acc, M in dt
  # and traceless up to rounding.
  eye = jnp.eye(m, dtype=acc)

  def center(shift, mat):
    c = jnp.trace(mat, axis1=1, axis2=2)[:, None, None] / m
    return shift + c, (mat - c * eye).astype(dt)

  def mul(u, v):  # (s I + M)(t I + N) = st I + (sN + tM + MN)
    (su, mu), (sv, mv) = u, v
    return center(su * sv, su * mv.astype(acc) + sv * mu.astype(acc) + prologue.bmm(mu, mv))

  zero = jnp.zeros((b, 1, 1), acc)
  for start, stop in zip(cuts, cuts[1:]):
    r = center(zero, prologue.gram(x) if r0 is None else r0)
    q = None
    for i in range(start, stop):
      ca, cb, cc = steps[i]
      r_sq = mul(r, r) if r0_sq is None else center(zero, r0_sq)
      r0_sq = None
      # P = aI + bR + cR²; the matrix parts of R and R² are traceless already.
      p = (ca + cb * r[0] + cc * r_sq[0],
           (cb * r[1].astype(acc) + cc * r_sq[1].astype(acc)).astype(dt))
      q = p if q is None else mul(q, p)
      if i < stop - 1:
        r = mul(p, mul(r, p))  # R ← P R P
    assert q is not None  # start < stop: at least one step ran
    x = (q[0] * x.astype(acc) + prologue.bmm(q[1], x)).astype(dt)  # X ← Q X, one rounding
    r0 = None
  return x
