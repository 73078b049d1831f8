"""Muown's per-output-neuron magnitude/direction split (ALGORITHMS.md §5).

Each hidden matrix is ``W = D·diag(g)``: unit-norm output vectors ``D`` (for a
Flax ``[fan_in, fan_out]`` kernel, the *columns*, norms over axis 0) and one
magnitude ``g_j`` per output neuron. The direction is stored un-normalized as
``V = D·diag(ν)`` (only its norms ``ν`` are kept) and stepped by the direction
optimizer (Muon by default); ``g`` is stepped by the magnitude optimizer (Adam
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

References:
  Lion, Hübler, Li, Orvieto, He, `Muown <https://arxiv.org/abs/2605.10797>`_.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import momentum as momentum_lib
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import spectral_probe as probe_lib
from optax_muon._src import spectral_scale as scale_lib

__all__ = ["row_norm_ell_inf", "RowNormState", "neuron_norms", "default_direction", "default_magnitude"]

_MIN_MAGNITUDE = 1e-7


class RowNormState(NamedTuple):
  magnitude: Any  # per matrix [B, fan_out] float32: g (None elsewhere).
  direction_norm: Any  # per matrix [B, fan_out] float32: ν (None elsewhere).
  direction_state: Any  # state of the direction optimizer (tree like params).
  magnitude_state: Any  # state of the magnitude optimizer (tree like g).


def neuron_norms(m: jax.Array) -> jax.Array:
  """Per-output-neuron norms of a ``[B, fan_in, fan_out]`` stack: ``[B, fan_out]``."""
  return jnp.sqrt(jnp.sum(jnp.square(m.astype(jnp.float32)), axis=1))


def _safe(x):
  sign = jnp.where(x < 0, -1.0, 1.0)
  return sign * jnp.maximum(jnp.abs(x), _MIN_MAGNITUDE)


def default_direction(learning_rate: optax.ScalarOrSchedule, *, beta=0.95, nesterov=True,
                      rms=0.2, mu_dtype=None,
                      dimension_numbers: dn.DimensionNumbersSpec = None,
                      diagnostics: Any = None,
                      **ns_kwargs) -> optax.GradientTransformation:
  """Muon on the direction: sum-form momentum, Newton–Schulz, ``moonlight`` scale.

  ``ns_kwargs`` go to :func:`newton_schulz` (schedule, steps, normalization, ...).
  ``diagnostics`` (``None`` = off) records the direction's NS-input spectrum and
  update statistics (see :mod:`optax_muon.diagnostics`).
  """
  return optax.chain(
      momentum_lib.muon_momentum(beta, nesterov=nesterov, form="sum", mu_dtype=mu_dtype),
      *probe_lib.before_ns(diagnostics, schedule=ns_kwargs.get("schedule", "jordan"),
                           steps=ns_kwargs.get("steps", 5), default_schedule="jordan",
                           default_steps=5, dimension_numbers=dimension_numbers,
                           weights=False),
      ns_lib.newton_schulz(dimension_numbers=dimension_numbers, **ns_kwargs),
      *probe_lib.after_ns(diagnostics, convention="moonlight", rms=rms,
                          dimension_numbers=dimension_numbers),
      scale_lib.spectral_scale("moonlight", rms=rms, dimension_numbers=dimension_numbers),
      optax.scale_by_learning_rate(learning_rate))


def default_magnitude(learning_rate: optax.ScalarOrSchedule, kind: str = "adam", *,
                      b1=0.9, b2=0.95, eps=1e-8) -> optax.GradientTransformation:
  """Adam (betas 0.9/0.95) or sign descent on the per-neuron magnitudes."""
  if kind == "adam":
    return optax.chain(optax.scale_by_adam(b1, b2, eps), optax.scale_by_learning_rate(learning_rate))
  if kind == "sign":
    return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(learning_rate))
  raise ValueError(f"unknown magnitude optimizer {kind!r}; valid: ('adam', 'sign').")


def row_norm_ell_inf(
    direction: optax.GradientTransformation | None = None,
    magnitude: optax.GradientTransformation | str = "adam",
    *,
    learning_rate: optax.ScalarOrSchedule | None = None,
    dimension_numbers: dn.DimensionNumbersSpec = None,
) -> optax.GradientTransformation:
  """Steps direction and per-neuron magnitude of each matrix separately.

  Args:
    direction: transform for the direction ``V`` (sees ``∇V`` as updates, ``V``
      as params, trees shaped like the parameters), e.g. a Muon chain ending in
      ``scale_by_learning_rate``. Its output is added to ``V``.
    magnitude: transform for the magnitudes ``g`` (sees ``∇g``, trees of
      ``[B, fan_out]`` vectors), e.g. ``optax.adam(lr, 0.9, 0.95)`` or
      ``optax.chain(optax.scale_by_sign(), optax.scale(-lr))``.
    dimension_numbers: which leaves are matrices (default: rank >= 2, last two
      axes). Other leaves get a zero update: route them elsewhere.

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

  if direction is None or isinstance(magnitude, str):
    if learning_rate is None:
      raise ValueError("row_norm_ell_inf's default direction/magnitude need learning_rate.")
    if direction is None:
      direction = default_direction(learning_rate, dimension_numbers=dimension_numbers)
    if isinstance(magnitude, str):
      magnitude = default_magnitude(learning_rate, magnitude)

  def _split(params):
    treedef, entries = dn.matrix_leaves(dimension_numbers, params)
    return treedef, entries

  def init_fn(params):
    treedef, entries = _split(params)
    for path, leaf, lay in entries:
      if lay is not None and not jnp.issubdtype(leaf.dtype, jnp.floating):
        raise ValueError(f"{path}: Muown needs floating-point parameters, got {leaf.dtype}.")
    norms = [None if lay is None else neuron_norms(dn.to_matrices(x, lay))
             for _, x, lay in entries]
    g = treedef.unflatten(norms)
    v_tree = treedef.unflatten([x if lay is not None else None for _, x, lay in entries])
    # Two buffers, not one aliased twice: the state must be donatable.
    return RowNormState(magnitude=g, direction_norm=jax.tree.map(jnp.copy, g),
                        direction_state=direction.init(v_tree),
                        magnitude_state=magnitude.init(g))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("row_norm_ell_inf needs params in update(updates, state, params).")
    treedef, entries = _split(updates)
    ws = treedef.flatten_up_to(params)
    g_old = treedef.flatten_up_to(state.magnitude)
    nu_old = treedef.flatten_up_to(state.direction_norm)
    pieces = []  # per leaf: None or (layout, W, D, g, ν, V, ∇V, ∇g)
    for (_, grad, lay), w, g_s, nu in zip(entries, ws, g_old, nu_old):
      if lay is None:
        pieces.append(None)
        continue
      wm = dn.to_matrices(w, lay).astype(jnp.float32)
      gm = dn.to_matrices(grad, lay).astype(jnp.float32)
      g = jnp.where(g_s < 0, -1.0, 1.0) * neuron_norms(wm)
      d = wm / _safe(g)[:, None, :]
      v = d * nu[:, None, :]
      grad_g = jnp.sum(gm * d, axis=1)
      grad_v = (g / _safe(nu))[:, None, :] * (gm - d * grad_g[:, None, :])
      pieces.append((lay, w, g, nu, v, grad_v, grad_g))

    def tree_of(i, to_param_shape):
      leaves = []
      for p in pieces:
        if p is None:
          leaves.append(None)
        else:
          leaves.append(dn.from_matrices(p[i], p[0]) if to_param_shape else p[i])
      return treedef.unflatten(leaves)

    dv, dir_state = direction.update(tree_of(5, True), state.direction_state, tree_of(4, True))
    dg, mag_state = magnitude.update(tree_of(6, False), state.magnitude_state, tree_of(2, False))
    dv_leaves = treedef.flatten_up_to(dv)
    dg_leaves = treedef.flatten_up_to(dg)

    out, new_g, new_nu = [], [], []
    for (_, grad, lay), p, dvl, dgl in zip(entries, pieces, dv_leaves, dg_leaves):
      if p is None:
        out.append(jnp.zeros_like(grad))
        new_g.append(None)
        new_nu.append(None)
        continue
      _, w, g, _, v, _, _ = p
      v_new = v + dn.to_matrices(dvl, lay).astype(jnp.float32)
      nu_new = neuron_norms(v_new)
      g_new = g + dgl.astype(jnp.float32)
      w_new = v_new / jnp.maximum(nu_new, 1e-30)[:, None, :] * g_new[:, None, :]
      out.append((dn.from_matrices(w_new, lay) - w.astype(jnp.float32)).astype(grad.dtype))
      new_g.append(g_new)
      new_nu.append(nu_new)
    new_state = RowNormState(magnitude=treedef.unflatten(new_g),
                             direction_norm=treedef.unflatten(new_nu),
                             direction_state=dir_state, magnitude_state=mag_state)
    return treedef.unflatten(out), new_state

  return optax.GradientTransformation(init_fn, update_fn)
