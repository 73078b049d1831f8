"""Newton–Schulz coefficient schedules, their scalar map and failure thresholds.

Each Newton–Schulz step applies the odd quintic ``p(σ) = aσ + bσ³ + cσ⁵`` to every
singular value of the (normalized) input, so a schedule is a ``(steps, 3)`` table
and its effect on the spectrum is the scalar composition ``f = p_T ∘ … ∘ p_1``.

Named schedules (``ns_coefficients(name, steps)``):

* ``"jordan"``: ``(3.4445, -4.7750, 2.0315)`` every step (Keller Jordan's Muon).
* ``"polar_express"``: minimax-optimal quintics on a shrinking interval
  (Amsel et al. 2025), *computed* here for any step count and lower bound.
* ``"nanogpt5"`` (alias ``"dion"``): the five triples of modded-nanogpt (2025),
  optax's ``dion`` preset.

A schedule shorter than the requested number of steps repeats its last triple.

References:
  Amsel, Persson, Musco, Gower, `The Polar Express: Optimal Matrix Sign Methods
  and Their Application to the Muon Algorithm <https://arxiv.org/abs/2505.16932>`_.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import jax
import numpy as np

__all__ = [
    "SCHEDULES",
    "NORMALIZATION_SCALE",
    "ns_coefficients",
    "polar_express_coefficients",
    "ns_scalar_map",
    "ns_failure_threshold",
    "ns_spectral_norm_range",
    "schedule_input_scale",
]

_JORDAN = ((3.4445, -4.7750, 2.0315),)
_NANOGPT5 = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)
SCHEDULES = ("jordan", "polar_express", "nanogpt5", "dion")

# Input normalization ν: X / (ν‖X‖_F). Polar Express divides by 1.01 (its safety
# factor), the modded-nanogpt schedule by 1.02 (docs/algorithms.md, "Newton–Schulz").
NORMALIZATION_SCALE = {"jordan": 1.0, "polar_express": 1.01, "nanogpt5": 1.02, "dion": 1.0}

Schedule = Union[str, Sequence[Sequence[float]], np.ndarray]


def _optimal_odd_quintic(lo: float, hi: float) -> tuple[float, float, float]:
  """Minimax odd quintic approximating 1 on ``[lo, hi]`` (Remez exchange).

  The optimum equioscillates at 4 points ``lo < q < r < hi`` (Chebyshev
  alternation for a 3-parameter odd family); ``q, r`` are the interior extrema.
  """
  if lo / hi > 1 - 5e-6:  # degenerate interval: the limit polynomial
    return 15 / 8 / hi, -10 / 8 / hi**3, 3 / 8 / hi**5
  q, r = (3 * lo + hi) / 4, (lo + 3 * hi) / 4
  prev_err = np.inf
  for _ in range(100):
    pts = np.array([lo, q, r, hi])
    lhs = np.stack([pts, pts**3, pts**5, np.array([1.0, -1.0, 1.0, -1.0])], axis=1)
    a, b, c, err = np.linalg.solve(lhs, np.ones(4))
    disc = np.sqrt(max(9 * b * b - 20 * a * c, 0.0))
    q, r = np.sqrt((-3 * b + np.array([-disc, disc])) / (10 * c))
    if abs(prev_err - err) < 1e-15:
      break
    prev_err = err
  return float(a), float(b), float(c)


@functools.lru_cache(maxsize=64)
def polar_express_coefficients(
    steps: int,
    lower_bound: float = 1e-3,
    *,
    cushion: float = 0.02407327424182761,
    safety: float = 1.01,
) -> np.ndarray:
  """Computes the Polar Express schedule for any step count and lower bound.

  Step ``t`` picks the minimax odd quintic on ``[max(ℓ, cushion·u), u]``, rescales
  it to be centred on 1 over ``[ℓ, u]``, then maps ``ℓ ← p(ℓ), u ← 2 − ℓ``. All
  but the last polynomial are divided by the safety factor
  (``a/s, b/s³, c/s⁵``), matching the published schedule.

  Args:
    steps: number of quintic steps (>= 1).
    lower_bound: smallest normalized singular value the schedule must lift.
    cushion: the paper's cushion, keeping early polynomials well conditioned.
    safety: the paper's safety factor against round-off above 1.

  Returns:
    A float64 array of shape ``(steps, 3)``.

  Examples:
    >>> polar_express_coefficients(8)[-1].round(6).tolist()
    [1.875, -1.25, 0.375]
  """
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}.")
  if not 0 < lower_bound < 1:
    raise ValueError(f"lower_bound must be in (0, 1), got {lower_bound}.")
  lo, hi = float(lower_bound), 1.0
  out = []
  for _ in range(steps):
    a, b, c = _optimal_odd_quintic(max(lo, cushion * hi), hi)
    p_lo = a * lo + b * lo**3 + c * lo**5
    p_hi = a * hi + b * hi**3 + c * hi**5
    k = 2.0 / (p_lo + p_hi)
    a, b, c = a * k, b * k, c * k
    out.append((a, b, c))
    lo = a * lo + b * lo**3 + c * lo**5
    hi = 2.0 - lo
  table = np.asarray(out, dtype=np.float64)
  table[:-1] /= np.array([safety, safety**3, safety**5])
  return table


def _as_table(schedule: Schedule) -> np.ndarray:
  table = np.asarray(schedule, dtype=np.float64)
  if table.ndim == 1:
    table = table[None]
  if table.ndim != 2 or table.shape[-1] != 3 or table.shape[0] < 1:
    raise ValueError(
        "a Newton–Schulz schedule must be a name in "
        f"{SCHEDULES} or an array of shape (3,) or (n, 3); got shape {table.shape}."
    )
  if not np.all(np.isfinite(table)):
    raise ValueError("Newton–Schulz coefficients must be finite.")
  return table


def ns_coefficients(schedule: Schedule = "jordan", steps: int = 5,
                    *, lower_bound: float = 1e-3) -> np.ndarray:
  """The ``(steps, 3)`` coefficient table of a schedule.

  Args:
    schedule: a name in ``SCHEDULES`` or explicit triples, shape ``(3,)`` or
      ``(n, 3)``; a table shorter than ``steps`` repeats its last triple, a
      longer one is cut to its first ``steps`` rows.
    steps: number of Newton–Schulz steps (>= 1).
    lower_bound: Polar Express only: smallest singular value to lift.

  Returns:
    A float64 numpy array of shape ``(steps, 3)``.

  Raises:
    ValueError: for an unknown name, ``steps < 1`` or a malformed table.

  Examples:
    >>> ns_coefficients("jordan", 2).tolist()
    [[3.4445, -4.775, 2.0315], [3.4445, -4.775, 2.0315]]
  """
  if isinstance(steps, jax.core.Tracer):
    raise ValueError(
        "the number of Newton–Schulz steps is structural and cannot be traced; "
        "with optax.inject_hyperparams pass static_args=('ns_steps',).")
  if not isinstance(steps, (int, np.integer)) and getattr(steps, "ndim", None) == 0:
    steps = int(steps)  # a concrete 0-d array
  if not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"Newton–Schulz steps must be an integer >= 1, got {steps!r}.")
  if isinstance(schedule, str):
    if schedule == "jordan":
      table = np.asarray(_JORDAN)
    elif schedule in ("nanogpt5", "dion"):
      table = np.asarray(_NANOGPT5)
    elif schedule == "polar_express":
      return polar_express_coefficients(int(steps), float(lower_bound)).copy()
    else:
      raise ValueError(
          f"unknown Newton–Schulz schedule {schedule!r}; valid names: {SCHEDULES}."
      )
  else:
    table = _as_table(schedule)
  if table.shape[0] >= steps:
    return table[:steps].copy()
  pad = np.repeat(table[-1:], steps - table.shape[0], axis=0)
  return np.concatenate([table, pad], axis=0)


def schedule_input_scale(schedule: Schedule) -> float:
  """The ν of ``X / (ν‖X‖_F)`` for a schedule (1.0 for explicit tables)."""
  return NORMALIZATION_SCALE.get(schedule, 1.0) if isinstance(schedule, str) else 1.0


def ns_scalar_map(sigma: np.ndarray, schedule: Schedule = "jordan",
                  steps: int = 5) -> np.ndarray:
  """What the iteration does to normalized singular values: ``f(σ)``.

  ``σ`` is taken *after* the ``X / (ν‖X‖_F)`` normalization.

  Examples:
    >>> float(ns_scalar_map(1.0, "jordan", 5).round(3))
    0.696
  """
  s = np.asarray(sigma, dtype=np.float64)
  for a, b, c in ns_coefficients(schedule, steps):
    s2 = s * s
    s = s * (a + s2 * (b + c * s2))
  return s


def ns_spectral_norm_range(schedule: Schedule = "jordan", steps: int = 5,
                           lower: float = 1e-3) -> tuple[float, float]:
  """Bounds on ``‖O‖₂`` for any input whose top normalized σ is at least ``lower``.

  After ``X / (ν‖X‖_F)`` the top singular value lies in ``[1/(ν·sqrt(rank)), 1/ν]``
  and ``‖O‖₂ = max_i f(σ_i)``, so ``‖O‖₂`` is at least ``min f`` over
  ``[lower, 1/ν]`` and at most ``max f`` over ``(0, 1/ν]``. The default ``lower``
  holds for every matrix of rank below ``1/(ν·1e-3)² ≈ 980,000``. Exact
  arithmetic: rounding adds about ``1e-6`` in float32.

  Examples:
    >>> lo, hi = ns_spectral_norm_range("polar_express", 6)
    >>> round(lo, 4), round(hi, 4)
    (0.9956, 1.0012)
  """
  top = 1.0 / schedule_input_scale(schedule)
  if not 0 < lower < top:
    raise ValueError(f"lower must be in (0, {top:g}), got {lower}.")
  least = ns_scalar_map(np.logspace(np.log10(lower), np.log10(top), 4001), schedule, steps)
  every = ns_scalar_map(np.logspace(-12, np.log10(top), 12001), schedule, steps)
  return float(least.min()), float(every.max())


def ns_failure_threshold(schedule: Schedule = "jordan", steps: int = 5,
                         level: float = 0.5) -> float:
  """Smallest normalized σ whose image ``f(σ)`` reaches ``level``.

  Singular directions of the normalized input below this value are not
  orthogonalized (docs/algorithms.md, "Newton–Schulz"). Returns ``inf`` if ``f`` never reaches
  ``level`` on ``(0, 1]``.

  Examples:
    >>> f"{ns_failure_threshold('jordan', 5, 0.5):.2e}"
    '1.07e-03'
  """
  if not 0 < level:
    raise ValueError(f"level must be > 0, got {level}.")
  # The composed map rises monotonically from 0 and may oscillate afterwards
  # (Jordan's ends in [0.68, 1.13]): locate the first crossing on a log grid,
  # then refine it by bisection.
  grid = np.logspace(-12, 0, 4801)
  above = ns_scalar_map(grid, schedule, steps) >= level
  if not above.any():
    return float("inf")
  i = int(np.argmax(above))
  if i == 0:
    return float(grid[0])
  lo, hi = grid[i - 1], grid[i]
  for _ in range(60):
    mid = np.sqrt(lo * hi)
    if ns_scalar_map(mid, schedule, steps) >= level:
      hi = mid
    else:
      lo = mid
  return float(hi)
