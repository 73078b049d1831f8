"""What the optimizer aliases share: argument checks, docs, AdamW for the rest, assembly.

Every alias is ``matrix_partition(<its matrix chain>, <AdamW>, stack_others=True,
skip_nonfinite=True)``;
the matrix chains start from :func:`scale_by_muon`. The argument docs that the
aliases share are written once here and spliced into each docstring where it
says ``@@name@@``.
"""

import re
import textwrap
from typing import Callable

import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import matrices
from optax_muon._src import validation
from optax_muon._src import weight_decay as wd_lib

__all__ = ["adamw_for_others", "assemble", "check_common", "shared_docs"]

SHARED_ARGS = {
    "momentum": """\
beta: momentum ``μ`` in [0, 1) (sum form ``M ← μM + G``).
nesterov: feed Newton–Schulz the Nesterov look-ahead ``G + μM``.
mu_dtype: dtype of the momentum buffers (e.g. ``jnp.bfloat16``).""",
    "newton_schulz": """\
ns_schedule: ``"jordan"``, ``"polar_express"``, ``"nanogpt5"``/``"dion"`` or a
  ``(n, 3)`` table; or per leaf ``{regex: schedule}`` on paths like
  ``layers/0/attn/q/kernel`` (first match wins).
ns_steps: Newton–Schulz steps, or per leaf ``{regex: steps}``. Structural: under
  ``optax.inject_hyperparams`` leave it unset or list it in ``static_args``.
normalization: first-step normalization: ``"frobenius"``, ``"spectral"``,
  ``"schatten4"`` or ``"aol"``.
compute_dtype: Newton–Schulz dtype (``jnp.bfloat16`` as in Moonlight's code).""",
    "weight_decay": """\
weight_decay: decoupled decay ``λ``: ``W ← W − η_t·λ·W`` on every matrix and
  (unless ``adam_weight_decay`` says otherwise) on every AdamW leaf.
weight_decay_mask: path regex (``re.search`` on ``a/b/c`` paths) of the leaves
  that decay; ``None`` = all.""",
    "adam": """\
adam_b1, adam_b2, adam_eps: the betas and epsilon of the AdamW that steps the
  leaves that are not Muon matrices (embeddings, LM head, norms, biases).
adam_weight_decay: that AdamW's ``λ`` (default: ``weight_decay``).
adam_learning_rate: that AdamW's learning rate (default: ``learning_rate``).""",
    "routing": """\
dimension_numbers: which leaves are matrices and how: one
  ``MuonDimensionNumbers``, a tree, a callable ``params -> tree`` or a
  ``{regex: MuonDimensionNumbers | None}`` mapping; default
  :func:`default_matrix_rule` (every rank >= 2 leaf but embeddings, head,
  norms and biases, over its last two axes).
skip_nonfinite: skip a step whose gradients or updates are not finite (zero
  update, state unchanged, counted in ``state.skipped_steps``).
mesh: device mesh for Newton–Schulz placement (see :func:`newton_schulz`):
  ``None`` finds it (``jax.set_mesh`` or array shardings), ``False`` leaves
  placement to the compiler.
diagnostics: ``None`` (off: the chain is unchanged), an int ``every`` or a
  :class:`optax_muon.diagnostics.DiagnosticsConfig`: record spectral
  statistics in the state (read them with :func:`optax_muon.diagnostics.read`).""",
}


def shared_docs(fn: Callable) -> Callable:
  """Replaces each ``@@name@@`` line of ``fn``'s docstring with ``SHARED_ARGS[name]``."""

  def splice(match):
    indent, name = match.group(1), match.group(2)
    return textwrap.indent(SHARED_ARGS[name], indent)

  fn.__doc__ = re.sub(r"^([ \t]*)@@(\w+)@@$", splice, fn.__doc__, flags=re.MULTILINE)
  return fn


def check_common(learning_rate, *, beta, weight_decay, adam_b1, adam_b2, adam_eps,
                 adam_weight_decay, adam_learning_rate) -> None:
  """Construction-time checks shared by the aliases (``ValueError`` naming the argument)."""
  validation.check_learning_rate(learning_rate)
  if adam_learning_rate is not None:
    validation.check_learning_rate(adam_learning_rate, "adam_learning_rate")
  validation.check_beta(beta, "beta")
  validation.check_beta(adam_b1, "adam_b1")
  validation.check_beta(adam_b2, "adam_b2")
  validation.check_nonnegative(adam_eps, "adam_eps")
  validation.check_nonnegative(weight_decay, "weight_decay")
  if adam_weight_decay is not None:
    validation.check_nonnegative(adam_weight_decay, "adam_weight_decay")


def adamw_for_others(learning_rate, *, adam_learning_rate, b1, b2, eps, weight_decay,
                     adam_weight_decay, weight_decay_mask, mu_dtype=None,
                     nesterov=False) -> optax.GradientTransformation:
  """The AdamW for embeddings, head, norms and biases (same ``λ`` unless overridden).

  Equal to ``optax.adamw`` (``−η·(adam + λW)``), written with a decay that takes
  path masks on the shape-grouped stacks ``matrix_partition`` hands it.
  """
  lr = learning_rate if adam_learning_rate is None else adam_learning_rate
  return optax.chain(
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype, nesterov=nesterov),
      optax.scale_by_learning_rate(lr),
      wd_lib.decoupled_weight_decay(weight_decay if adam_weight_decay is None
                                    else adam_weight_decay, lr, mask=weight_decay_mask))


def assemble(matrix_chain: optax.GradientTransformation, others: optax.GradientTransformation,
             dimension_numbers: dn.DimensionNumbersSpec, skip_nonfinite: bool
             ) -> optax.GradientTransformationExtraArgs:
  """``matrix_partition`` with the other leaves stacked too and the non-finite check inside."""
  return matrices.matrix_partition(matrix_chain, others, dimension_numbers, stack_others=True,
                                   skip_nonfinite=skip_nonfinite)



