"""Decoupled weight decay ``W ← W − f_t·λ·W`` (ALGORITHMS.md §3).

Place it *after* ``optax.scale_by_learning_rate`` in a chain: it adds
``−f_t·λ·W`` to the (already negative, already lr-scaled) update, so the decay
never passes through the preconditioner nor through Muon's shape scale
(Moonlight: the decay sees the base learning rate).

* ``mode="coupled"`` (PyTorch/optax): ``f_t = η_t``, the scheduled learning rate.
* ``mode="independent"`` (Loshchilov & Hutter): ``f_t = η_t/η_peak``, only the
  schedule multiplier, so ``λ`` is the per-step decay at peak.

With zero gradients, ``W_t = (1 − f·λ)^t W_0`` exactly.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["decoupled_weight_decay", "WeightDecayState"]


class WeightDecayState(NamedTuple):
  count: jax.Array  # shape=(), dtype=int32: the schedule's step.


def _resolve_mask(mask, params):
  if mask is None:
    return jax.tree.map(lambda _: True, params)
  m = mask(params) if callable(mask) else mask
  return jax.tree.map(lambda flag, sub: jax.tree.map(lambda _: flag, sub), m, params)


def decoupled_weight_decay(
    weight_decay: jax.typing.ArrayLike,
    learning_rate: optax.ScalarOrSchedule = 1.0,
    *,
    mode: Literal["coupled", "independent"] = "coupled",
    peak_learning_rate: jax.typing.ArrayLike | None = None,
    mask: Any | Callable[[Any], Any] | None = None,
) -> optax.GradientTransformation:
  """Adds ``−f_t·λ·W`` to the updates.

  Args:
    weight_decay: ``λ``.
    learning_rate: ``η_t`` (float or schedule), as given to the optimizer.
    mode: ``"coupled"`` (``f_t = η_t``) or ``"independent"`` (``f_t = η_t/η_peak``).
    peak_learning_rate: ``η_peak`` for ``"independent"`` with a schedule
      (default: the constant learning rate itself).
    mask: a tree (or prefix) of bools, or ``params -> tree``; ``False`` leaves
      are not decayed.

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = decoupled_weight_decay(0.1, learning_rate=0.5)
    >>> u, _ = tx.update(jnp.zeros(2), tx.init(jnp.ones(2)), jnp.ones(2))
    >>> u.tolist()
    [-0.05000000074505806, -0.05000000074505806]
  """
  if mode not in ("coupled", "independent"):
    raise ValueError(f"unknown weight decay mode {mode!r}; valid: ('coupled', 'independent').")
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
    mask_tree = _resolve_mask(mask, updates)
    out = jax.tree.map(
        lambda u, p, m: (u - factor * weight_decay * p).astype(u.dtype) if m else u,
        updates, params, mask_tree)
    return out, WeightDecayState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)
