"""``muon``: Muon as scaled up by Moonlight (Liu et al. 2025; docs/algorithms.md, "Muon").

Per hidden matrix: ``M ← μM + G``; Nesterov input ``G + μM``; ``O = NS5(input)``
(Jordan coefficients); ``W ← W − η·(0.2·sqrt(max(fan_in, fan_out))·O + λ·W)``.
The 0.2 RMS match makes AdamW's learning rate and weight decay transfer.
Embeddings, the LM head, norms and biases go to AdamW (betas 0.9/0.95) with the
same learning rate and weight decay.
"""

from typing import Any

import jax
import optax

from optax_muon._src import alias_parts
from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import scale_by_muon as scale_by_muon_lib
from optax_muon._src import weight_decay as wd_lib

__all__ = ["muon"]


@alias_parts.shared_docs
def muon(
    learning_rate: optax.ScalarOrSchedule,
    *,
    beta: jax.typing.ArrayLike = 0.95,
    nesterov: bool = True,
    momentum: str = "sum",
    ns_schedule: coeffs_lib.Schedule | dict = "jordan",
    ns_steps: int | dict | None = None,
    normalization: str = "frobenius",
    ns_eps: jax.typing.ArrayLike = 1e-7,
    compute_dtype: Any = None,
    adaptive: bool = False,
    scale: str = "moonlight",
    rms: jax.typing.ArrayLike = 0.2,
    weight_decay: jax.typing.ArrayLike = 0.1,
    weight_decay_mode: str = "coupled",
    weight_decay_mask: str | None = None,
    adam_b1: jax.typing.ArrayLike = 0.9,
    adam_b2: jax.typing.ArrayLike = 0.95,
    adam_eps: jax.typing.ArrayLike = 1e-8,
    adam_weight_decay: jax.typing.ArrayLike | None = None,
    adam_learning_rate: optax.ScalarOrSchedule | None = None,
    adam_nesterov: bool = False,
    mu_dtype: Any = None,
    dimension_numbers: dn.DimensionNumbersSpec = None,
    skip_nonfinite: bool = True,
    mesh: Any = None,
    diagnostics: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """Muon for hidden matrices, AdamW for the rest (Moonlight recipe by default).

  Args:
    learning_rate: ``η`` (float or schedule); with the default ``"moonlight"``
      scale an AdamW-like value (e.g. 3e-4 … 8e-3) is right.
    @@momentum@@
    momentum: ``"sum"`` (Moonlight), ``"ema"`` (PyTorch) or ``"ema_debiased"`` (optax).
    @@newton_schulz@@
    ns_eps: normalizer epsilon.
    adaptive: scale ``O`` by ``⟨input, O⟩`` (optax's ``adaptive``).
    scale: ``"moonlight"``, ``"jordan"``/``"width"``, ``"mup"`` or ``"none"``.
    rms: update RMS of the ``"moonlight"`` scale.
    @@weight_decay@@
    weight_decay_mode: ``"coupled"`` (``η_t·λ``) or ``"independent"`` (``η_t/η_peak·λ``).
    @@adam@@
    adam_nesterov: Nesterov AdamW (optax.contrib.muon uses it).
    @@routing@@

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
  alias_parts.check_common(learning_rate, beta=beta, weight_decay=weight_decay, adam_b1=adam_b1,
                           adam_b2=adam_b2, adam_eps=adam_eps,
                           adam_weight_decay=adam_weight_decay,
                           adam_learning_rate=adam_learning_rate)
  matrix_chain = optax.chain(
      scale_by_muon_lib.scale_by_muon(
          beta=beta, nesterov=nesterov, momentum=momentum, mu_dtype=mu_dtype,
          ns_schedule=ns_lib.with_default(ns_schedule, "jordan"),
          ns_steps=ns_lib.with_default(ns_steps, 5), normalization=normalization,
          ns_eps=ns_eps, compute_dtype=compute_dtype, adaptive=adaptive, scale=scale, rms=rms,
          mesh=mesh, diagnostics=diagnostics),
      optax.scale_by_learning_rate(learning_rate),
      wd_lib.decoupled_weight_decay(weight_decay, learning_rate, mode=weight_decay_mode,
                                    mask=weight_decay_mask),
  )
  others = alias_parts.adamw_for_others(
      learning_rate, adam_learning_rate=adam_learning_rate, b1=adam_b1, b2=adam_b2,
      eps=adam_eps, weight_decay=weight_decay, adam_weight_decay=adam_weight_decay,
      weight_decay_mask=weight_decay_mask, mu_dtype=mu_dtype, nesterov=adam_nesterov)
  return alias_parts.assemble(matrix_chain, others, dimension_numbers, skip_nonfinite)
