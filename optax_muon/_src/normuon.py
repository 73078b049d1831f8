"""``normuon``: NorMuon from public optax_muon blocks (docs/algorithms.md, "NorMuon").

Muon whose orthogonalized update is normalized per output neuron by a running
second moment before the Moonlight scale restores its RMS (Li et al. 2025).
This alias is the README's "add your own optimizer" example: the matrix chain
is a plain ``optax.chain`` of public transforms, ``matrix_partition`` routes the
rest to AdamW and places Newton–Schulz on a mesh, as for ``muon``.
"""

from typing import Any

import optax

import optax_muon as om


def normuon(learning_rate: optax.ScalarOrSchedule, *, beta: float = 0.95, b2: float = 0.95,
            ns_steps: int | None = None, weight_decay: float = 0.1, adam_b2: float = 0.95,
            dimension_numbers: Any = None, mesh: Any = None) -> optax.GradientTransformation:
  """NorMuon for hidden matrices, AdamW for the rest.

  Examples:
    >>> import jax.numpy as jnp, optax_muon
    >>> tx = optax_muon.normuon(3e-3)
    >>> params = {"w": jnp.ones((8, 4)), "norm": {"scale": jnp.ones(4)}}
    >>> u, _ = tx.update(params, tx.init(params), params)
    >>> u["w"].shape
    (8, 4)
  """
  matrix_chain = optax.chain(
      om.muon_momentum(beta),
      om.newton_schulz("jordan", 5 if ns_steps is None else ns_steps, mesh=mesh, method="auto"),
      om.normalize_neurons(b2),
      om.spectral_scale("moonlight"),
      optax.scale_by_learning_rate(learning_rate),
      om.decoupled_weight_decay(weight_decay, learning_rate),
  )
  adamw = optax.adamw(learning_rate, b1=0.9, b2=adam_b2, weight_decay=weight_decay)
  return om.matrix_partition(matrix_chain, adamw, dimension_numbers, stack_others=True,
                             skip_nonfinite=True)
