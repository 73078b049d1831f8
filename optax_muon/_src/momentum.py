"""Momentum for Muon, in the three forms implementations disagree on.

* ``"sum"`` (Moonlight, Keras, dion): ``M ← βM + G``; Nesterov input ``G + βM``.
* ``"ema"`` (Keller Jordan, PyTorch): ``M ← βM + (1-β)G``; Nesterov ``βM + (1-β)G``.
* ``"ema_debiased"`` (optax.contrib.muon): EMA with Adam-style bias correction,
  Nesterov ``β·M/(1-β^{t+1}) + (1-β)·G/(1-β^t)``.

Newton–Schulz normalizes its input, so ``"sum"`` and ``"ema"`` give the same
orthogonalized direction; ``"ema_debiased"`` mixes G and M differently early on.
"""

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import validation

__all__ = ["MOMENTUM_FORMS", "MomentumForm", "MomentumState", "muon_momentum"]

MOMENTUM_FORMS = ("sum", "ema", "ema_debiased")
MomentumForm = Literal["sum", "ema", "ema_debiased"]


class MomentumState(NamedTuple):
  count: jax.Array  # type: ignore[assignment]  # shape=(), dtype=int32.
  mu: Any  # like params, dtype=mu_dtype.


def muon_momentum(
    beta: jax.typing.ArrayLike = 0.95,
    *,
    nesterov: bool = True,
    form: MomentumForm = "sum",
    mu_dtype: Any = None,
) -> optax.GradientTransformation:
  """Heavy-ball or Nesterov momentum; outputs the Newton–Schulz input.

  Args:
    beta: momentum coefficient.
    nesterov: output the Nesterov look-ahead instead of the buffer.
    form: ``"sum"``, ``"ema"`` or ``"ema_debiased"`` (see module docstring).
    mu_dtype: dtype of the buffer (e.g. ``jnp.bfloat16``); default: the
      parameter's dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = muon_momentum(0.5, nesterov=False)
    >>> s = tx.init(jnp.zeros(2))
    >>> u, s = tx.update(jnp.ones(2), s); u, s = tx.update(jnp.ones(2), s)
    >>> u.tolist()
    [1.5, 1.5]
  """
  if form not in MOMENTUM_FORMS:
    raise ValueError(f"unknown momentum form {form!r}; valid choices: {MOMENTUM_FORMS}.")
  validation.check_beta(beta, "beta")
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

  def init_fn(params):
    return MomentumState(count=jnp.zeros([], jnp.int32),
                         mu=optax.tree.zeros_like(params, dtype=mu_dtype))

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    if form == "sum":
      mu = jax.tree.map(lambda m, g: beta * m + g, state.mu, updates)
      out = (jax.tree.map(lambda m, g: g + beta * m, mu, updates) if nesterov else mu)
    else:
      mu = jax.tree.map(lambda m, g: beta * m + (1 - beta) * g, state.mu, updates)
      if form == "ema":
        out = (jax.tree.map(lambda m, g: beta * m + (1 - beta) * g, mu, updates)
               if nesterov else mu)
      elif nesterov:
        c_mu = 1 - beta ** (count.astype(jnp.float32) + 1)
        c_g = 1 - beta ** count.astype(jnp.float32)
        out = jax.tree.map(lambda m, g: beta * m / c_mu + (1 - beta) * g / c_g, mu, updates)
      else:
        out = optax.tree.bias_correction(mu, beta, count)
    out = jax.tree.map(lambda o, g: o.astype(g.dtype), out, updates)
    mu = jax.tree.map(lambda m, old: m.astype(old.dtype), mu, state.mu)
    return out, MomentumState(count=count, mu=mu)

  return optax.GradientTransformation(init_fn, update_fn)
