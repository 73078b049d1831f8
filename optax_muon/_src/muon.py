"""``muon``: Muon as scaled up by Moonlight (Liu et al. 2025; ALGORITHMS.md §4).

Per hidden matrix: ``M ← μM + G``; Nesterov input ``G + μM``; ``O = NS5(input)``
(Jordan coefficients); ``W ← W − η·(0.2·sqrt(max(fan_in, fan_out))·O + λ·W)``.
The 0.2 RMS match makes AdamW's learning rate and weight decay transfer.
Embeddings, the LM head, norms and biases go to AdamW (betas 0.9/0.95) with the
same learning rate and weight decay.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import momentum as momentum_lib
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import routing
from optax_muon._src import spectral_probe as probe_lib
from optax_muon._src import spectral_scale as scale_lib
from optax_muon._src import weight_decay as wd_lib

__all__ = ["muon", "adamw_for_non_matrices"]


def adamw_for_non_matrices(learning_rate, *, b1, b2, eps, weight_decay, mu_dtype=None,
                           nesterov=False, weight_decay_mask=None):
  """The AdamW that the aliases use for embeddings, head, norms and biases."""
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                     mu_dtype=mu_dtype, nesterov=nesterov, mask=weight_decay_mask)


def muon(
    learning_rate: optax.ScalarOrSchedule,
    *,
    beta: jax.typing.ArrayLike = 0.95,
    nesterov: bool = True,
    momentum: str = "sum",
    ns_schedule: coeffs_lib.Schedule | dict = "jordan",
    ns_steps: int | dict | None = None,
    normalization: str = "frobenius",
    ns_eps: float = 1e-7,
    compute_dtype: Any = None,
    adaptive: bool = False,
    scale: str = "moonlight",
    rms: jax.typing.ArrayLike = 0.2,
    weight_decay: jax.typing.ArrayLike = 0.1,
    weight_decay_mode: str = "coupled",
    weight_decay_mask: Any = None,
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
    beta: momentum ``μ``.
    nesterov: Nesterov look-ahead.
    momentum: ``"sum"`` (Moonlight), ``"ema"`` (PyTorch) or ``"ema_debiased"`` (optax).
    ns_schedule: ``"jordan"``, ``"polar_express"``, ``"nanogpt5"``/``"dion"`` or a table;
      or per leaf ``{regex: schedule}`` on paths like ``layers/0/attn/q/kernel``.
    ns_steps: Newton–Schulz steps (default 5), or per leaf ``{regex: steps}``. Structural: under
      ``optax.inject_hyperparams`` leave it unset or list it in ``static_args``.
    normalization: ``"frobenius"``, ``"spectral"``, ``"schatten4"`` or ``"aol"``.
    ns_eps: normalizer epsilon.
    compute_dtype: Newton–Schulz dtype (``jnp.bfloat16`` as in Moonlight's code).
    adaptive: scale ``O`` by ``⟨input, O⟩`` (optax's ``adaptive``).
    scale: ``"moonlight"``, ``"jordan"``/``"width"``, ``"mup"`` or ``"none"``.
    rms: update RMS of the ``"moonlight"`` scale.
    weight_decay: ``λ`` for matrices (and AdamW unless ``adam_weight_decay``).
    weight_decay_mode: ``"coupled"`` or ``"independent"``.
    weight_decay_mask: bools tree / callable for the matrix decay.
    adam_b1, adam_b2, adam_eps: AdamW's betas and epsilon.
    adam_weight_decay: AdamW's ``λ`` (default: ``weight_decay``).
    adam_learning_rate: AdamW's ``η`` (default: ``learning_rate``).
    adam_nesterov: Nesterov AdamW (optax.contrib.muon uses it).
    mu_dtype: momentum dtype (e.g. ``jnp.bfloat16``).
    dimension_numbers: which leaves are matrices and how; default
      :func:`default_matrix_rule` (excludes embeddings, head, norms, biases).
    skip_nonfinite: skip steps with NaN/Inf gradients (counted in the state).
    mesh: device mesh for Newton–Schulz placement (see :func:`newton_schulz`):
      ``None`` finds it (``jax.set_mesh`` or array shardings), ``False`` leaves
      placement to the compiler.
    diagnostics: ``None`` (off: the chain is unchanged), an int ``every`` or a
      :class:`optax_muon.diagnostics.DiagnosticsConfig`: record spectral
      statistics in the state (read them with :func:`optax_muon.diagnostics.read`).

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
  adam_lr = learning_rate if adam_learning_rate is None else adam_learning_rate
  adam_wd = weight_decay if adam_weight_decay is None else adam_weight_decay

  def matrix_chain(dims):
    return optax.chain(
        momentum_lib.muon_momentum(beta, nesterov=nesterov, form=momentum, mu_dtype=mu_dtype),
        *probe_lib.before_ns(diagnostics, schedule=ns_schedule, steps=ns_steps,
                             default_schedule="jordan", default_steps=5, dimension_numbers=dims),
        ns_lib.newton_schulz(ns_lib.with_default(ns_schedule, "jordan"),
                             ns_lib.with_default(ns_steps, 5),
                             normalization=normalization, eps=ns_eps, mesh=mesh,
                             compute_dtype=compute_dtype, dimension_numbers=dims,
                             adaptive=adaptive),
        *probe_lib.after_ns(diagnostics, convention=scale, rms=rms, dimension_numbers=dims),
        scale_lib.spectral_scale(scale, rms=rms, dimension_numbers=dims),
        optax.scale_by_learning_rate(learning_rate),
        wd_lib.decoupled_weight_decay(weight_decay, learning_rate, mode=weight_decay_mode,
                                      mask=weight_decay_mask),
    )

  adam = adamw_for_non_matrices(adam_lr, b1=adam_b1, b2=adam_b2, eps=adam_eps,
                                weight_decay=adam_wd, mu_dtype=mu_dtype, nesterov=adam_nesterov)
  return routing.hybrid(matrix_chain, adam, dimension_numbers, skip_nonfinite=skip_nonfinite)
