"""Skip a step whose gradients (or resulting updates) are not finite."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["SkipNonFiniteState", "skip_nonfinite", "skipped_steps", "all_finite"]


class SkipNonFiniteState(NamedTuple):
  skipped_steps: jax.Array  # shape=(), int32: total steps skipped so far.
  inner_state: Any


def all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """Wraps ``inner``: a step with a NaN/Inf gradient or update returns zero
  updates, keeps ``inner``'s state unchanged and counts one skipped step.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> tx = skip_nonfinite(optax.sgd(0.1))
    >>> s = tx.init(jnp.zeros(2))
    >>> u, s = tx.update(jnp.array([1.0, jnp.nan]), s)
    >>> u.tolist(), int(s.skipped_steps)
    ([0.0, 0.0], 1)
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return SkipNonFiniteState(jnp.zeros([], jnp.int32), inner.init(params))

  def update_fn(updates, state, params=None, **extra):
    new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra)
    ok = jnp.logical_and(all_finite(updates), all_finite(new_updates))
    new_updates = jax.tree.map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)), new_updates)
    new_inner = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_inner, state.inner_state)
    skipped = state.skipped_steps + jnp.where(ok, 0, 1).astype(jnp.int32)
    return new_updates, SkipNonFiniteState(skipped, new_inner)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def skipped_steps(opt_state: Any) -> jax.Array:
  """Total steps skipped by every :func:`skip_nonfinite` inside ``opt_state`` (int32).

  Examples:
    >>> import jax.numpy as jnp, optax_muon
    >>> tx = optax_muon.muon(1e-3)
    >>> s = tx.init({"w": jnp.ones((2, 2))})
    >>> _, s = tx.update({"w": jnp.full((2, 2), jnp.nan)}, s, {"w": jnp.ones((2, 2))})
    >>> int(skipped_steps(s))
    1
  """
  found = [x.skipped_steps for x in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, SkipNonFiniteState))
           if isinstance(x, SkipNonFiniteState)]
  return sum(found, jnp.zeros([], jnp.int32))
