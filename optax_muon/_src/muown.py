"""``muown``: Muon on per-neuron directions, Adam on their magnitudes (ALGORITHMS.md §5)."""

from __future__ import annotations

from typing import Any

import jax
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import muon as muon_lib
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import routing
from optax_muon._src import spectral_probe as probe_lib
from optax_muon._src import row_norm
from optax_muon._src import weight_decay as wd_lib

__all__ = ["muown"]


def muown(
    learning_rate: optax.ScalarOrSchedule,
    *,
    magnitude: str = "adam",
    beta: jax.typing.ArrayLike = 0.95,
    nesterov: bool = True,
    ns_schedule: Any = "jordan",
    ns_steps: int | dict | None = None,
    normalization: str = "frobenius",
    compute_dtype: Any = None,
    rms: jax.typing.ArrayLike = 0.2,
    weight_decay: jax.typing.ArrayLike = 0.0,
    magnitude_b1: jax.typing.ArrayLike = 0.9,
    magnitude_b2: jax.typing.ArrayLike = 0.95,
    adam_b1: jax.typing.ArrayLike = 0.9,
    adam_b2: jax.typing.ArrayLike = 0.95,
    adam_eps: jax.typing.ArrayLike = 1e-8,
    adam_weight_decay: jax.typing.ArrayLike = 0.1,
    adam_learning_rate: optax.ScalarOrSchedule | None = None,
    mu_dtype: Any = None,
    dimension_numbers: dn.DimensionNumbersSpec = None,
    skip_nonfinite: bool = True,
    mesh: Any = None,
    diagnostics: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """Muown: row-norm (ℓ∞ over output neurons) control on top of Muon.

  Each hidden matrix is split into unit output vectors stepped by Muon (0.2 RMS
  scale) and per-neuron magnitudes stepped by Adam (or sign descent), then
  recomposed; see :func:`row_norm_ell_inf`. Memory over Muon: four vectors of
  length ``fan_out`` per matrix.

  Args:
    learning_rate: ``η`` for directions, magnitudes and AdamW.
    magnitude: ``"adam"`` (default) or ``"sign"``.
    beta, nesterov, ns_schedule, ns_steps, normalization, compute_dtype, rms:
      the direction's Muon.
    weight_decay: decoupled ``λ`` on matrices (0 in the paper's default).
    magnitude_b1, magnitude_b2: the magnitude Adam's betas.
    adam_b1, adam_b2, adam_eps, adam_weight_decay, adam_learning_rate: AdamW
      for non-matrix leaves.
    mu_dtype: momentum dtype.
    dimension_numbers: which leaves are matrices (default rule as in ``muon``).
    skip_nonfinite: skip steps with NaN/Inf gradients.
    mesh: device mesh for Newton–Schulz placement (see :func:`newton_schulz`):
      ``None`` finds it (``jax.set_mesh`` or array shardings), ``False`` leaves
      placement to the compiler.
    diagnostics: ``None`` (off: the chain is unchanged), an int ``every`` or a
      :class:`optax_muon.diagnostics.DiagnosticsConfig`: record spectral
      statistics in the state (read them with :func:`optax_muon.diagnostics.read`).

  Examples:
    >>> import jax, jax.numpy as jnp, optax_muon
    >>> w = {"w": jax.random.normal(jax.random.key(0), (8, 4))}
    >>> tx = optax_muon.muown(0.01)
    >>> u, s = tx.update({"w": jnp.ones((8, 4))}, tx.init(w), w)
    >>> u["w"].shape
    (8, 4)

  References:
    Lion, Hübler, Li, Orvieto, He, `Muown <https://arxiv.org/abs/2605.10797>`_, 2026.
  """
  adam_lr = learning_rate if adam_learning_rate is None else adam_learning_rate

  def matrix_chain(dims):
    direction = row_norm.default_direction(
        learning_rate, beta=beta, nesterov=nesterov, rms=rms, mu_dtype=mu_dtype,
        dimension_numbers=dims, schedule=ns_lib.with_default(ns_schedule, "jordan"),
        steps=ns_lib.with_default(ns_steps, 5), normalization=normalization, mesh=mesh,
        compute_dtype=compute_dtype, diagnostics=diagnostics)
    mag = row_norm.default_magnitude(learning_rate, magnitude, b1=magnitude_b1,
                                     b2=magnitude_b2, eps=adam_eps)
    return optax.chain(
        *probe_lib.weight_probe(diagnostics, dimension_numbers=dims),
        row_norm.row_norm_ell_inf(direction, mag, dimension_numbers=dims),
        wd_lib.decoupled_weight_decay(weight_decay, learning_rate))

  adam = muon_lib.adamw_for_non_matrices(adam_lr, b1=adam_b1, b2=adam_b2, eps=adam_eps,
                                         weight_decay=adam_weight_decay, mu_dtype=mu_dtype)
  return routing.hybrid(matrix_chain, adam, dimension_numbers, skip_nonfinite=skip_nonfinite)
