"""``muon_plus_plus``: μP's spectral conditions held for the whole run (docs/algorithms.md, "Muon++").

Our formalization of Muon++ (Zhao, arXiv 2601.01306). Per hidden matrix, with
``s = sqrt(fan_out/fan_in)``:

    O = NS(momentum input)                       # as in Muon
    U = update_scale · s · O / ‖O‖₂              # ‖U‖₂ = update_scale·s exactly
    W ← W − ηU − ηλW − κ_t W                      # κ_t: smallest decay keeping ‖W‖₂ ≤ R

NS defaults to Polar Express × 6 (output singular values within 0.5% of 1), so
``‖O‖₂`` is well estimated even when the top direction changes every step.
``‖O‖₂`` and the top singular triplet of the proposed weight come from
warm-started power iterations kept in the state (a few matvecs per matrix).
``R = weight_radius·s``; ``weight_radius=None`` turns the bound off.
Non-matrix parameters go to AdamW as in Muon.
"""

from typing import Any

import jax
import optax

from optax_muon._src import alias_parts
from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import scale_by_muon as scale_by_muon_lib
from optax_muon._src import spectral_decay
from optax_muon._src import validation
from optax_muon._src import weight_decay as wd_lib

__all__ = ["muon_plus_plus"]


@alias_parts.shared_docs
def muon_plus_plus(
    learning_rate: optax.ScalarOrSchedule,
    *,
    update_scale: jax.typing.ArrayLike = 1.0,
    weight_radius: jax.typing.ArrayLike | None = 4.0,
    power_iterations: int | None = None,
    beta: jax.typing.ArrayLike = 0.95,
    nesterov: bool = True,
    ns_schedule: coeffs_lib.Schedule | dict = "polar_express",
    ns_steps: int | dict | None = None,
    normalization: str = "frobenius",
    compute_dtype: Any = None,
    weight_decay: jax.typing.ArrayLike = 0.0,
    weight_decay_mask: str | None = None,
    adam_b1: jax.typing.ArrayLike = 0.9,
    adam_b2: jax.typing.ArrayLike = 0.95,
    adam_eps: jax.typing.ArrayLike = 1e-8,
    adam_weight_decay: jax.typing.ArrayLike | None = 0.1,
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
      every matrix whenever the bound is inactive.
    update_scale: the update's spectral norm in μP units (> 0).
    weight_radius: ``‖W‖₂ ≤ weight_radius·sqrt(fan_out/fan_in)``, held by the
      smallest data-dependent decay that does it; ``None`` = no bound.
    power_iterations: warm-started power-iteration rounds per step (default 2).
    @@momentum@@
    @@newton_schulz@@
      Default Polar Express × 6, which maps normalized σ ∈ [1e-3, 1] into
      [0.995, 1.001]: ``‖O‖₂`` is then pinned near 1 whatever the gradient.
    @@weight_decay@@
      Default 0: the radius bounds the weights.
    @@adam@@
    @@routing@@

  Examples:
    >>> import jax.numpy as jnp, optax_muon
    >>> params = {"w": jnp.eye(8)}
    >>> tx = optax_muon.muon_plus_plus(0.01)
    >>> u, s = tx.update({"w": jnp.ones((8, 8))}, tx.init(params), params)
    >>> round(float(jnp.linalg.norm(u["w"], 2)), 4)
    0.01
  """
  alias_parts.check_common(learning_rate, beta=beta, weight_decay=weight_decay, adam_b1=adam_b1,
                           adam_b2=adam_b2, adam_eps=adam_eps,
                           adam_weight_decay=adam_weight_decay,
                           adam_learning_rate=adam_learning_rate)
  validation.check_positive(update_scale, "update_scale")
  if weight_radius is not None:
    validation.check_positive(weight_radius, "weight_radius")
  iters = 2 if power_iterations is None else power_iterations
  validation.check_positive_int(iters, "power_iterations")
  bound = () if weight_radius is None else (
      spectral_decay.spectral_weight_decay(weight_radius, power_iterations=iters),)
  matrix_chain = optax.chain(
      scale_by_muon_lib.scale_by_muon(
          beta=beta, nesterov=nesterov, mu_dtype=mu_dtype,
          ns_schedule=ns_lib.with_default(ns_schedule, "polar_express"),
          ns_steps=ns_lib.with_default(ns_steps, 6), normalization=normalization,
          compute_dtype=compute_dtype, scale="mup", exact_scale=True, power_iterations=iters,
          mesh=mesh, diagnostics=diagnostics),
      optax.scale(update_scale),
      optax.scale_by_learning_rate(learning_rate),
      wd_lib.decoupled_weight_decay(weight_decay, learning_rate, mask=weight_decay_mask),
      *bound,
  )
  others = alias_parts.adamw_for_others(
      learning_rate, adam_learning_rate=adam_learning_rate, b1=adam_b1, b2=adam_b2,
      eps=adam_eps, weight_decay=weight_decay, adam_weight_decay=adam_weight_decay,
      weight_decay_mask=weight_decay_mask, mu_dtype=mu_dtype)
  return alias_parts.assemble(matrix_chain, others, dimension_numbers, skip_nonfinite)
