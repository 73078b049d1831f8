"""Decoupled weight decay ``W ← W − f_t·λ·W`` (docs/algorithms.md, "Weight decay").

Place it *after* ``optax.scale_by_learning_rate`` in a chain: it adds
``−f_t·λ·W`` to the (already negative, already lr-scaled) update, so the decay
never passes through the preconditioner nor through Muon's shape scale
(Moonlight: the decay sees the base learning rate).

* ``mode="coupled"`` (PyTorch/optax): ``f_t = η_t``, the scheduled learning rate.
* ``mode="independent"`` (Loshchilov & Hutter): ``f_t = η_t/η_peak``, only the
  schedule multiplier, so ``λ`` is the per-step decay at peak.

With zero gradients, ``W_t = (1 − f·λ)^t W_0`` exactly. Works on ordinary trees
and on :class:`MatrixStacks` alike.
"""

import re
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import matrices
from optax_muon._src import validation

__all__ = ["decoupled_weight_decay", "WeightDecayState", "path_mask"]

WEIGHT_DECAY_MODES = ("coupled", "independent")


class WeightDecayState(NamedTuple):
  count: jax.Array  # type: ignore[assignment]  # shape=(), dtype=int32: the schedule's step.


def path_mask(pattern: str | None) -> Callable[[Any], Any] | None:
  """``params -> tree of bools``: ``True`` where ``re.search(pattern, path)`` (``None``: all)."""
  if pattern is None:
    return None
  regex = re.compile(pattern)
  return lambda tree: jax.tree_util.tree_map_with_path(
      lambda path, _: bool(regex.search(dn.path_to_str(path))), tree)


def _factors(mask: Any, updates: Any) -> Any:
  """Per leaf of ``updates``: True/False, or for stacks a ``[rows, 1, 1]`` 0/1 array."""
  if matrices.is_stacks(updates):
    if mask is None:
      return updates.map(lambda g, u: True)
    if not isinstance(mask, str):
      raise ValueError("decoupled_weight_decay on matrix stacks takes mask=None or a path "
                       f"regex (str), got {mask!r}.")
    regex = re.compile(mask)
    return updates.map(lambda g, u: matrices.row_mask(g, lambda p: bool(regex.search(p)))
                       .astype(u.dtype).reshape((-1,) + (1,) * (u.ndim - 1)))
  if mask is None:
    return jax.tree.map(lambda _: True, updates)
  if isinstance(mask, str):
    mask = path_mask(mask)
  m = mask(updates) if callable(mask) else mask
  return jax.tree.map(lambda flag, sub: jax.tree.map(lambda _: flag, sub), m, updates)


def decoupled_weight_decay(
    weight_decay: jax.typing.ArrayLike,
    learning_rate: optax.ScalarOrSchedule = 1.0,
    *,
    mode: Literal["coupled", "independent"] = "coupled",
    peak_learning_rate: jax.typing.ArrayLike | None = None,
    mask: Any = None,
) -> optax.GradientTransformation:
  """Adds ``−f_t·λ·W`` to the updates.

  Args:
    weight_decay: ``λ`` (>= 0).
    learning_rate: ``η_t`` (float or schedule), as given to the optimizer.
    mode: ``"coupled"`` (``f_t = η_t``) or ``"independent"`` (``f_t = η_t/η_peak``).
    peak_learning_rate: ``η_peak`` for ``"independent"`` with a schedule
      (default: the constant learning rate itself).
    mask: which leaves decay: ``None`` (all), a path regex (``re.search`` on
      ``a/b/c`` paths; also inside :func:`matrix_partition`), or, on ordinary
      trees, a tree (or prefix) of bools or ``params -> tree``.

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = decoupled_weight_decay(0.1, learning_rate=0.5)
    >>> u, _ = tx.update(jnp.zeros(2), tx.init(jnp.ones(2)), jnp.ones(2))
    >>> u.tolist()
    [-0.05000000074505806, -0.05000000074505806]
  """
  if mode not in WEIGHT_DECAY_MODES:
    raise ValueError(f"unknown weight decay mode {mode!r}; valid: {WEIGHT_DECAY_MODES}.")
  validation.check_nonnegative(weight_decay, "weight_decay")
  validation.check_learning_rate(learning_rate)
  if mode == "independent" and callable(learning_rate) and peak_learning_rate is None:
    raise ValueError("mode='independent' with a learning-rate schedule needs peak_learning_rate.")

  def init_fn(params):
    del params
    return WeightDecayState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("decoupled_weight_decay needs params in update(updates, state, params).")
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    factor = lr
    if mode == "independent":
      factor = lr / (learning_rate if peak_learning_rate is None else peak_learning_rate)

    def decay(u, p, m):
      if m is False:
        return u
      scale = factor * weight_decay if m is True else factor * weight_decay * m
      return (u - scale * p).astype(u.dtype)

    out = jax.tree.map(decay, updates, params, _factors(mask, updates))
    return out, WeightDecayState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)
