"""Construction-time checks of hyperparameters: impossible values raise ``ValueError``.

Every check names the argument. Values that are not concrete (tracers, as
``optax.inject_hyperparams`` passes inside ``jit``) are left alone: they were
checked when the optimizer was first built from concrete values.

A learning-rate schedule is probed on the host at a log-spaced set of steps
(0 … 10⁷): a schedule that returns a negative or non-finite value there fails
at construction instead of silently skipping every step later.
"""

import math
from typing import Any

import jax
import numpy as np

__all__ = [
    "check_beta",
    "check_learning_rate",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
]

_PROBE_STEPS = (0, 1, 2, 3, 5, 10, 30, 100, 300, 1_000, 3_000, 10_000, 100_000, 1_000_000,
                10_000_000)


def _concrete(value: Any) -> float | None:
  """``value`` as a Python float, or ``None`` when it is traced or not a scalar number."""
  if isinstance(value, jax.core.Tracer) or isinstance(value, bool):
    return None
  try:
    arr = np.asarray(value)
  except Exception:  # pylint: disable=broad-except
    return None
  if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
    return None
  return float(arr)


def _fail(name: str, value: Any, expected: str):
  raise ValueError(f"{name} must be {expected}, got {value!r}.")


def check_positive(value: Any, name: str) -> None:
  """Finite and > 0."""
  v = _concrete(value)
  if v is not None and not (math.isfinite(v) and v > 0):
    _fail(name, value, "finite and > 0")


def check_nonnegative(value: Any, name: str) -> None:
  """Finite and >= 0."""
  v = _concrete(value)
  if v is not None and not (math.isfinite(v) and v >= 0):
    _fail(name, value, "finite and >= 0")


def check_beta(value: Any, name: str) -> None:
  """A decay rate in ``[0, 1)``."""
  v = _concrete(value)
  if v is not None and not 0 <= v < 1:
    _fail(name, value, "in [0, 1)")


def check_positive_int(value: Any, name: str) -> None:
  """An integer >= 1 (structural: never traced)."""
  if isinstance(value, jax.core.Tracer):
    raise ValueError(f"{name} is structural and cannot be traced; with "
                     f"optax.inject_hyperparams pass static_args=('{name}',).")
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    _fail(name, value, "an integer >= 1")


def check_learning_rate(value: Any, name: str = "learning_rate") -> None:
  """A float that is finite and >= 0, or a schedule that is so where probed.

  Examples:
    >>> check_learning_rate(3e-3)
    >>> check_learning_rate(-1.0)
    Traceback (most recent call last):
    ...
    ValueError: learning_rate must be finite and >= 0, got -1.0.
  """
  if callable(value):
    for step in _PROBE_STEPS:
      try:
        out = value(np.int32(min(step, np.iinfo(np.int32).max)))
      except Exception:  # pylint: disable=broad-except
        return  # a schedule that cannot run on the host (e.g. stateful): checked by use
      v = _concrete(out)
      if v is not None and not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} schedule returns {v!r} at step {step}; a learning rate "
                         "must be finite and >= 0.")
    return
  check_nonnegative(value, name)
