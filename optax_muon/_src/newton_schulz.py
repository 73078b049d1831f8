"""Newton–Schulz orthogonalization: ``orthogonalize`` and the ``newton_schulz`` transform.

``orthogonalize(X)`` approximates the polar factor ``U Vᵀ`` of ``X = U S Vᵀ`` with
matmuls only: normalize so ``‖X‖₂ ≤ 1``, then for each ``(a, b, c)`` of the
schedule ``A = X Xᵀ;  X ← aX + (bA + cA²)X``. It works on the short side (a tall
matrix is transposed), on any dimension numbers (each batch index is an
independent matrix), in a chosen compute dtype, and maps zero to zero.

First-step normalizations (docs/algorithms.md, "Newton–Schulz"), each usable with any schedule:

* ``"frobenius"``: ``X / (ν‖X‖_F + ε)`` (ν from the schedule: 1, 1.01, 1.02).
* ``"spectral"``: ``X / (1.05·σ̂₁)``, ``σ̂₁⁴`` a power-iteration estimate of
  ``λ_max((XXᵀ)²)`` on the first step's own ``A²`` (no extra big matmul), capped
  by the upper bound ``‖A²‖_F^{1/4}``. Power iteration under-estimates σ₁, hence
  the 1.05 (not 1.01): Polar Express diverges for σ slightly above 1.
* ``"schatten4"``: ``X / ‖XXᵀ‖_F^{1/2}`` (= ``X/‖X‖_{S4}``); reuses the Gram.
* ``"aol"``: row scaling ``D = diag(Σ_j |A_ij|)^{-1/2}``, ``X ← DX``; reuses the
  Gram. The result is the polar factor of ``DX``, not of ``X``.

References:
  Jordan et al., `Muon <https://kellerjordan.github.io/posts/muon/>`_, 2024.
  Boissin et al., `Turbo-Muon <https://arxiv.org/abs/2512.04632>`_ (AOL), 2025.
  Grishina et al., `Chebyshev-type NS <https://arxiv.org/abs/2506.10935>`_, 2025.
"""

from __future__ import annotations

import collections
import functools
import re
from typing import Any, Literal, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import distributed
from optax_muon._src import gram_newton_schulz as gram_ns
from optax_muon._src import matrices
from optax_muon._src import ns_prologue as prologue
from optax_muon._src import validation

__all__ = ["NORMALIZATIONS", "orthogonalize", "orthogonalize_matrices", "newton_schulz"]

NORMALIZATIONS = prologue.NORMALIZATIONS
Normalization = prologue.Normalization
_check_normalization = prologue.check_normalization


def orthogonalize_matrices(
    x: jax.Array,
    table: np.ndarray,
    *,
    normalization: Normalization = "frobenius",
    input_scale: float = 1.0,
    eps: float = 1e-7,
    compute_dtype: Any = None,
    method: gram_ns.Method = "auto",
    restarts: Sequence[int] | None = None,
) -> jax.Array:
  """Core kernel on a ``[B, m, n]`` stack with a concrete ``(steps, 3)`` table.

  ``method="gram"`` (or ``"auto"`` where it is cheaper) runs the Gram iteration
  (:mod:`gram_newton_schulz`, restarting before the steps in ``restarts``;
  ``None``: its default placement) after the same preparation.
  """
  out_dtype = x.dtype
  b, m, n = x.shape
  if b * m * n == 0:
    return x
  prepared = prologue.prepare(x, normalization, input_scale, eps, compute_dtype)
  if method != "standard" and gram_ns.choose_method(method, m, n, table, normalization,
                                                    restarts) == "gram":
    x = gram_ns.iterate(prepared, table, normalization, restarts)
    x = jnp.swapaxes(x, 1, 2) if prepared.transposed else x
    return x.astype(out_dtype)
  x, transposed, a_gram, a_sq = prepared
  steps = [tuple(float(c) for c in row) for row in table]

  # Each step rounds to the compute dtype once per fused product, like two
  # addmm calls: H = bA + cA² and X = aX + HX are formed in >= f32. Rounding
  # every small op in bf16 instead costs 4x the error (aX and HX nearly cancel).
  dt, acc = x.dtype, prologue.acc_dtype(x.dtype)
  for i, (ca, cb, cc) in enumerate(steps):
    a_acc = a_gram if (i == 0 and a_gram is not None) else prologue.gram(x)
    a_mat = a_acc.astype(dt)
    a_mat_sq = a_sq if (i == 0 and a_sq is not None) else prologue.bmm(a_mat, a_mat)
    poly = (cb * a_mat.astype(acc) + cc * a_mat_sq.astype(acc)).astype(dt)
    x = (ca * x.astype(acc) + prologue.bmm(poly, x)).astype(dt)

  if transposed:
    x = jnp.swapaxes(x, 1, 2)
  return x.astype(out_dtype)


def orthogonalize(
    x: jax.Array,
    *,
    schedule: coeffs_lib.Schedule = "jordan",
    steps: int = 5,
    normalization: Normalization = "frobenius",
    eps: float = 1e-7,
    dimension_numbers: dn.MuonDimensionNumbers | None = None,
    compute_dtype: Any = None,
    lower_bound: float = 1e-3,
    method: gram_ns.Method = "auto",
) -> jax.Array:
  """Approximate polar factor of ``x`` by Newton–Schulz.

  Args:
    x: a matrix, or any-rank array described by ``dimension_numbers``.
    schedule: a name (``"jordan"``, ``"polar_express"``, ``"nanogpt5"``/``"dion"``)
      or explicit triples of shape ``(3,)`` or ``(n, 3)``.
    steps: number of Newton–Schulz steps (>= 1).
    normalization: ``"frobenius"``, ``"spectral"``, ``"schatten4"`` or ``"aol"``.
    eps: added to the normalizer; zero input gives zero output.
    dimension_numbers: reduction/output axes; default: the last two axes
      (``[..., fan_in, fan_out]``), leading axes are a batch of matrices.
    compute_dtype: dtype of the iteration (e.g. ``jnp.bfloat16``); ``None`` =
      float32 (float64 stays float64). The output has ``x``'s dtype.
    lower_bound: Polar Express only: smallest singular value to lift.
    method: ``"auto"`` (default, as in every optimizer: Gram where its flop
      model is cheaper, aspect ratio >= about 2; the standard iteration
      elsewhere), ``"standard"`` or ``"gram"`` (Gram Newton–Schulz: iterate on
      the small Gram matrix, apply the polynomial once per restart block).

  Returns:
    An array like ``x`` whose matrices have singular values near 1.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from optax_muon import orthogonalize
    >>> o = orthogonalize(jax.random.normal(jax.random.key(0), (64, 32)),
    ...                   schedule="polar_express", steps=8)
    >>> bool(jnp.allclose(o.T @ o, jnp.eye(32), atol=0.05))
    True
  """
  _check_normalization(normalization)
  gram_ns.check_method(method)
  table = coeffs_lib.ns_coefficients(schedule, steps, lower_bound=lower_bound)
  if dimension_numbers is None:
    if x.ndim < 2:
      raise ValueError(f"orthogonalize needs rank >= 2, got shape {x.shape}.")
    dimension_numbers = dn.MuonDimensionNumbers(x.ndim - 2, x.ndim - 1)
  layout = dn.matrix_layout(tuple(x.shape), dimension_numbers, "x")
  y = orthogonalize_matrices(
      dn.to_matrices(x, layout), table, normalization=normalization,
      input_scale=coeffs_lib.schedule_input_scale(schedule), eps=eps,
      compute_dtype=compute_dtype, method=method)
  return dn.from_matrices(y, layout)




class NSConfig(NamedTuple):
  """The Newton–Schulz coefficients one matrix uses (hashable: a bucket key)."""

  table: tuple[tuple[float, float, float], ...]
  input_scale: float


def per_path(spec: Any, path: str) -> Any:
  """A per-leaf option: a plain value, or ``{regex: value}`` (first ``re.search`` wins)."""
  if not isinstance(spec, Mapping):
    return spec
  for pattern, value in spec.items():
    if re.search(pattern, path):
      return value
  raise ValueError(f"{path}: no pattern of {list(spec)} matches this parameter; "
                   "add a catch-all entry such as {'': default}.")


def with_default(spec: Any, default: Any) -> Any:
  """``spec`` with ``default`` for unset values and for unmatched leaves of a mapping."""
  if spec is None:
    return default
  if isinstance(spec, Mapping) and "" not in spec:
    return {**spec, "": default}
  return spec


def ns_config_resolver(schedule: Any, steps: Any, lower_bound: float = 1e-3):
  """``path -> NSConfig`` for per-leaf ``schedule``/``steps`` specs, validated now.

  Raises ``ValueError`` at construction for unknown names, bad steps or tables.
  """
  for s in (schedule.values() if isinstance(schedule, Mapping) else [schedule]):
    for k in (steps.values() if isinstance(steps, Mapping) else [steps]):
      coeffs_lib.ns_coefficients(s, k, lower_bound=lower_bound)

  @functools.cache
  def config(leaf_schedule, leaf_steps) -> NSConfig:
    table = coeffs_lib.ns_coefficients(leaf_schedule, leaf_steps, lower_bound=lower_bound)
    return NSConfig(tuple((float(a), float(b), float(c)) for a, b, c in table),
                    coeffs_lib.schedule_input_scale(leaf_schedule))

  def resolve(path: str) -> NSConfig:
    leaf_schedule = per_path(schedule, path)
    if not isinstance(leaf_schedule, str):  # a table: hashable for the cache
      leaf_schedule = tuple(map(tuple, np.atleast_2d(np.asarray(leaf_schedule, float))))
    return config(leaf_schedule, per_path(steps, path))

  return resolve


def orthogonalize_stacks(
    stacks: matrices.MatrixStacks,
    resolve,
    *,
    normalization: Normalization = "frobenius",
    eps: float = 1e-7,
    compute_dtype: Any = None,
    small_matrix_size: int = 0,
    mesh: Any = None,
    method: gram_ns.Method = "auto",
) -> matrices.MatrixStacks:
  """Orthogonalizes every matrix of ``stacks`` with as few batched calls as possible.

  Stacks are oriented short side first (``[B, short, long]``), so ``[d, 4d]``
  and ``[4d, d]`` groups share a bucket; a bucket holds all matrices of one
  oriented shape and coefficient table (matrices with both sides at most
  ``small_matrix_size`` are zero-padded to one shape, which is exact). Each
  bucket is one kernel call; on ``mesh`` the buckets share one plan of whole
  matrices per device, balanced by the flops each matrix's iteration runs
  (``None``: where the arrays are; see :mod:`distributed`).
  """
  pieces = []  # (bucket key, group index, rows or None, oriented [b, short, long])
  for gi, (g, x) in enumerate(stacks.items()):
    short, long = sorted((g.fan_in, g.fan_out))
    shape = ("small",) if long <= small_matrix_size else (short, long)
    oriented = jnp.swapaxes(x, 1, 2) if g.fan_in > g.fan_out else x
    runs = matrices.row_runs(g, resolve)
    for cfg, rows in runs:
      part = oriented if len(runs) == 1 else oriented[rows]
      pieces.append(((shape, jnp.dtype(x.dtype), cfg), gi, None if len(runs) == 1 else rows,
                     part))
  buckets: dict[Any, list[int]] = collections.defaultdict(list)
  for k, (key, *_rest) in enumerate(pieces):
    buckets[key].append(k)
  kernels, merged, costs = [], [], []
  for key, idx in buckets.items():
    cfg = key[2]
    parts = [pieces[k][3] for k in idx]
    rows_max = max(p.shape[1] for p in parts)
    cols_max = max(p.shape[2] for p in parts)
    parts = [p if p.shape[1:] == (rows_max, cols_max) else
             jnp.pad(p, ((0, 0), (0, rows_max - p.shape[1]), (0, cols_max - p.shape[2])))
             for p in parts]
    kernels.append(functools.partial(
        orthogonalize_matrices, table=np.asarray(cfg.table), normalization=normalization,
        input_scale=cfg.input_scale, eps=eps, compute_dtype=compute_dtype, method=method))
    merged.append(parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0))
    # What one matrix of the bucket runs (its steps, the Gram form where "auto" takes it).
    costs.append(round(gram_ns.table_flops(rows_max, cols_max, np.asarray(cfg.table), method,
                                           normalization)))
  results: list[Any] = [None] * len(pieces)
  for idx, ortho in zip(buckets.values(),
                        distributed.map_buckets(kernels, merged, mesh, costs)):
    lo = 0
    for k in idx:
      n = pieces[k][3].shape[0]
      results[k] = ortho if len(idx) == 1 else ortho[lo:lo + n]
      lo += n
  out = []
  for gi, (g, x) in enumerate(stacks.items()):
    short, long = sorted((g.fan_in, g.fan_out))
    mine = [(pieces[k][2], r) for k, r in enumerate(results) if pieces[k][1] == gi]
    if len(mine) == 1:
      o = mine[0][1]
    else:  # rows with different coefficient tables: put them back in order
      o = jnp.zeros((g.rows, short, long), x.dtype)
      for sel, r in mine:
        o = o.at[sel].set(r[:, :short, :long])
    o = o[:, :short, :long] if o.shape[1:] != (short, long) else o
    out.append((jnp.swapaxes(o, 1, 2) if g.fan_in > g.fan_out else o).astype(x.dtype))
  return matrices.MatrixStacks(stacks.groups, tuple(out))


def newton_schulz(
    schedule: coeffs_lib.Schedule | Mapping[str, coeffs_lib.Schedule] = "jordan",
    steps: int | Mapping[str, int] = 5,
    *,
    normalization: Normalization = "frobenius",
    eps: float = 1e-7,
    compute_dtype: Any = None,
    dimension_numbers: dn.DimensionNumbersSpec = None,
    lower_bound: float = 1e-3,
    small_matrix_size: int = 0,
    mesh: Any = None,
    adaptive: bool = False,
    method: gram_ns.Method = "auto",
) -> optax.GradientTransformationExtraArgs:
  """Replaces every matrix update by its Newton–Schulz orthogonalization.

  Same-shaped matrices are orthogonalized in one batched call. On a device
  mesh each device orthogonalizes whole matrices of its share of each group
  (no collective inside the iteration, no device repeating another's work);
  updates come back in the parameters' sharding. The mesh is found
  automatically (``jax.set_mesh``, or arrays with Explicit-axis or concrete
  shardings); see ``mesh``.

  Args:
    schedule: coefficient schedule name or table (see :func:`ns_coefficients`),
      or per leaf ``{regex: schedule}`` matched against paths like
      ``layers/0/mlp/up/kernel`` (first match wins; ``""`` matches all).
    steps: Newton–Schulz steps (>= 1), or per leaf ``{regex: steps}``.
    normalization: first-step normalization, one of ``NORMALIZATIONS``.
    eps: normalizer epsilon.
    compute_dtype: dtype of the iteration (``jnp.bfloat16`` halves its cost on
      accelerators); updates keep their own dtype.
    dimension_numbers: which leaves are matrices and how, when used on an
      ordinary tree (see :func:`resolve_dimension_numbers`); default: every
      rank >= 2 leaf over its last two axes. Other leaves pass through.
    lower_bound: Polar Express only.
    small_matrix_size: matrices with both sides at most this size are
      zero-padded to one shape and orthogonalized in one batched call (exact;
      0 = off).
    mesh: ``None`` finds the mesh as above; a ``jax.sharding.Mesh`` to use that
      one (needed for an Auto-axis mesh under ``jax.jit`` without
      ``jax.set_mesh``); ``False`` to leave placement to the compiler.
    adaptive: multiply each output ``O`` by ``⟨X, O⟩`` (the dual norm of the
      input, Bernstein & Newhouse 2024; optax's ``adaptive=True``).
    method: ``"auto"`` (default), ``"standard"`` or ``"gram"`` (see :func:`orthogonalize`).

  Returns:
    A stateless optax transform.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_muon import newton_schulz
    >>> tx = newton_schulz("polar_express", steps=6, normalization="aol")
    >>> u, _ = tx.update({"w": jnp.ones((4, 8))}, tx.init(None))
    >>> u["w"].shape
    (4, 8)
    >>> tx = newton_schulz(steps={"mlp": 4, "": 5})  # per-leaf steps by path
  """
  _check_normalization(normalization)
  gram_ns.check_method(method)
  validation.check_nonnegative(eps, "eps")
  resolve = ns_config_resolver(schedule, steps, lower_bound)

  def init_fn(params):
    del params
    return None

  def update_fn(updates, state, params=None, **extra):
    del params, extra
    where = distributed.find_mesh(list(updates.values), mesh)
    run = functools.partial(orthogonalize_stacks, resolve=resolve,
                            normalization=normalization, eps=eps, compute_dtype=compute_dtype,
                            small_matrix_size=small_matrix_size, mesh=where, method=method)
    shardings = (jax.tree.map(lambda x: jax.typeof(x).sharding, updates)
                 if where is not None and distributed.is_explicit(where) else None)
    ortho = distributed.auto_region(run, where, shardings)(updates)
    if adaptive:
      ortho = ortho.map(lambda g, o, x: jnp.sum(x * o, axis=(1, 2), keepdims=True) * o, updates)
    return ortho, state

  return matrices.stacked_transform(init_fn, update_fn, dimension_numbers)
