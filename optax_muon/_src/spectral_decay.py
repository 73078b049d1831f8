"""Muon++'s adaptive decoupled decay: keep ``‖W‖₂ ≤ R`` (ALGORITHMS.md §6).

Our formalization of Zhao (arXiv 2601.01306; only the abstract was available).
The note's rule is first order around ``W``: ``σ(W − ηU − κW) ≈ σ_W − η·uᵀUv −
κσ_W``. We linearize around the *proposed* weight ``P = W + Δ`` instead (``Δ =
−ηU`` the incoming update), whose top triplet ``(σ_P, u, v)`` a warm-started
power iteration tracks in the state; that removes the error of the update's own
step from the prediction ``σ(P − κW) ≈ σ_P − κ·uᵀWv``, and gives the smallest
decay that keeps the top singular value at or below ``R``:

    κ_t = clip((σ_P − R) / uᵀWv, 0, 1)        (κ = η·λ_t)

``R = weight_radius · sqrt(fan_out/fan_in)`` (the μP spectral condition). With
``adaptive=False`` the decay is the fixed ``κ = η·λ``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import power_iteration as pi

__all__ = ["spectral_weight_decay", "SpectralDecayState"]


class SpectralDecayState(NamedTuple):
  count: jax.Array  # shape=(), dtype=int32.
  right_vectors: Any  # per matrix [B, fan_out] float32 (None elsewhere).


def spectral_weight_decay(
    weight_radius: jax.typing.ArrayLike = 4.0,
    *,
    adaptive: bool = True,
    weight_decay: jax.typing.ArrayLike = 0.0,
    learning_rate: optax.ScalarOrSchedule = 1.0,
    power_iterations: int = 1,
    dimension_numbers: dn.DimensionNumbersSpec = None,
) -> optax.GradientTransformation:
  """Decays each matrix just enough to keep its spectral norm at most ``R``.

  Place after ``scale_by_learning_rate``: it reads the final update ``Δ``.

  Args:
    weight_radius: ``R / sqrt(fan_out/fan_in)``.
    adaptive: use the data-dependent ``κ_t``; else the fixed ``η·weight_decay``.
    weight_decay: ``λ`` of the fixed mode.
    learning_rate: ``η_t`` of the fixed mode.
    power_iterations: rounds per step of the warm-started power iteration.
    dimension_numbers: which leaves are matrices (default: rank >= 2).

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = spectral_weight_decay(1.0, dimension_numbers=None)
    >>> w = {"w": 3.0 * jnp.eye(4)}
    >>> u, _ = tx.update({"w": jnp.zeros((4, 4))}, tx.init(w), w)
    >>> float((w["w"] + u["w"])[0, 0])
    1.0
  """

  def init_fn(params):
    treedef, entries = dn.matrix_leaves(dimension_numbers, params)
    vecs = [None if lay is None else pi.init_right_vectors(lay.batch, lay.fan_out)
            for _, _, lay in entries]
    return SpectralDecayState(jnp.zeros([], jnp.int32), treedef.unflatten(vecs))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("spectral_weight_decay needs params in update().")
    treedef, entries = dn.matrix_leaves(dimension_numbers, updates)
    ws = treedef.flatten_up_to(params)
    vecs = treedef.flatten_up_to(state.right_vectors)
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    out = [d for _, d, _ in entries]
    new_vecs = [None] * len(entries)
    matrices = [i for i, (_, _, lay) in enumerate(entries) if lay is not None]
    wms = [dn.to_matrices(ws[i], entries[i][2]).astype(jnp.float32) for i in matrices]
    if adaptive:
      def top_of_proposed(wm, d, v):
        sigma, u_vec, v = pi.top_singular_triplet(wm + d, v, power_iterations)
        return sigma, v, jnp.einsum("bp,bpq,bq->b", u_vec, wm, v)  # uᵀWv

      proposed = pi.grouped_by_shape(
          top_of_proposed, wms,
          [dn.to_matrices(entries[i][1], entries[i][2]).astype(jnp.float32) for i in matrices],
          [vecs[i] for i in matrices])
    for k, i in enumerate(matrices):
      _, d, lay = entries[i]
      if adaptive:
        sigma, new_vecs[i], along = proposed[k]
        radius = weight_radius * math.sqrt(lay.fan_out / lay.fan_in)
        kappa = jnp.clip((sigma - radius) / jnp.maximum(along, 1e-30), 0.0, 1.0)
        kappa = jnp.where(sigma > radius, kappa, 0.0)
      else:
        new_vecs[i] = vecs[i]
        kappa = jnp.broadcast_to(lr * weight_decay, (lay.batch,))
      decay = dn.from_matrices(wms[k] * kappa[:, None, None], lay)
      out[i] = (d - decay).astype(d.dtype)
    return treedef.unflatten(out), SpectralDecayState(
        optax.safe_increment(state.count), treedef.unflatten(new_vecs))

  return optax.GradientTransformation(init_fn, update_fn)
