"""``muown``: Muon on per-neuron directions, Adam on their magnitudes (docs/algorithms.md, "Muown")."""

from typing import Literal

import jax
import optax

from optax_muon._src import alias_parts
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import gram_newton_schulz as gram_ns
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import row_norm
from optax_muon._src import scale_by_muon as scale_by_muon_lib
from optax_muon._src import validation
from optax_muon._src import weight_decay as wd_lib
from optax_muon.diagnostics import probes

__all__ = ["muown"]


@alias_parts.shared_docs
def muown(
    learning_rate: optax.ScalarOrSchedule,
    *,
    magnitude: Literal["adam", "sign"] = "adam",
    magnitude_learning_rate: optax.ScalarOrSchedule | None = None,
    magnitude_b1: jax.typing.ArrayLike = 0.9,
    magnitude_b2: jax.typing.ArrayLike = 0.95,
    rms: jax.typing.ArrayLike = 0.2,
    # The shared arguments (alias_parts.Shared; documented in alias_parts.SHARED_DOCS):
    beta: jax.typing.ArrayLike = 0.95,
    nesterov: bool = True,
    mu_dtype: jax.typing.DTypeLike | None = None,
    ns_schedule: alias_parts.ScheduleSpec = "jordan",
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
  """Muown: row-norm (ℓ∞ over output neurons) control on top of Muon.

  Each hidden matrix is split into unit output vectors stepped by Muon (0.2 RMS
  scale) and per-neuron magnitudes stepped by Adam (or sign descent), then
  recomposed; see :func:`row_norm_ell_inf`. A zero-initialized matrix takes
  plain Muon steps until its neurons have a norm. Memory over Muon: four
  vectors of length ``fan_out`` per matrix.

  Args:
    learning_rate: ``η`` for the directions (and, by default, magnitudes and AdamW).
    magnitude: ``"adam"`` (default) or ``"sign"``.
    magnitude_learning_rate: the magnitudes' learning rate (default ``learning_rate``).
    magnitude_b1: the magnitude Adam's first-moment beta.
    magnitude_b2: the magnitude Adam's second-moment beta.
    rms: update RMS of the direction's ``"moonlight"`` scale.
    @@shared@@

  The defaults differ from ``muon``'s: ``weight_decay`` is 0 (the paper's) and the
  AdamW leaves decay with 0.1.

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
  shared = alias_parts.shared_arguments(locals())
  mag_lr = learning_rate if magnitude_learning_rate is None else magnitude_learning_rate
  validation.check_learning_rate(mag_lr, "magnitude_learning_rate")
  validation.check_beta(magnitude_b1, "magnitude_b1")
  validation.check_beta(magnitude_b2, "magnitude_b2")
  cfg = probes.as_config(shared.diagnostics)
  direction = optax.chain(
      scale_by_muon_lib.scale_by_muon(
          beta=shared.beta, nesterov=shared.nesterov, mu_dtype=shared.mu_dtype, rms=rms,
          # The direction's params are V, not W: the weight probe sits outside.
          diagnostics=None if cfg is None else cfg._replace(weight_norm="none"),
          **shared.ns_kwargs("jordan", 5)),
      optax.scale_by_learning_rate(learning_rate))
  magnitudes = row_norm.default_magnitude(mag_lr, magnitude, b1=magnitude_b1, b2=magnitude_b2,
                                          eps=shared.adam_eps)
  matrix_chain = optax.chain(
      *probes.weight_probe(cfg),
      row_norm.row_norm_ell_inf(direction, magnitudes),
      wd_lib.decoupled_weight_decay(shared.weight_decay, learning_rate,
                                    mask=shared.weight_decay_mask))
  return alias_parts.assemble(matrix_chain, alias_parts.adamw_for_others(learning_rate, shared),
                              shared, name="muown", rms=rms)
