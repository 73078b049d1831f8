"""Newton–Schulz orthogonalization: ``orthogonalize`` and the ``newton_schulz`` transform.

``orthogonalize(X)`` approximates the polar factor ``U Vᵀ`` of ``X = U S Vᵀ`` with
matmuls only: normalize so ``‖X‖₂ ≤ 1``, then for each ``(a, b, c)`` of the
schedule ``A = X Xᵀ;  X ← aX + (bA + cA²)X``. It works on the short side (a tall
matrix is transposed), on any dimension numbers (each batch index is an
independent matrix), in a chosen compute dtype, and maps zero to zero.

First-step normalizations (ALGORITHMS.md §1), each usable with any schedule:

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
from typing import Any, Literal, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import distributed

__all__ = ["NORMALIZATIONS", "orthogonalize", "orthogonalize_matrices", "newton_schulz"]

NORMALIZATIONS = ("frobenius", "spectral", "schatten4", "aol")
Normalization = Literal["frobenius", "spectral", "schatten4", "aol"]

_SPECTRAL_POWER_ITERS = 8
_SPECTRAL_SAFETY = 1.05


def _check_normalization(normalization: str) -> None:
  if normalization not in NORMALIZATIONS:
    raise ValueError(
        f"unknown normalization {normalization!r}; valid choices: {NORMALIZATIONS}."
    )


def _acc_dtype(dtype):
  return jnp.promote_types(dtype, jnp.float32)


def _gram(x):
  # [B, r, c] -> [B, r, r] accumulated in >= f32; contracts the long side
  # without materializing xᵀ.
  return jax.lax.dot_general(x, x, (((2,), (2,)), ((0,), (0,))),
                             preferred_element_type=_acc_dtype(x.dtype))


def _bmm(a, b):
  return jax.lax.dot_general(a, b, (((2,), (1,)), ((0,), (0,))),
                             preferred_element_type=_acc_dtype(a.dtype))


def _top_eigenvalue(a, iters: int):
  """Power-iteration estimate of λ_max of the PSD stack ``a`` ([B, r, r])."""
  r = a.shape[-1]
  # A fixed, non-degenerate start: not orthogonal to the top eigenvector of a
  # nonnegative-rowsum Gram in practice, and deterministic.
  v = jnp.broadcast_to(1.0 + jnp.arange(r, dtype=a.dtype) / r, a.shape[:-1])
  for _ in range(iters):
    v = jnp.einsum("bij,bj->bi", a, v)
    v = v / (jnp.linalg.norm(v, axis=-1, keepdims=True) + 1e-30)
  return jnp.einsum("bi,bij,bj->b", v, a, v)


def orthogonalize_matrices(
    x: jax.Array,
    table: np.ndarray,
    *,
    normalization: Normalization = "frobenius",
    input_scale: float = 1.0,
    eps: float = 1e-7,
    compute_dtype: Any = None,
) -> jax.Array:
  """Core kernel on a ``[B, m, n]`` stack with a concrete ``(steps, 3)`` table."""
  out_dtype = x.dtype
  b, m, n = x.shape
  if b * m * n == 0:
    return x
  transposed = m > n
  if transposed:
    x = jnp.swapaxes(x, 1, 2)
  x = x.astype(jnp.float32) if compute_dtype is None and x.dtype != jnp.float64 else x
  # Exact max-abs prescale: keeps 1e30 and 1e-30 inputs in range of the norms
  # below; NS is scale invariant so this changes nothing else.
  amax = jnp.max(jnp.abs(x), axis=(1, 2), keepdims=True)
  x = x / jnp.where(amax > 0, amax, 1.0)
  if compute_dtype is not None:
    x = x.astype(compute_dtype)
  steps = [tuple(float(c) for c in row) for row in table]

  a_gram = a_sq = None  # the first step's A = XXᵀ and A², when precomputed
  if normalization == "frobenius":
    norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=(1, 2), keepdims=True))
    x = (x / (input_scale * norm + eps)).astype(x.dtype)
  else:
    a32 = _gram(x).astype(jnp.float32)
    if normalization == "spectral":
      # λ_max(A²) by power iteration on A² (which step 1 needs anyway); the
      # estimate is a lower bound, so a safety factor keeps σ₁ below 1, and
      # ‖A²‖_F^{1/2} >= λ_max(A) caps it from above.
      sq32 = _bmm(a32, a32)
      lam_sq = _top_eigenvalue(sq32, _SPECTRAL_POWER_ITERS)
      upper = jnp.sqrt(jnp.sqrt(jnp.sum(jnp.square(sq32), axis=(1, 2))))
      sigma = jnp.minimum(_SPECTRAL_SAFETY * jnp.sqrt(jnp.sqrt(jnp.maximum(lam_sq, 0.0))),
                          jnp.sqrt(upper))
      s = (1.0 / jnp.maximum(sigma, eps))[:, None, None]
      a_sq = sq32 * s**4
    elif normalization == "schatten4":
      s = jax.lax.rsqrt(jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(a32), axis=(1, 2),
                                                    keepdims=True)), eps))
    elif normalization == "aol":
      s = jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.abs(a32), axis=2), eps))[:, :, None]
    else:
      _check_normalization(normalization)
    # s is [B,1,1] (a scalar per matrix) or [B,m,1] (AOL's row scaling D).
    x = (x * s).astype(x.dtype)
    a_gram = a32 * s * jnp.swapaxes(s, 1, 2)

  # Each step rounds to the compute dtype once per fused product, like two
  # addmm calls: H = bA + cA² and X = aX + HX are formed in >= f32. Rounding
  # every small op in bf16 instead costs 4x the error (aX and HX nearly cancel).
  dt, acc = x.dtype, _acc_dtype(x.dtype)
  for i, (ca, cb, cc) in enumerate(steps):
    a_acc = a_gram if (i == 0 and a_gram is not None) else _gram(x)
    a_mat = a_acc.astype(dt)
    a_mat_sq = a_sq if (i == 0 and a_sq is not None) else _bmm(a_mat, a_mat)
    poly = (cb * a_mat.astype(acc) + cc * a_mat_sq.astype(acc)).astype(dt)
    x = (ca * x.astype(acc) + _bmm(poly, x)).astype(dt)

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
  table = coeffs_lib.ns_coefficients(schedule, steps, lower_bound=lower_bound)
  if dimension_numbers is None:
    if x.ndim < 2:
      raise ValueError(f"orthogonalize needs rank >= 2, got shape {x.shape}.")
    dimension_numbers = dn.MuonDimensionNumbers(x.ndim - 2, x.ndim - 1)
  layout = dn.matrix_layout(tuple(x.shape), dimension_numbers, "x")
  y = orthogonalize_matrices(
      dn.to_matrices(x, layout), table, normalization=normalization,
      input_scale=coeffs_lib.schedule_input_scale(schedule), eps=eps,
      compute_dtype=compute_dtype)
  return dn.from_matrices(y, layout)


def _oriented(leaf: jax.Array, layout: dn.MatrixLayout) -> jax.Array:
  """``[B, short, long]``: the matrices of ``leaf``, tall ones transposed."""
  m = dn.to_matrices(leaf, layout)
  return jnp.swapaxes(m, 1, 2) if layout.fan_in > layout.fan_out else m


def _unoriented(m: jax.Array, layout: dn.MatrixLayout) -> jax.Array:
  m = jnp.swapaxes(m, 1, 2) if layout.fan_in > layout.fan_out else m
  return dn.from_matrices(m, layout)


class LeafConfig(NamedTuple):
  """The Newton–Schulz coefficients one leaf uses (hashable: a bucket key)."""
  table: tuple[tuple[float, float, float], ...]
  input_scale: float


def orthogonalize_tree_leaves(
    entries: list[tuple[str, jax.Array, dn.MatrixLayout | None]],
    configs: list[LeafConfig | None],
    *,
    normalization: Normalization,
    eps: float,
    compute_dtype: Any,
    group: bool = True,
    small_matrix_size: int = 0,
    mesh: Any = None,
) -> list[jax.Array]:
  """Orthogonalizes the matrix leaves of a flattened tree, others unchanged.

  Matrices are first oriented short side first (``[B, short, long]``), so a
  ``[d, 4d]`` and a ``[4d, d]`` kernel share a bucket. With ``group=True``
  same-shaped matrices with the same coefficients are concatenated and
  orthogonalized in one batched call; matrices whose sides are both at most
  ``small_matrix_size`` are zero-padded to the largest such shape and share one
  call too (exact: zero rows and columns stay zero and leave the other singular
  values alone). With a ``mesh`` (see :mod:`distributed`) each bucket is
  spread over the devices, whole matrices per device.
  """
  out: list[Any] = [leaf for _, leaf, _ in entries]
  buckets: dict[Any, list[int]] = collections.defaultdict(list)
  for i, (_, leaf, layout) in enumerate(entries):
    if layout is None:
      continue
    short, long = sorted((layout.fan_in, layout.fan_out))
    shape = ("small",) if long <= small_matrix_size else (short, long)
    key = (shape, jnp.dtype(leaf.dtype), configs[i]) if group else (i,)
    buckets[key].append(i)
  for idx in buckets.values():
    cfg = configs[idx[0]]
    stacks = [_oriented(entries[i][1], entries[i][2]) for i in idx]
    rows = max(s.shape[1] for s in stacks)
    cols = max(s.shape[2] for s in stacks)
    stacks = [s if s.shape[1:] == (rows, cols) else
              jnp.pad(s, ((0, 0), (0, rows - s.shape[1]), (0, cols - s.shape[2])))
              for s in stacks]
    stack = stacks[0] if len(stacks) == 1 else jnp.concatenate(stacks, axis=0)
    kernel = functools.partial(
        orthogonalize_matrices, table=np.asarray(cfg.table), normalization=normalization,
        input_scale=cfg.input_scale, eps=eps, compute_dtype=compute_dtype)
    ortho = distributed.map_matrices(kernel, stack, mesh)
    lo = 0
    for i in idx:
      layout = entries[i][2]
      hi = lo + layout.batch
      short, long = sorted((layout.fan_in, layout.fan_out))
      part = ortho if len(idx) == 1 else ortho[lo:hi]
      if part.shape[1:] != (short, long):
        part = part[:, :short, :long]
      out[i] = _unoriented(part, layout)
      lo = hi
  return out


def _per_leaf(spec: Any, path: str) -> Any:
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


class NewtonSchulzState(NamedTuple):
  """``newton_schulz`` is stateless."""


def newton_schulz(
    schedule: coeffs_lib.Schedule | Mapping[str, coeffs_lib.Schedule] = "jordan",
    steps: int | Mapping[str, int] = 5,
    *,
    normalization: Normalization = "frobenius",
    eps: float = 1e-7,
    compute_dtype: Any = None,
    dimension_numbers: dn.DimensionNumbersSpec = None,
    lower_bound: float = 1e-3,
    group_same_shapes: bool = True,
    small_matrix_size: int = 0,
    mesh: Any = None,
    adaptive: bool = False,
) -> optax.GradientTransformation:
  """Replaces every matrix update by its Newton–Schulz orthogonalization.

  On a device mesh, same-shaped matrices are grouped and each device
  orthogonalizes whole matrices of its share of the group (no collective inside
  the iteration, no device repeating another's work); updates come back in the
  parameters' sharding. The mesh is found automatically (``jax.set_mesh``, or
  arrays with Explicit-axis or concrete shardings); see ``mesh``.

  Args:
    schedule: coefficient schedule name or table (see :func:`ns_coefficients`),
      or per leaf ``{regex: schedule}`` matched against paths like
      ``layers/0/mlp/up/kernel`` (first match wins; ``""`` matches all).
    steps: Newton–Schulz steps (>= 1), or per leaf ``{regex: steps}``.
    normalization: first-step normalization, one of ``NORMALIZATIONS``.
    eps: normalizer epsilon.
    compute_dtype: dtype of the iteration (``jnp.bfloat16`` halves its cost on
      accelerators); updates keep their own dtype.
    dimension_numbers: which leaves are matrices and how (see
      :func:`resolve_dimension_numbers`); default: every rank >= 2 leaf over its
      last two axes. Leaves mapped to ``None`` pass through unchanged.
    lower_bound: Polar Express only.
    group_same_shapes: orthogonalize same-shaped matrices in one batched call.
    small_matrix_size: matrices with both sides at most this size are
      zero-padded to one shape and orthogonalized in one batched call (exact;
      0 = off). Many small matrices then cost one kernel, not one each.
    mesh: ``None`` finds the mesh as above; a ``jax.sharding.Mesh`` to use that
      one (needed for an Auto-axis mesh under ``jax.jit`` without
      ``jax.set_mesh``); ``False`` to leave placement to the compiler.
    adaptive: multiply each output ``O`` by ``⟨X, O⟩`` (the dual norm of the
      input, Bernstein & Newhouse 2024; optax's ``adaptive=True``).

  Returns:
    A stateless ``optax.GradientTransformation``.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from optax_muon import newton_schulz
    >>> tx = newton_schulz("polar_express", steps=6, normalization="aol")
    >>> u, _ = tx.update({"w": jnp.ones((4, 8))}, tx.init(None))
    >>> u["w"].shape
    (4, 8)
    >>> tx = newton_schulz(steps={"mlp": 4, "": 5})  # per-leaf steps by path
  """
  _check_normalization(normalization)

  @functools.cache
  def leaf_config(leaf_schedule, leaf_steps) -> LeafConfig:
    table = coeffs_lib.ns_coefficients(leaf_schedule, leaf_steps, lower_bound=lower_bound)
    return LeafConfig(tuple(tuple(float(c) for c in row) for row in table),
                      coeffs_lib.schedule_input_scale(leaf_schedule))

  def config_for(path: str) -> LeafConfig:
    leaf_schedule = _per_leaf(schedule, path)
    if not isinstance(leaf_schedule, str):  # a table: hashable for the cache
      leaf_schedule = tuple(map(tuple, np.atleast_2d(np.asarray(leaf_schedule, float))))
    return leaf_config(leaf_schedule, _per_leaf(steps, path))

  # Fail at construction on bad names, steps or tables, not at the first update.
  for s in (schedule.values() if isinstance(schedule, Mapping) else [schedule]):
    for k in (steps.values() if isinstance(steps, Mapping) else [steps]):
      coeffs_lib.ns_coefficients(s, k, lower_bound=lower_bound)

  def init_fn(params):
    del params
    return NewtonSchulzState()

  def update_fn(updates, state, params=None):
    del params
    treedef, entries = dn.matrix_leaves(dimension_numbers, updates)
    matrices = [(i, x) for i, (_, x, lay) in enumerate(entries) if lay is not None]
    configs = [None if lay is None else config_for(path) for path, _, lay in entries]
    where = distributed.find_mesh([x for _, x in matrices], mesh)

    def run(xs):
      sub = list(entries)
      for (i, _), x in zip(matrices, xs):
        sub[i] = (entries[i][0], x, entries[i][2])
      done = orthogonalize_tree_leaves(
          sub, configs, normalization=normalization, eps=eps, compute_dtype=compute_dtype,
          group=group_same_shapes, small_matrix_size=small_matrix_size, mesh=where)
      return [done[i] for i, _ in matrices]

    shardings = ([jax.typeof(x).sharding for _, x in matrices]
                 if where is not None and distributed.is_explicit(where) else None)
    ortho = distributed.auto_region(run, where, shardings)([x for _, x in matrices])
    leaves = [x for _, x, _ in entries]
    for (i, _), o in zip(matrices, ortho):
      leaves[i] = o
    if adaptive:
      leaves = [o if lay is None else jnp.sum(x * o) * o
                for (_, x, lay), o in zip(entries, leaves)]
    return treedef.unflatten(leaves), state

  return optax.GradientTransformation(init_fn, update_fn)
