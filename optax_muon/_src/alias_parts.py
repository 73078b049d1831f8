"""What the optimizer aliases share: their common arguments, checks and docs, AdamW, assembly.

Every alias is ``matrix_partition(<its matrix chain>, <AdamW>, stack_others=True,
skip_nonfinite=True)``, its matrix chain starting from :func:`scale_by_muon`.
The keyword arguments all aliases take (momentum, Newton–Schulz, weight decay,
the AdamW for non-matrix leaves, routing) are declared once here, in
:class:`Shared`: :func:`alias` adds them to an alias's signature (with that
alias's defaults), checks them, documents them and hands them to the alias's
body as one ``shared`` value.
"""

import functools
import inspect
import textwrap
from typing import Any, Callable, NamedTuple

import optax

from optax_muon._src import matrices
from optax_muon._src import newton_schulz as ns_lib
from optax_muon._src import validation
from optax_muon._src import weight_decay as wd_lib

__all__ = ["Shared", "adamw_for_others", "alias", "assemble"]


class Shared(NamedTuple):
  """The keyword arguments every alias takes (defaults: Moonlight's recipe)."""

  beta: Any = 0.95
  nesterov: bool = True
  mu_dtype: Any = None
  ns_schedule: Any = "jordan"
  ns_steps: Any = None
  normalization: str = "frobenius"
  compute_dtype: Any = None
  ns_method: str = "auto"
  weight_decay: Any = 0.1
  weight_decay_mask: str | None = None
  adam_b1: Any = 0.9
  adam_b2: Any = 0.95
  adam_eps: Any = 1e-8
  adam_weight_decay: Any = None
  adam_learning_rate: Any = None
  dimension_numbers: Any = None
  skip_nonfinite: bool = True
  mesh: Any = None
  diagnostics: Any = None

  def ns_kwargs(self, default_schedule: str, default_steps: int) -> dict[str, Any]:
    """The Newton–Schulz arguments of :func:`scale_by_muon`, the alias's defaults filled in."""
    return dict(ns_schedule=ns_lib.with_default(self.ns_schedule, default_schedule),
                ns_steps=ns_lib.with_default(self.ns_steps, default_steps),
                normalization=self.normalization, compute_dtype=self.compute_dtype,
                ns_method=self.ns_method, mesh=self.mesh)


_DOCS = """\
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
adam_b1, adam_b2, adam_eps: the betas and epsilon of the AdamW that steps the
  leaves that are not Muon matrices (embeddings, LM head, norms, biases).
adam_weight_decay: that AdamW's ``λ`` (``None``: ``weight_decay``).
adam_learning_rate: that AdamW's learning rate (``None``: ``learning_rate``).
dimension_numbers: which leaves are matrices and how: one
  ``MuonDimensionNumbers``, a tree, a callable ``params -> tree`` or a
  ``{regex: MuonDimensionNumbers | None}`` mapping; default
  :func:`default_matrix_rule` (every rank >= 2 leaf but embeddings, head,
  norms and biases, over its last two axes).
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


def alias(**defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  """Gives an alias the :class:`Shared` keyword arguments, with ``defaults`` of its own.

  The decorated body takes its own arguments plus ``shared`` (a checked
  :class:`Shared`); its docstring's ``@@shared@@`` line becomes their docs. The
  signature the world sees (``inspect.signature``, ``optax.inject_hyperparams``)
  lists every argument, shared ones included, with the alias's defaults.
  """
  unknown = set(defaults) - set(Shared._fields)
  if unknown:
    raise TypeError(f"not shared arguments: {sorted(unknown)}")
  shared_defaults = Shared(**defaults)

  def wrap(fn):
    own = inspect.signature(fn)
    params = [p for p in own.parameters.values() if p.name != "shared"]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                 default=getattr(shared_defaults, name))
               for name in Shared._fields]
    signature = own.replace(parameters=params)

    @functools.wraps(fn)
    def call(*args, **kwargs):
      bound = signature.bind(*args, **kwargs)
      bound.apply_defaults()
      arguments = dict(bound.arguments)
      shared = Shared(**{name: arguments.pop(name) for name in Shared._fields})
      _check(arguments.get("learning_rate"), shared)
      return fn(**arguments, shared=shared)

    call.__signature__ = signature
    lines = fn.__doc__.splitlines()
    at = next(i for i, l in enumerate(lines) if l.strip() == "@@shared@@")
    indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
    call.__doc__ = "\n".join(lines[:at] + [textwrap.indent(_DOCS, indent)] + lines[at + 1:])
    return call

  return wrap


def adamw_for_others(learning_rate: optax.ScalarOrSchedule, shared: Shared, *,
                     nesterov: bool = False) -> optax.GradientTransformation:
  """The AdamW for embeddings, head, norms and biases (same ``λ`` unless overridden).

  Equal to ``optax.adamw`` (``−η·(adam + λW)``), written with a decay that takes
  path masks on the shape-grouped stacks ``matrix_partition`` hands it.
  """
  lr = learning_rate if shared.adam_learning_rate is None else shared.adam_learning_rate
  wd = shared.weight_decay if shared.adam_weight_decay is None else shared.adam_weight_decay
  return optax.chain(
      optax.scale_by_adam(b1=shared.adam_b1, b2=shared.adam_b2, eps=shared.adam_eps,
                          mu_dtype=shared.mu_dtype, nesterov=nesterov),
      optax.scale_by_learning_rate(lr),
      wd_lib.decoupled_weight_decay(wd, lr, mask=shared.weight_decay_mask))


def assemble(matrix_chain: optax.GradientTransformation, others: optax.GradientTransformation,
             shared: Shared) -> optax.GradientTransformationExtraArgs:
  """``matrix_partition`` with the other leaves stacked too and the non-finite check inside."""
  return matrices.matrix_partition(matrix_chain, others, shared.dimension_numbers,
                                   stack_others=True, skip_nonfinite=shared.skip_nonfinite)
