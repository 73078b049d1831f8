"""What the optimizer aliases share: their common arguments, checks and docs, AdamW, assembly.

Every alias is ``matrix_partition(<its matrix chain>, <AdamW>, stack_others=True,
skip_nonfinite=True)``, its matrix chain starting from :func:`scale_by_muon`.
The keyword arguments all aliases take (momentum, Newton–Schulz, weight decay,
the AdamW for non-matrix leaves, routing) are the fields of :class:`Shared`.
Each alias writes them out in its own signature (typed, with its own defaults);
:func:`shared_arguments` collects and checks them, :func:`shared_docs` writes
their documentation (:data:`SHARED_DOCS`, kept once here) into the alias's
docstring.
"""

import textwrap
from typing import Any, Callable, Literal, Mapping, NamedTuple, TypeVar, Union

import jax
import optax

from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import describe as describe_lib
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import gram_newton_schulz as gram_ns
from optax_muon._src import matrices
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import validation
from optax_muon._src import weight_decay as wd_lib
from optax_muon.diagnostics import probes

__all__ = [
    "SPECTRAL_ADAM_LR_RATIO",
    "Diagnostics",
    "MeshSpec",
    "SHARED_DOCS",
    "ScheduleSpec",
    "Shared",
    "StepsSpec",
    "adam_learning_rate",
    "adamw_for_others",
    "assemble",
    "shared_arguments",
    "shared_docs",
]

# The AdamW leaves' lr per unit of a spectral learning rate (``‖ΔW‖₂/s``: Muon++,
# ``muon(scale="mup")``) when ``adam_learning_rate`` is unset. A spectral lr is no AdamW lr;
# this ratio is measured: Muon++ at 0.02 on the default model (benchmarks/results/
# headline.md, ``--leaves-sweep``), its leaves at 0.003 / 0.01 / 0.02 ended at 1.156 / 1.140 /
# 1.146, bracketed best 0.01 = 0.5x. Both lrs are width-independent under μP, so the ratio
# is too, to first order; ``muon(scale="mup")`` takes it unmeasured (same units).
SPECTRAL_ADAM_LR_RATIO = 0.5

# A schedule (name or ``(n, 3)`` table), or per leaf ``{path regex: schedule}``.
ScheduleSpec = Union[coeffs_lib.Schedule, Mapping[str, coeffs_lib.Schedule]]
# Newton–Schulz steps, or per leaf ``{path regex: steps}``; None: the alias's default.
StepsSpec = Union[int, Mapping[str, int], None]
# A mesh to place Newton–Schulz on; None: find it; False: leave placement to the compiler.
MeshSpec = Union[jax.sharding.Mesh, jax.sharding.AbstractMesh, Literal[False], None]
# None (off), every N steps, a mapping of DiagnosticsConfig fields, or a DiagnosticsConfig.
Diagnostics = Union[int, Mapping[str, Any], probes.DiagnosticsConfig, None]


class Shared(NamedTuple):
  """The keyword arguments every alias takes (defaults: Moonlight's recipe, as ``muon``'s)."""

  beta: jax.typing.ArrayLike = 0.95
  nesterov: bool = True
  mu_dtype: jax.typing.DTypeLike | None = None
  ns_schedule: ScheduleSpec = "jordan"
  ns_steps: StepsSpec = None
  normalization: ns_lib.Normalization = "frobenius"
  compute_dtype: jax.typing.DTypeLike | None = None
  ns_method: gram_ns.Method = "auto"
  weight_decay: jax.typing.ArrayLike = 0.1
  weight_decay_mask: str | None = None
  adam_b1: jax.typing.ArrayLike = 0.9
  adam_b2: jax.typing.ArrayLike = 0.95
  adam_eps: jax.typing.ArrayLike = 1e-8
  adam_weight_decay: jax.typing.ArrayLike | None = None
  adam_learning_rate: optax.ScalarOrSchedule | None = None
  dimension_numbers: dn.DimensionNumbersSpec = None
  skip_nonfinite: bool = True
  mesh: MeshSpec = None
  diagnostics: Diagnostics = None

  def ns_kwargs(self, default_schedule: str, default_steps: int) -> dict[str, Any]:
    """The Newton–Schulz arguments of :func:`scale_by_muon`, the alias's defaults filled in."""
    return dict(ns_schedule=ns_lib.with_default(self.ns_schedule, default_schedule),
                ns_steps=ns_lib.with_default(self.ns_steps, default_steps),
                normalization=self.normalization, compute_dtype=self.compute_dtype,
                ns_method=self.ns_method, mesh=self.mesh)


SHARED_DOCS = """\
beta: momentum ``μ`` in [0, 1) (sum form ``M ← μM + G``).
nesterov: feed Newton–Schulz the Nesterov look-ahead ``G + μM``.
mu_dtype: dtype of the momentum buffers (e.g. ``jnp.bfloat16``).
ns_schedule: ``"jordan"``, ``"polar_express"``, ``"nanogpt5"``/``"dion"`` or a
  ``(n, 3)`` table; or per leaf ``{regex: schedule}`` on paths like
  ``layers/0/attn/q/kernel`` (first match wins).
ns_steps: Newton–Schulz steps, or per leaf ``{regex: steps}``. Structural: under
  ``optax.inject_hyperparams`` leave it unset or list it in ``static_args``.
normalization: first-step normalization: ``"frobenius"``, ``"spectral"``,
  ``"schatten4"`` or ``"aol"``.
compute_dtype: Newton–Schulz dtype (``jnp.bfloat16`` as in Moonlight's code).
ns_method: ``"auto"`` (default: Gram Newton–Schulz where the aspect ratio makes
  it cheaper, about 2:1 and wider; the standard iteration elsewhere), ``"gram"``
  or ``"standard"`` (optax.contrib's iteration everywhere).
weight_decay: decoupled decay ``λ``: ``W ← W − η_t·λ·W`` on every matrix and
  (unless ``adam_weight_decay`` says otherwise) on every AdamW leaf.
weight_decay_mask: path regex (``re.search`` on ``a/b/c`` paths) of the leaves
  that decay; ``None`` = all.
adam_b1: the first-moment beta of the AdamW that steps the leaves that are
  not Muon matrices (embeddings, LM head, norms, biases).
adam_b2: that AdamW's second-moment beta.
adam_eps: that AdamW's epsilon.
adam_weight_decay: that AdamW's ``λ`` (``None``: ``weight_decay``).
adam_learning_rate: that AdamW's learning rate, in AdamW's units (``None``:
  ``learning_rate`` where that is in AdamW's units; where it is spectral
  (``muon_plus_plus``, ``muon(scale="mup")``), ``SPECTRAL_ADAM_LR_RATIO`` (0.5)
  times it, on its schedule). Comparing optimizers, set it to one value for all.
dimension_numbers: which leaves are matrices and how: one
  ``MuonDimensionNumbers``, a tree, a callable ``params -> tree`` or a
  ``{regex: MuonDimensionNumbers | None}`` mapping; default
  :func:`default_matrix_rule` (every rank >= 2 leaf but embeddings, head,
  norms and biases, over its last two axes; a convolution as one
  ``[kh·kw·in, out]`` matrix). ``dimension_numbers_for(model)`` reads the
  layouts a framework states (Flax logical names, Equinox's ``[out, in]``);
  ``FusedDimensionNumbers`` splits a fused leaf (QKV) into its matrices.
  ``describe(params, tx)`` prints what was decided.
skip_nonfinite: skip a step whose gradients are not finite (zero
  update, state unchanged, counted in ``state.skipped_steps``).
mesh: device mesh for Newton–Schulz placement (see :func:`newton_schulz`):
  ``None`` finds it (``jax.set_mesh`` or array shardings), ``False`` leaves
  placement to the compiler.
diagnostics: ``None`` (off: the chain is unchanged), an int ``every`` or a
  :class:`optax_muon.diagnostics.DiagnosticsConfig`: record spectral
  statistics in the state (read them with :func:`optax_muon.diagnostics.read`)."""


def _check(learning_rate: Any, shared: Shared) -> None:
  """Construction-time checks of the shared arguments (``ValueError`` naming the argument)."""
  validation.check_learning_rate(learning_rate)
  if shared.adam_learning_rate is not None:
    validation.check_learning_rate(shared.adam_learning_rate, "adam_learning_rate")
  for name in ("beta", "adam_b1", "adam_b2"):
    validation.check_beta(getattr(shared, name), name)
  for name in ("adam_eps", "weight_decay", "adam_weight_decay"):
    if getattr(shared, name) is not None:
      validation.check_nonnegative(getattr(shared, name), name)


def shared_arguments(arguments: Mapping[str, Any]) -> Shared:
  """The :class:`Shared` fields of an alias's arguments (its ``locals()``), checked.

  Raises:
    ValueError: naming the argument, for an impossible learning rate, beta,
      epsilon or weight decay.
  """
  shared = Shared(**{name: arguments[name] for name in Shared._fields})
  _check(arguments["learning_rate"], shared)
  return shared


_F = TypeVar("_F", bound=Callable[..., Any])


def shared_docs(fn: _F) -> _F:
  """Writes :data:`SHARED_DOCS` into ``fn``'s docstring in place of its ``@@shared@@`` line.

  Only the docstring changes: the signature is the one written in ``fn``.
  """
  lines = (fn.__doc__ or "").splitlines()
  at = next(i for i, l in enumerate(lines) if l.strip() == "@@shared@@")
  indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
  fn.__doc__ = "\n".join(lines[:at] + [textwrap.indent(SHARED_DOCS, indent)] + lines[at + 1:])
  return fn


def adam_learning_rate(learning_rate: optax.ScalarOrSchedule, shared: Shared,
                       spectral: bool = False) -> optax.ScalarOrSchedule:
  """The AdamW leaves' learning rate: ``shared.adam_learning_rate``, else ``learning_rate``
  (AdamW units) or ``SPECTRAL_ADAM_LR_RATIO × learning_rate`` (``spectral``: an lr in units
  of ``‖ΔW‖₂/s``, which is no AdamW lr).

  Examples:
    >>> adam_learning_rate(0.02, Shared(), spectral=True)
    0.01
    >>> adam_learning_rate(0.02, Shared(adam_learning_rate=3e-3), spectral=True)
    0.003
  """
  if shared.adam_learning_rate is not None:
    return shared.adam_learning_rate
  if not spectral:
    return learning_rate
  if callable(learning_rate):
    return lambda count: SPECTRAL_ADAM_LR_RATIO * learning_rate(count)
  return SPECTRAL_ADAM_LR_RATIO * learning_rate


def adamw_for_others(learning_rate: optax.ScalarOrSchedule, shared: Shared, *,
                     nesterov: bool = False, spectral: bool = False
                     ) -> optax.GradientTransformation:
  """The AdamW for embeddings, head, norms and biases (same ``λ`` unless overridden), at
  :func:`adam_learning_rate` (``spectral``: ``learning_rate`` is in spectral units).

  Equal to ``optax.adamw`` (``−η·(adam + λW)``), written with a decay that takes
  path masks on the shape-grouped stacks ``matrix_partition`` hands it.
  """
  lr = adam_learning_rate(learning_rate, shared, spectral)
  wd = shared.weight_decay if shared.adam_weight_decay is None else shared.adam_weight_decay
  return optax.chain(
      optax.scale_by_adam(b1=shared.adam_b1, b2=shared.adam_b2, eps=shared.adam_eps,
                          mu_dtype=shared.mu_dtype, nesterov=nesterov),
      optax.scale_by_learning_rate(lr),
      wd_lib.decoupled_weight_decay(wd, lr, mask=shared.weight_decay_mask))


def assemble(matrix_chain: optax.GradientTransformation, others: optax.GradientTransformation,
             shared: Shared, *, name: str = "muon", scale: str = "moonlight",
             rms: Any = 0.2, multiplier: Any = 1.0) -> optax.GradientTransformationExtraArgs:
  """``matrix_partition`` with the other leaves stacked too and the non-finite check inside.

  ``name``, ``scale``, ``rms`` and ``multiplier`` (the alias and its spectral
  scale) are recorded on the transform for :func:`optax_muon.describe`.
  """
  tx = matrices.matrix_partition(matrix_chain, others, shared.dimension_numbers,
                                 stack_others=True, skip_nonfinite=shared.skip_nonfinite)
  return describe_lib.attach(tx, describe_lib.AliasInfo(
      name, shared.dimension_numbers, scale, describe_lib.as_float(rms),
      describe_lib.as_float(multiplier)))
