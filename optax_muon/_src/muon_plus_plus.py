"""``muon_plus_plus``: μP's spectral conditions held for the whole run (ALGORITHMS.md §6).

Our formalization of Muon++ (Zhao, arXiv 2601.01306; only its abstract was
available). Per hidden matrix, with ``s = sqrt(fan_out/fan_in)``:

    O = NS(momentum input)                       # as in Muon
    U = update_scale · s · O / ‖O‖₂              # ‖U‖₂ = update_scale·s exactly
    W ← W − ηU − κ_t W                            # κ_t: smallest decay keeping ‖W‖₂ ≤ R

NS defaults to Polar Express × 6 (output singular values within 0.5% of 1), so
``‖O‖₂`` is well estimated even when the top direction changes every step.
``‖O‖₂`` and the top singular triplet of the proposed weight come from
warm-started power iterations kept in the state (a few matvecs per matrix).
``R = weight_radius·s``. With ``adaptive=False`` the decay is the fixed ``ηλ``.
Non-matrix parameters go to AdamW as in Muon.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import momentum as momentum_lib
from optax_muon._src import muon as muon_lib
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import routing
from optax_muon._src import spectral_decay
from optax_muon._src import spectral_probe as probe_lib
from optax_muon._src import spectral_scale as scale_lib

__all__ = ["muon_plus_plus"]


def muon_plus_plus(
    learning_rate: optax.ScalarOrSchedule,
    *,
    update_scale: jax.typing.ArrayLike = 1.0,
    weight_radius: jax.typing.ArrayLike = 4.0,
    adaptive: bool = True,
    weight_decay: jax.typing.ArrayLike = 0.0,
    beta: jax.typing.ArrayLike = 0.95,
    nesterov: bool = True,
    ns_schedule: coeffs_lib.Schedule | dict = "polar_express",
    ns_steps: int | dict | None = None,
    normalization: str = "frobenius",
    compute_dtype: Any = None,
    power_iterations: int | None = None,
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
  """Muon with the update's spectral norm set exactly and the weight's bounded.

  Args:
    learning_rate: ``η``; ``‖ΔW‖₂ = η·update_scale·sqrt(fan_out/fan_in)`` for
      every matrix whenever the decay is inactive.
    update_scale: the update's spectral norm in μP units.
    weight_radius: ``‖W‖₂ ≤ weight_radius·sqrt(fan_out/fan_in)`` (adaptive mode).
    adaptive: data-dependent decay (else the fixed ``η·weight_decay``).
    weight_decay: ``λ`` of the fixed mode.
    beta, nesterov: momentum (sum form).
    ns_schedule, ns_steps, normalization, compute_dtype: Newton–Schulz.
      Default Polar Express × 6, which maps normalized σ ∈ [1e-3, 1] into
      [0.995, 1.001]: ‖O‖₂ is then pinned near 1 whatever the gradient, and the
      power-iteration normalization only corrects that last 0.5% (Jordan's
      0.68–1.13 band plus a flat spectrum leaves power iteration ~8% short).
    power_iterations: warm-started power-iteration rounds per step (default 2).
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
    >>> import jax.numpy as jnp, optax_muon
    >>> params = {"w": jnp.eye(8)}
    >>> tx = optax_muon.muon_plus_plus(0.01)
    >>> u, s = tx.update({"w": jnp.ones((8, 8))}, tx.init(params), params)
    >>> round(float(jnp.linalg.norm(u["w"], 2)), 4)
    0.01
  """
  adam_lr = learning_rate if adam_learning_rate is None else adam_learning_rate
  power_iterations = 2 if power_iterations is None else power_iterations

  def matrix_chain(dims):
    return optax.chain(
        momentum_lib.muon_momentum(beta, nesterov=nesterov, form="sum", mu_dtype=mu_dtype),
        *probe_lib.before_ns(diagnostics, schedule=ns_schedule, steps=ns_steps,
                             default_schedule="polar_express", default_steps=6,
                             dimension_numbers=dims),
        ns_lib.newton_schulz(ns_lib.with_default(ns_schedule, "polar_express"),
                             ns_lib.with_default(ns_steps, 6),
                             normalization=normalization, mesh=mesh,
                             compute_dtype=compute_dtype, dimension_numbers=dims),
        *probe_lib.after_ns(diagnostics, convention="mup", exact=True, dimension_numbers=dims),
        scale_lib.spectral_scale("mup", exact=True, power_iterations=power_iterations,
                                 dimension_numbers=dims),
        optax.scale(update_scale),
        optax.scale_by_learning_rate(learning_rate),
        spectral_decay.spectral_weight_decay(
            weight_radius, adaptive=adaptive, weight_decay=weight_decay,
            learning_rate=learning_rate, power_iterations=power_iterations,
            dimension_numbers=dims),
    )

  adam = muon_lib.adamw_for_non_matrices(adam_lr, b1=adam_b1, b2=adam_b2, eps=adam_eps,
                                         weight_decay=adam_weight_decay, mu_dtype=mu_dtype)
  return routing.hybrid(matrix_chain, adam, dimension_numbers, skip_nonfinite=skip_nonfinite)
