"""``muon``: Muon as scaled up by Moonlight (Liu et al. 2025; docs/algorithms.md, "Muon").

Per hidden matrix: ``M ← μM + G``; Nesterov input ``G + μM``; ``O = NS5(input)``
(Jordan coefficients); ``W ← W − η·(0.2·sqrt(max(fan_in, fan_out))·O + λ·W)``.
The 0.2 RMS match makes AdamW's learning rate and weight decay transfer.
Embeddings, the LM head, norms and biases go to AdamW (betas 0.9/0.95) with the
same learning rate and weight decay.
"""

from typing import Literal

import jax
import optax

from optax_muon._src import alias_parts
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import gram_newton_schulz as gram_ns
from optax_muon._src import momentum as momentum_lib
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import scale_by_muon as scale_by_muon_lib
from optax_muon._src import spectral_scale as scale_lib
from optax_muon._src import weight_decay as wd_lib

__all__ = ["muon"]


@alias_parts.shared_docs
def muon(
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: momentum_lib.MomentumForm = "sum",
    ns_eps: float = 1e-7,
    adaptive: bool = False,
    scale: scale_lib.Convention = "moonlight",
    rms: jax.typing.ArrayLike = 0.2,
    weight_decay_mode: Literal["coupled", "independent"] = "coupled",
    adam_nesterov: bool = False,
    # The shared arguments (alias_parts.Shared; documented in alias_parts.SHARED_DOCS):
    beta: jax.typing.ArrayLike = 0.95,
    nesterov: bool = True,
    mu_dtype: jax.typing.DTypeLike | None = None,
    ns_schedule: alias_parts.ScheduleSpec = "jordan",
    ns_steps: alias_parts.StepsSpec = None,
    normalization: ns_lib.Normalization = "frobenius",
    compute_dtype: jax.typing.DTypeLike | None = None,
    ns_method: gram_ns.Method = "auto",
    weight_decay: jax.typing.ArrayLike = 0.1,
    weight_decay_mask: str | None = None,
    adam_b1: jax.typing.ArrayLike = 0.9,
    adam_b2: jax.typing.ArrayLike = 0.95,
    adam_eps: jax.typing.ArrayLike = 1e-8,
    adam_weight_decay: jax.typing.ArrayLike | None = None,
    adam_learning_rate: optax.ScalarOrSchedule | None = None,
    dimension_numbers: dn.DimensionNumbersSpec = None,
    skip_nonfinite: bool = True,
    mesh: alias_parts.MeshSpec = None,
    diagnostics: alias_parts.Diagnostics = None,
) -> optax.GradientTransformationExtraArgs:
  """Muon for hidden matrices, AdamW for the rest (Moonlight recipe by default).

  Args:
    learning_rate: ``η`` (float or schedule); with the default ``"moonlight"``
      scale an AdamW-like value (e.g. 3e-4 … 8e-3) is right.
    momentum: ``"sum"`` (Moonlight), ``"ema"`` (PyTorch) or ``"ema_debiased"`` (optax).
    ns_eps: normalizer epsilon of Newton–Schulz.
    adaptive: scale ``O`` by ``⟨input, O⟩`` (optax's ``adaptive``).
    scale: ``"moonlight"``, ``"jordan"``/``"width"``, ``"mup"`` or ``"none"``.
    rms: update RMS of the ``"moonlight"`` scale.
    weight_decay_mode: ``"coupled"`` (``η_t·λ``) or ``"independent"`` (``η_t/η_peak·λ``).
    adam_nesterov: Nesterov AdamW (optax.contrib.muon uses it).
    @@shared@@

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import optax_muon
    >>> params = {"embed": jnp.ones((16, 8)), "w": jnp.ones((8, 8)), "b": jnp.ones(8)}
    >>> tx = optax_muon.muon(3e-3)
    >>> state = tx.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  References:
    Liu et al., `Muon is Scalable for LLM Training <https://arxiv.org/abs/2502.16982>`_, 2025.
    Jordan et al., `Muon <https://kellerjordan.github.io/posts/muon/>`_, 2024.
  """
  shared = alias_parts.shared_arguments(locals())
  matrix_chain = optax.chain(
      scale_by_muon_lib.scale_by_muon(
          beta=shared.beta, nesterov=shared.nesterov, momentum=momentum,
          mu_dtype=shared.mu_dtype, ns_eps=ns_eps, adaptive=adaptive, scale=scale, rms=rms,
          diagnostics=shared.diagnostics, **shared.ns_kwargs("jordan", 5)),
      optax.scale_by_learning_rate(learning_rate),
      wd_lib.decoupled_weight_decay(shared.weight_decay, learning_rate, mode=weight_decay_mode,
                                    mask=shared.weight_decay_mask),
  )
  others = alias_parts.adamw_for_others(learning_rate, shared, nesterov=adam_nesterov,
                                        spectral=scale == "mup")
  return alias_parts.assemble(matrix_chain, others, shared, name="muon", scale=scale, rms=rms)
