"""``normuon``: NorMuon from the library's blocks (docs/algorithms.md, "NorMuon").

Muon whose orthogonalized update is normalized per output neuron by a running
second moment before the Moonlight scale restores its RMS (Li et al. 2025).
The matrix chain is a plain ``optax.chain`` of public transforms
(``muon_momentum``, ``newton_schulz``, ``normalize_neurons``, ``spectral_scale``,
``decoupled_weight_decay``); ``matrix_partition`` routes the rest to AdamW and
places Newton–Schulz on a mesh, as for ``muon``. It takes the same shared
arguments as the other aliases.
"""

import jax
import optax

from optax_muon._src import alias_parts
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import gram_newton_schulz as gram_ns
from optax_muon._src import momentum as momentum_lib
from optax_muon._src import neuron_norm
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import spectral_scale as scale_lib
from optax_muon._src import weight_decay as wd_lib
from optax_muon.diagnostics import probes

__all__ = ["normuon"]


@alias_parts.shared_docs
def normuon(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b2: jax.typing.ArrayLike = 0.95,
    neuron_eps: jax.typing.ArrayLike = 1e-8,
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
  """NorMuon for hidden matrices, AdamW for the rest.

  Per hidden matrix: ``M ← μM + G``; ``O = NS5(G + μM)``; each output neuron
  of ``O`` divided by the root of its running mean square (decay ``b2``);
  the Moonlight scale (update RMS ``rms``); ``W ← W − η·(update + λ·W)``.

  Args:
    learning_rate: ``η`` (float or schedule), in AdamW's units as for ``muon``.
    b2: decay of the per-neuron second moment, in [0, 1).
    neuron_eps: added to the root of that second moment.
    rms: update RMS of the ``"moonlight"`` scale.
    @@shared@@

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Examples:
    >>> import jax.numpy as jnp, optax_muon
    >>> tx = optax_muon.normuon(3e-3)
    >>> params = {"w": jnp.ones((8, 4)), "norm": {"scale": jnp.ones(4)}}
    >>> u, _ = tx.update(params, tx.init(params), params)
    >>> u["w"].shape
    (8, 4)

  References:
    Li et al., `NorMuon <https://arxiv.org/abs/2510.05491>`_, 2025.
  """
  shared = alias_parts.shared_arguments(locals())
  ns = shared.ns_kwargs("jordan", 5)
  matrix_chain = optax.chain(
      momentum_lib.muon_momentum(shared.beta, nesterov=shared.nesterov,
                                 mu_dtype=shared.mu_dtype),
      *probes.before_ns(shared.diagnostics, schedule=ns["ns_schedule"], steps=ns["ns_steps"]),
      ns_lib.newton_schulz(ns["ns_schedule"], ns["ns_steps"], normalization=shared.normalization,
                           compute_dtype=shared.compute_dtype, mesh=shared.mesh,
                           method=shared.ns_method),
      *probes.after_ns(shared.diagnostics, convention="moonlight", rms=rms),
      neuron_norm.normalize_neurons(b2, neuron_eps),
      scale_lib.spectral_scale("moonlight", rms=rms),
      optax.scale_by_learning_rate(learning_rate),
      wd_lib.decoupled_weight_decay(shared.weight_decay, learning_rate,
                                    mask=shared.weight_decay_mask),
  )
  return alias_parts.assemble(matrix_chain, alias_parts.adamw_for_others(learning_rate, shared),
                              shared, name="normuon", rms=rms)
