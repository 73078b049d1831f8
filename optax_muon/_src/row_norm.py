"""Muown's per-output-neuron magnitude/direction split (docs/algorithms.md, "Muown").

Each hidden matrix is ``W = D·diag(g)``: unit-norm output vectors ``D`` (for a
Flax ``[fan_in, fan_out]`` kernel, the *columns*, norms over axis 0) and one
magnitude ``g_j`` per output neuron. The direction is stored un-normalized as
``V = D·diag(ν)`` (only its norms ``ν`` are kept) and stepped by the direction
transform (Muon by default); ``g`` is stepped by the magnitude transform (Adam
by default, sign descent as an option). The model still sees one ``W``; this
transform returns the additive update that lands on the recomposed weight.

Per step, with ``G = dL/dW``:

    D  = W / g                      ∇g = Σ_fan_in (G ⊙ D)
    V  = D ⊙ ν                      ∇V = (g/ν) ⊙ (G − D ⊙ ∇g)   (⟂ each column of V)
    V' = V + direction(∇V)          g' = g + magnitude(∇g)
    W' = (V' / ‖V'‖) ⊙ g'           update = W' − W,   ν ← ‖V'‖

``g`` is refreshed from ``W`` each step (``g = sign(g)·‖W‖``), so a decoupled
weight decay chained after this transform is reflected in the next step's
magnitudes. After a step without decay, ``‖W'_j‖ = |g'_j|`` for every neuron.

A neuron whose column is exactly zero (a zero-initialized output projection)
has no direction and no magnitude gradient. It takes a plain Muon step instead:
its ``∇V`` is the raw gradient column and its new column is the direction step
itself, ``W'_j = direction(∇V)_j``, which gives it a norm; from the next step on
it is split like every other neuron.

References:
  Lion, Hübler, Li, Orvieto, He, `Muown <https://arxiv.org/abs/2605.10797>`_.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import matrices

__all__ = ["row_norm_ell_inf", "RowNormState", "neuron_norms", "default_magnitude",
           "MAGNITUDE_OPTIMIZERS"]

MAGNITUDE_OPTIMIZERS = ("adam", "sign")
_MIN_MAGNITUDE = 1e-7
_ZERO = 1e-30


class RowNormState(NamedTuple):
  magnitude: Any  # MatrixStacks of [B, fan_out] float32: g.
  direction_norm: Any  # MatrixStacks of [B, fan_out] float32: ν.
  direction_state: Any  # state of the direction transform (over MatrixStacks of V).
  magnitude_state: Any  # state of the magnitude transform (over MatrixStacks of g).


def neuron_norms(m: jax.Array) -> jax.Array:
  """Per-output-neuron norms of a ``[B, fan_in, fan_out]`` stack: ``[B, fan_out]``."""
  return jnp.sqrt(jnp.sum(jnp.square(m.astype(jnp.float32)), axis=1))


def _safe(x):
  sign = jnp.where(x < 0, -1.0, 1.0)
  return sign * jnp.maximum(jnp.abs(x), _MIN_MAGNITUDE)


def default_magnitude(learning_rate: optax.ScalarOrSchedule, kind: str = "adam", *,
                      b1=0.9, b2=0.95, eps=1e-8) -> optax.GradientTransformation:
  """Adam (betas 0.9/0.95) or sign descent on the per-neuron magnitudes."""
  if kind == "adam":
    return optax.chain(optax.scale_by_adam(b1, b2, eps),
                       optax.scale_by_learning_rate(learning_rate))
  if kind == "sign":
    return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(learning_rate))
  raise ValueError(f"unknown magnitude optimizer {kind!r}; valid: {MAGNITUDE_OPTIMIZERS}.")


class _Split(NamedTuple):
  g: jax.Array  # [B, n] magnitudes (sign kept)
  v: jax.Array  # [B, m, n] un-normalized direction
  grad_v: jax.Array
  grad_g: jax.Array
  zero: jax.Array  # [B, n] bool: neurons whose column is exactly zero


def _split(w, grad, g_sign, nu) -> _Split:
  w32, g32 = w.astype(jnp.float32), grad.astype(jnp.float32)
  norms = neuron_norms(w32)
  zero = norms <= _ZERO
  g = jnp.where(g_sign < 0, -1.0, 1.0) * norms
  d = w32 / _safe(g)[:, None, :]
  v = d * nu[:, None, :]
  grad_g = jnp.sum(g32 * d, axis=1)
  tangent = (g / _safe(nu))[:, None, :] * (g32 - d * grad_g[:, None, :])
  grad_v = jnp.where(zero[:, None, :], g32, tangent)
  return _Split(g, v, grad_v, grad_g, zero)


def row_norm_ell_inf(
    direction: optax.GradientTransformation,
    magnitude: optax.GradientTransformation,
    *,
    dimension_numbers: dn.DimensionNumbersSpec = None,
) -> optax.GradientTransformationExtraArgs:
  """Steps direction and per-neuron magnitude of each matrix separately.

  Args:
    direction: transform for the direction ``V``: it sees ``∇V`` as updates
      and ``V`` as params (both :class:`MatrixStacks` like the matrices), e.g.
      ``optax.chain(scale_by_muon(), optax.scale_by_learning_rate(lr))``. Its
      output is added to ``V``.
    magnitude: transform for the magnitudes ``g`` (sees ``∇g``:
      :class:`MatrixStacks` of ``[B, fan_out]`` vectors), e.g.
      ``optax.adam(lr, 0.9, 0.95)`` or :func:`default_magnitude`.
    dimension_numbers: which leaves are matrices on an ordinary tree (default:
      rank >= 2, last two axes). Other leaves get a zero update: route them
      elsewhere.

  Returns:
    A transform whose update, added to ``W``, gives the recomposed weight.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optax_muon import row_norm_ell_inf, newton_schulz
    >>> direction = optax.chain(newton_schulz(), optax.scale(-0.01))
    >>> tx = row_norm_ell_inf(direction, optax.adam(0.01, b2=0.95))
    >>> w = {"w": jax.random.normal(jax.random.key(0), (8, 4))}
    >>> u, _ = tx.update({"w": jnp.ones((8, 4))}, tx.init(w), w)
    >>> moved = jnp.linalg.norm(w["w"] + u["w"], axis=0) - jnp.linalg.norm(w["w"], axis=0)
    >>> [round(float(m), 4) for m in jnp.abs(moved)]  # Adam's first step moves each by η
    [0.01, 0.01, 0.01, 0.01]
  """
  direction = optax.with_extra_args_support(direction)
  magnitude = optax.with_extra_args_support(magnitude)

  def init_fn(params):
    g = params.map(lambda grp, w: neuron_norms(w))
    # Two buffers, not one aliased twice: the state must be donatable.
    return RowNormState(magnitude=g, direction_norm=jax.tree.map(jnp.copy, g),
                        direction_state=direction.init(params),
                        magnitude_state=magnitude.init(g))

  def update_fn(updates, state, params=None, **extra):
    if params is None:
      raise ValueError("row_norm_ell_inf needs params in update(updates, state, params).")
    parts = updates.map(lambda grp, grad, w, g_s, nu: _split(w, grad, g_s, nu),
                        params, state.magnitude, state.direction_norm)
    field = lambda name: parts.map(lambda grp, s: getattr(s, name))
    dv, dir_state = direction.update(field("grad_v"), state.direction_state, field("v"),
                                     **extra)
    dg, mag_state = magnitude.update(field("grad_g"), state.magnitude_state, field("g"),
                                     **extra)

    def recompose(grp, s, w, dv_, dg_):
      v_new = s.v + dv_.astype(jnp.float32)
      nu_new = neuron_norms(v_new)
      g_new = jnp.where(s.zero, nu_new, s.g + dg_.astype(jnp.float32))
      unit = v_new / jnp.maximum(nu_new, _ZERO)[:, None, :]
      w_new = jnp.where(s.zero[:, None, :], v_new, unit * g_new[:, None, :])
      return (w_new - w.astype(jnp.float32)).astype(w.dtype), g_new, nu_new

    out = parts.map(recompose, params, dv, dg)
    pick = lambda i: out.map(lambda grp, t: t[i])
    return pick(0), RowNormState(magnitude=pick(1), direction_norm=pick(2),
                                 direction_state=dir_state, magnitude_state=mag_state)

  return matrices.stacked_transform(init_fn, update_fn, dimension_numbers)
