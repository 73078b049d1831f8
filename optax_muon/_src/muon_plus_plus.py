"""``muon_plus_plus``: μP's spectral conditions held for the whole run (docs/algorithms.md, "Muon++").

Our formalization of Muon++ (Zhao, arXiv 2601.01306). Per hidden matrix, with
``s = sqrt(fan_out/fan_in)``:

    O = NS(momentum input)                       # as in Muon
    U = update_scale · s · O                     # ‖U‖₂ = update_scale·s (within 0.5%)
    P = W − ηU − ηλW                              # proposed weight
    W ← min(1, R/‖P‖₂) · P                        # back onto the ball ‖W‖₂ ≤ R

NS defaults to Polar Express × 6, which maps every normalized input into
``‖O‖₂ ∈ [0.9956, 1.0012]`` (:func:`ns_spectral_norm_range`), so ``U`` needs no
measurement of ``‖O‖₂``. With a schedule that does not pin it (Jordan's ends
anywhere in 0.47–1.20), ``O`` is first divided by a warm-started power-iteration
estimate of ``‖O‖₂``. ``‖P‖₂`` comes from a warm-started subspace iteration kept
in the state (a few matrix-vector products per matrix, started from ``W₀``'s top
directions). ``R = weight_radius·s``; ``weight_radius=None`` turns the bound off.
Non-matrix parameters go to AdamW as in Muon, at ``adam_learning_rate``: an AdamW lr, which a
spectral ``η`` is not; unset, ``0.5·η`` (``SPECTRAL_ADAM_LR_RATIO``, measured).
"""

from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import alias_parts
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import gram_newton_schulz as gram_ns
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import coefficients as coeffs_lib
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
    scale: Literal["mup", "jordan"] = "mup",
    power_iterations: int | None = None,
    bound_power_iterations: int | None = None,
    bound_vectors: int | None = None,
    # The shared arguments (alias_parts.Shared; documented in alias_parts.SHARED_DOCS):
    beta: jax.typing.ArrayLike = 0.95,
    nesterov: bool = True,
    mu_dtype: jax.typing.DTypeLike | None = None,
    ns_schedule: alias_parts.ScheduleSpec = "polar_express",
    ns_steps: alias_parts.StepsSpec = None,
    normalization: ns_lib.Normalization = "frobenius",
    compute_dtype: jax.typing.DTypeLike | None = None,
    ns_method: gram_ns.Method = "auto",
    weight_decay: jax.typing.ArrayLike = 0.0,
    weight_decay_mask: str | None = None,
    adam_b1: jax.typing.ArrayLike = 0.9,
    adam_b2: jax.typing.ArrayLike = 0.95,
    adam_eps: jax.typing.ArrayLike = 1e-8,
    adam_weight_decay: jax.typing.ArrayLike | None = 0.1,
    adam_learning_rate: optax.ScalarOrSchedule | None = None,
    dimension_numbers: dn.DimensionNumbersSpec = None,
    skip_nonfinite: bool = True,
    mesh: alias_parts.MeshSpec = None,
    diagnostics: alias_parts.Diagnostics = None,
) -> optax.GradientTransformationExtraArgs:
  """Muon with the update's spectral norm set exactly and the weight's bounded.

  Args:
    learning_rate: ``η``; ``‖ΔW‖₂ = η·update_scale·s`` for every matrix
      whenever the bound is inactive (``s`` set by ``scale``).
    update_scale: the update's spectral norm in units of ``s`` (> 0).
    weight_radius: ``‖W‖₂ ≤ weight_radius·s``, held by scaling a proposed weight
      that leaves the ball back onto it; ``None`` = no bound.
    scale: the per-matrix factor ``s`` of the update and of the radius:
      ``"mup"`` (``sqrt(fan_out/fan_in)``, μP's spectral condition) or
      ``"jordan"`` (``sqrt(max(1, fan_out/fan_in))``). Both are μP at a fixed
      aspect ratio; they differ on matrices with ``fan_in > fan_out`` (the MLP
      down-projection), where ``"mup"`` takes smaller steps.
    power_iterations: rounds per step of a warm-started power iteration that
      divides ``O`` by ``‖O‖₂``, so ``‖U‖₂ = update_scale·s`` to its accuracy.
      ``None`` (default): none where the Newton–Schulz configuration already
      pins ``‖O‖₂`` within 1% (a single named schedule and step count,
      Frobenius normalization, float32 or wider: the default Polar Express × 6
      pins it within 0.5%), 2 rounds otherwise.
    bound_power_iterations: rounds per step of the subspace iteration that
      tracks the proposed weight's top singular value (default 2).
    bound_vectors: directions it tracks together (default 4): a matrix sitting
      on its bound has a bunched top spectrum, which a single warm-started
      vector tracks too loosely.
    @@shared@@

  The defaults differ from ``muon``'s: Newton–Schulz is Polar Express × 6 (it maps
  normalized σ ∈ [1e-3, 1] into [0.9956, 1.0012], so ``‖O‖₂`` is pinned near 1
  whatever the gradient); ``weight_decay`` is 0 (the radius bounds the weights)
  and the AdamW leaves decay with 0.1; their lr, unset, is ``0.5·learning_rate``
  (a spectral lr is no AdamW lr; the ratio is measured, ``SPECTRAL_ADAM_LR_RATIO``).
  Comparing optimizers, give every one's AdamW leaves the same ``adam_learning_rate``.

  Examples:
    >>> import jax.numpy as jnp, optax_muon
    >>> params = {"w": jnp.eye(8)}
    >>> tx = optax_muon.muon_plus_plus(0.01)
    >>> u, s = tx.update({"w": jnp.ones((8, 8))}, tx.init(params), params)
    >>> round(float(jnp.linalg.norm(u["w"], 2)), 4)
    0.01
  """
  shared = alias_parts.shared_arguments(locals())
  validation.check_positive(update_scale, "update_scale")
  if weight_radius is not None:
    validation.check_positive(weight_radius, "weight_radius")
  if scale not in ("mup", "jordan"):
    raise ValueError(f"muon_plus_plus: unknown scale {scale!r}; valid: ('mup', 'jordan').")
  ns = shared.ns_kwargs("polar_express", 6)
  if power_iterations is not None:
    validation.check_positive_int(power_iterations, "power_iterations")
  exact = power_iterations is not None or not _pins_spectral_norm(ns)
  bound_iters = 2 if bound_power_iterations is None else bound_power_iterations
  bound_block = 4 if bound_vectors is None else bound_vectors
  validation.check_positive_int(bound_iters, "bound_power_iterations")
  validation.check_positive_int(bound_block, "bound_vectors")
  bound = () if weight_radius is None else (spectral_decay.spectral_weight_decay(
      weight_radius, scale=scale, power_iterations=bound_iters, vectors=bound_block),)
  matrix_chain = optax.chain(
      scale_by_muon_lib.scale_by_muon(
          beta=shared.beta, nesterov=shared.nesterov, mu_dtype=shared.mu_dtype, scale=scale,
          exact_scale=exact, power_iterations=power_iterations or 2,
          diagnostics=shared.diagnostics, **ns),
      optax.scale(update_scale),
      optax.scale_by_learning_rate(learning_rate),
      wd_lib.decoupled_weight_decay(shared.weight_decay, learning_rate,
                                    mask=shared.weight_decay_mask),
      *bound,
  )
  return alias_parts.assemble(matrix_chain, alias_parts.adamw_for_others(learning_rate, shared,
                                                                          spectral=True),
                              shared, name="muon_plus_plus", scale=scale, multiplier=update_scale)


def _pins_spectral_norm(ns: dict[str, Any]) -> bool:
  """Whether every matrix's ``‖O‖₂`` is within 1% of 1 without measuring it."""
  schedule, steps, dtype = ns["ns_schedule"], ns["ns_steps"], ns["compute_dtype"]
  if not (isinstance(schedule, str) and isinstance(steps, int)
          and ns["normalization"] == "frobenius"
          and (dtype is None or (jnp.issubdtype(dtype, jnp.floating)
                                 and jnp.dtype(dtype).itemsize >= 4))):
    return False
  lo, hi = coeffs_lib.ns_spectral_norm_range(schedule, steps)
  return lo >= 0.99 and hi <= 1.01
