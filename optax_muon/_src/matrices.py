"""The per-matrix primitive: a tree's matrices as ``[B, fan_in, fan_out]`` stacks grouped by shape.

A parameter tree is read once into a :class:`MatrixPlan`: its dimension numbers
are resolved and checked against each leaf (rank, axes, float dtype, non-empty),
every matrix leaf gets a :class:`~optax_muon._src.dimension_numbers.MatrixLayout`,
and same-shaped matrices form a :class:`Group`. The matrices then travel as
:class:`MatrixStacks` — one ``[B, fan_in, fan_out]`` array per group — through
every transform of a Muon chain. Per-matrix work (Newton–Schulz, power
iterations, row norms, probes) is emitted once per *group*, not once per layer,
so compile time stays flat as a model gets deeper.

Three entry points:

* :func:`matrix_partition` routes matrices (as stacks) to one transform and the
  other leaves to another; it is what the aliases are built from.
* :func:`per_matrix` turns ``fn(update, state, param)`` on one stack into a
  transform; inside :func:`matrix_partition` it runs on the stacks directly,
  on an ordinary tree it stacks and unstacks around itself.
* :func:`stacked_transform` does the same for transforms that need all groups
  at once (Newton–Schulz buckets groups across shapes and devices).

Layout: a stack keeps the Flax ``[fan_in, fan_out]`` orientation, so an output
neuron is a *column* (``stack[b, :, j]``) and per-neuron vectors are
``[B, fan_out]``.
"""

import typing
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import distributed
from optax_muon._src import nonfinite

__all__ = [
    "Group",
    "MatrixPlan",
    "MatrixStacks",
    "MatrixPartitionState",
    "Member",
    "matrix_partition",
    "per_matrix",
    "plan_matrices",
    "row_mask",
    "row_runs",
    "stacked_transform",
]


class Member(NamedTuple):
  """One leaf inside a :class:`Group` (static)."""

  path: str
  leaf: int  # position in jax.tree.leaves(tree)
  layout: dn.MatrixLayout | None  # None: a non-matrix leaf, one row of its group
  start: int  # first row of its matrices in the group's stack

  @property
  def rows(self) -> int:
    return 1 if self.layout is None else self.layout.batch


class Group(NamedTuple):
  """Same-shaped matrices stacked as one ``[rows, fan_in, fan_out]`` array (static).

  A group of non-matrix leaves (``fan_in = fan_out = None``, see
  ``matrix_partition(stack_others=True)``) stacks them as ``[rows, *shape]``.
  """

  name: str  # "<fan_in>x<fan_out>", or "leaf:<shape>" for non-matrix leaves
  fan_in: int | None
  fan_out: int | None
  members: tuple[Member, ...]

  @property
  def rows(self) -> int:
    return sum(m.rows for m in self.members)

  def row_paths(self) -> tuple[str, ...]:
    """The parameter path of every row (matrix) of the stack."""
    return tuple(m.path for m in self.members for _ in range(m.rows))


@jax.tree_util.register_pytree_with_keys_class
class MatrixStacks:
  """One value per :class:`Group`: ``[B, fan_in, fan_out]`` stacks, or any per-group pytree.

  A pytree (keys: the group names), so every optax transform that maps over
  trees (``scale_by_learning_rate``, ``scale_by_adam``, momentum) runs on it
  unchanged; the static group descriptions ride along in the tree structure.

  Examples:
    >>> import jax.numpy as jnp
    >>> plan = plan_matrices({"a": jnp.ones((4, 8)), "b": jnp.ones((4, 8))})
    >>> stacks = plan.stack({"a": jnp.ones((4, 8)), "b": jnp.zeros((4, 8))})
    >>> [(g.name, v.shape) for g, v in stacks.items()]
    [('4x8', (2, 4, 8))]
  """

  __slots__ = ("groups", "values")

  def __init__(self, groups: tuple[Group, ...], values: tuple[Any, ...]):
    self.groups = tuple(groups)
    self.values = tuple(values)

  def items(self):
    return zip(self.groups, self.values)

  def map(self, fn: Callable[..., Any], *others: "MatrixStacks") -> "MatrixStacks":
    """``fn(group, value, *other_values)`` per group, as new :class:`MatrixStacks`."""
    return MatrixStacks(self.groups, tuple(
        fn(g, v, *(o.values[i] for o in others)) for i, (g, v) in enumerate(self.items())))

  def by_path(self) -> dict[str, Any]:
    """``{parameter path: its share of each group's value}``.

    A ``[rows, fan_in, fan_out]`` stack comes back in its parameter's shape;
    other per-row values (``[rows, ...]``, e.g. per-neuron vectors) as that
    parameter's rows.

    Examples:
      >>> import jax.numpy as jnp
      >>> params = {"a": jnp.ones((4, 8)), "b": jnp.zeros((4, 8))}
      >>> stacks = plan_matrices(params).stack(params)
      >>> {k: float(v.sum()) for k, v in stacks.by_path().items()}
      {'a': 32.0, 'b': 0.0}
    """
    out = {}
    for g, v in self.items():
      for m in g.members:
        def part(x, m=m, g=g):
          if m.layout is None:
            return x[m.start]
          x = x[m.start:m.start + m.rows]
          if tuple(x.shape) == (m.rows, g.fan_in, g.fan_out):
            return dn.from_matrices(x, m.layout)
          return x
        out[m.path] = jax.tree.map(part, v)
    return out

  def __getitem__(self, name: str) -> Any:
    for g, v in self.items():
      if g.name == name:
        return v
    raise KeyError(name)

  def __len__(self) -> int:
    return len(self.groups)

  def __eq__(self, other: Any) -> bool:  # like a NamedTuple: by value
    return (isinstance(other, MatrixStacks) and self.groups == other.groups
            and self.values == other.values)

  __hash__ = None  # type: ignore[assignment]  # compared by value, unhashable

  def __repr__(self) -> str:
    body = ", ".join(f"{g.name}: {getattr(v, 'shape', v)}" for g, v in self.items())
    return f"MatrixStacks({{{body}}})"

  def tree_flatten_with_keys(self):
    keys = tuple(jax.tree_util.DictKey(g.name) for g in self.groups)
    return tuple(zip(keys, self.values)), self.groups

  def tree_flatten(self):
    return self.values, self.groups

  @classmethod
  def tree_unflatten(cls, groups, values):
    return cls(groups, tuple(values))


def is_stacks(tree: Any) -> bool:
  return isinstance(tree, MatrixStacks)


class MatrixPlan(NamedTuple):
  """Which leaves of a tree are matrices and how they stack (static; see :func:`plan_matrices`)."""

  treedef: Any
  paths: tuple[str, ...]
  layouts: tuple[dn.MatrixLayout | None, ...]
  groups: tuple[Group, ...]
  other_groups: tuple[Group, ...] = ()  # same-shaped non-matrix leaves (when asked for)

  @property
  def members(self) -> tuple[Member, ...]:
    return tuple(m for g in self.groups + self.other_groups for m in g.members)

  def with_other_groups(self, leaves: list[Any]) -> "MatrixPlan":
    """This plan with the non-matrix leaves grouped by shape (each one row)."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, (x, lay) in enumerate(zip(leaves, self.layouts)):
      if lay is None:
        by_shape.setdefault(tuple(getattr(x, "shape", ())), []).append(i)
    groups = tuple(
        Group(f"leaf:{'x'.join(map(str, shape)) or 'scalar'}", None, None,
              tuple(Member(self.paths[i], i, None, k) for k, i in enumerate(idx)))
        for shape, idx in by_shape.items())
    return self._replace(other_groups=groups)

  def leaves(self, tree: Any, what: str = "tree") -> list[Any]:
    try:
      return self.treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as e:
      raise ValueError(f"{what} does not have the structure of the parameters: {e}") from None

  def stack(self, tree: Any, what: str = "tree", others: bool = False) -> MatrixStacks:
    """The matrices of ``tree`` (structured like the planned tree) as stacks.

    With ``others``, the grouped non-matrix leaves instead (``[rows, *shape]``).
    """
    leaves = self.leaves(tree, what)
    values = []
    for g in (self.other_groups if others else self.groups):
      if others:
        parts = [leaves[m.leaf][None] for m in g.members]
      else:
        parts = [dn.to_matrices(leaves[m.leaf], typing.cast(dn.MatrixLayout, m.layout))
                 for m in g.members]
      values.append(parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0))
    return MatrixStacks(self.other_groups if others else self.groups, tuple(values))

  def unstack(self, stacks: MatrixStacks, leaves: list[Any],
              rows: tuple[jax.Array, ...] | None = None) -> list[Any]:
    """``leaves`` with every matrix leaf replaced by its rows of ``stacks`` (cast to its dtype).

    ``rows`` (one int32 scalar per member, in :attr:`members` order) are the
    start rows as *runtime* values: slicing with them compiles to one kernel per
    shape for all same-shaped leaves, where static offsets compile one each.
    """
    out = list(leaves)
    start = {m.leaf: r for m, r in zip(self.members, rows)} if rows is not None else {}
    for g, stack in stacks.items():
      for m in g.members:
        if m.leaf not in start or len(g.members) == 1:
          part = stack if len(g.members) == 1 else stack[m.start:m.start + m.rows]
        else:
          part = jax.lax.dynamic_slice_in_dim(stack, start[m.leaf], m.rows, axis=0)
        ref = leaves[m.leaf]
        part = part[0] if m.layout is None else dn.from_matrices(part, m.layout)
        out[m.leaf] = part.astype(getattr(ref, "dtype", part.dtype))
    return out

  def others(self, tree: Any) -> Any:
    """``tree`` with ``None`` in place of its matrix leaves."""
    leaves = self.leaves(tree)
    return self.treedef.unflatten(
        [None if lay is not None else x for x, lay in zip(leaves, self.layouts)])

  @property
  def has_others(self) -> bool:
    return any(lay is None for lay in self.layouts)


def plan_matrices(tree: Any, dimension_numbers: dn.DimensionNumbersSpec = None, *,
                  default_rule: Callable[[str, Any], Any] = dn.rank_rule) -> MatrixPlan:
  """Resolves ``dimension_numbers`` on ``tree`` once and groups its matrices by shape.

  Args:
    tree: parameters, gradients or anything structured like them (arrays or
      ``jax.ShapeDtypeStruct``; only paths, shapes and dtypes are read).
    dimension_numbers: see :func:`resolve_dimension_numbers`.
    default_rule: ``(path, leaf) -> MuonDimensionNumbers | None`` for leaves the
      spec leaves open.

  Raises:
    ValueError: naming the leaf path, for dimension numbers that do not fit a
      leaf, a matrix that is empty or not floating point.

  Examples:
    >>> import jax.numpy as jnp
    >>> plan = plan_matrices({"w": jnp.zeros((3, 4, 8)), "b": jnp.zeros(8)})
    >>> [(g.name, g.rows) for g in plan.groups], plan.layouts[0]
    ([('4x8', 3)], None)
  """
  named, treedef = dn.leaves_with_paths(tree)
  dims = dn.resolve_dimension_numbers(dimension_numbers, tree, default_rule)
  layouts: list[dn.MatrixLayout | None] = []
  by_shape: dict[tuple[int, int], list[tuple[int, dn.MatrixLayout]]] = {}
  for i, ((path, leaf), d) in enumerate(zip(named, dims)):
    if d is None:
      layouts.append(None)
      continue
    lay = dn.matrix_layout(tuple(leaf.shape), d, path)
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(f"{path}: a Muon matrix must be floating point, got dtype {dtype}.")
    if lay.batch * lay.fan_in * lay.fan_out == 0:
      raise ValueError(f"{path}: a Muon matrix must be non-empty, got shape {tuple(leaf.shape)}.")
    layouts.append(lay)
    by_shape.setdefault((lay.fan_in, lay.fan_out), []).append((i, lay))
  groups = []
  for (fan_in, fan_out), items in by_shape.items():
    members, start = [], 0
    for i, lay in items:
      members.append(Member(named[i][0], i, lay, start))
      start += lay.batch
    groups.append(Group(f"{fan_in}x{fan_out}", fan_in, fan_out, tuple(members)))
  return MatrixPlan(treedef, tuple(p for p, _ in named), tuple(layouts), tuple(groups))


def row_mask(group: Group, predicate: Callable[[str], bool]) -> np.ndarray:
  """``[rows]`` bools: ``predicate(path)`` of each row's parameter (a static constant)."""
  return np.asarray([bool(predicate(p)) for p in group.row_paths()], dtype=bool)


def row_runs(group: Group, key: Callable[[str], Any]) -> list[tuple[Any, np.ndarray]]:
  """``[(key, row indices)]``: the group's rows split by ``key(path)`` (hashable).

  One entry holding every row when all its matrices agree (the usual case).
  """
  runs: dict[Any, list[int]] = {}
  for row, path in enumerate(group.row_paths()):
    runs.setdefault(key(path), []).append(row)
  return [(k, np.asarray(rows)) for k, rows in runs.items()]


def stacked_transform(init_fn: Callable[[MatrixStacks], Any],
                      update_fn: Callable[..., tuple[MatrixStacks, Any]],
                      dimension_numbers: dn.DimensionNumbersSpec = None
                      ) -> optax.GradientTransformationExtraArgs:
  """A transform written on :class:`MatrixStacks`, usable on ordinary trees too.

  ``init_fn(param_stacks) -> state`` and ``update_fn(update_stacks, state,
  param_stacks_or_None, **extra) -> (update_stacks, state)``. Given stacks (as
  inside :func:`matrix_partition`) they run directly; given an ordinary tree,
  its matrices (per ``dimension_numbers``; default every rank >= 2 leaf over its
  last two axes) are stacked first and unstacked after, and every other leaf
  passes through unchanged.
  """

  def init(params):
    if is_stacks(params):
      return init_fn(params)
    return init_fn(plan_matrices(params, dimension_numbers).stack(params))

  def update(updates, state, params=None, **extra):
    if is_stacks(updates):
      return update_fn(updates, state, params, **extra)
    plan = plan_matrices(updates, dimension_numbers)
    leaves = plan.leaves(updates)
    p = None if params is None else plan.stack(params, "params")
    new, state = update_fn(plan.stack(updates), state, p, **extra)
    return plan.treedef.unflatten(plan.unstack(new, leaves)), state

  return optax.GradientTransformationExtraArgs(init, update)


def per_matrix(fn: Callable[[jax.Array, Any, jax.Array | None], tuple[jax.Array, Any]],
               init: Callable[[jax.Array], Any] | None = None, *,
               dimension_numbers: dn.DimensionNumbersSpec = None,
               ) -> optax.GradientTransformationExtraArgs:
  """A transform from a function of one ``[B, fan_in, fan_out]`` stack of matrices.

  Args:
    fn: ``fn(update, state, param) -> (new_update, new_state)`` for one group:
      ``update`` and ``param`` (``None`` when the caller passes no params) are
      ``[B, fan_in, fan_out]``, ``state`` is what ``init`` made for the group.
      It runs once per group of same-shaped matrices, whatever the depth.
    init: ``init(param) -> state`` for one group (default: no state, ``None``).
    dimension_numbers: which leaves are matrices when used on an ordinary tree
      (default: every rank >= 2 leaf over its last two axes); inside
      :func:`matrix_partition` the partition's own matrices are used.

  Returns:
    An optax transform; other leaves pass through unchanged.

  Examples:
    >>> import jax.numpy as jnp
    >>> # Divide every matrix by its Frobenius norm.
    >>> def normalize(u, state, param):
    ...   return u / jnp.linalg.norm(u, axis=(1, 2), keepdims=True), state
    >>> tx = per_matrix(normalize)
    >>> u, _ = tx.update({"w": 3 * jnp.eye(2), "b": jnp.ones(2)}, tx.init(None))
    >>> round(float(u["w"][0, 0]), 4), u["b"].tolist()
    (0.7071, [1.0, 1.0])
  """

  def init_fn(params):
    return None if init is None else params.map(lambda g, p: init(p))

  def update_fn(updates, state, params=None, **extra):
    del extra
    out, new_states = [], []
    for i, u in enumerate(updates.values):
      s = None if state is None else state.values[i]
      new_u, new_s = fn(u, s, None if params is None else params.values[i])
      out.append(new_u)
      new_states.append(new_s)
    new_state = None if state is None else MatrixStacks(updates.groups, tuple(new_states))
    return MatrixStacks(updates.groups, tuple(out)), new_state

  return stacked_transform(init_fn, update_fn, dimension_numbers)


@jax.tree_util.register_pytree_node_class
class PlannedRows:
  """The start row of every matrix leaf in its group (int32 scalars), and what was planned.

  The rows are kept as *runtime* values so that slicing the stacks back into
  leaves compiles one kernel per shape, not one per leaf. The static part
  (groups, and the paths and shapes of the other leaves) lets ``update`` tell a
  tree that does not match the state apart.
  """

  __slots__ = ("rows", "planned")

  def __init__(self, rows: tuple[jax.Array, ...], planned: tuple[Any, ...]):
    self.rows, self.planned = tuple(rows), planned

  def tree_flatten(self):
    return self.rows, self.planned

  @classmethod
  def tree_unflatten(cls, planned, rows):
    return cls(tuple(rows), planned)

  def __repr__(self) -> str:
    return f"PlannedRows({len(self.rows)} matrices)"

  def __eq__(self, other: Any) -> bool:
    return (isinstance(other, PlannedRows) and self.planned == other.planned
            and self.rows == other.rows)

  __hash__ = None  # type: ignore[assignment]  # compared by value, unhashable


class MatrixPartitionState(NamedTuple):
  rows: PlannedRows  # int32 scalar per grouped leaf: its start row in its group.
  matrix: Any  # state of the matrix transform (over MatrixStacks).
  other: Any  # state of the other transform (stacks, or a tree like params).
  skipped_steps: Any  # int32 scalar: steps skipped for non-finite values (None: not checked).


def _planned(plan: MatrixPlan, leaves: list[Any]) -> tuple[Any, ...]:
  others = tuple((p, tuple(getattr(x, "shape", ()))) for p, x, lay in
                 zip(plan.paths, leaves, plan.layouts) if lay is None)
  return (plan.groups, others)


class _Opaque:
  """A leaf standing for the shape-grouped state when no parameters are given."""

  def __repr__(self) -> str:
    return "<stacks>"


_OPAQUE = _Opaque()


def _is_placeholder(tree: Any) -> bool:
  """A leafless, non-container stand-in for a parameter tree (``optax.tree.map_params``)."""
  return not jax.tree.leaves(tree) and type(tree) not in (dict, list, tuple, type(None))


def _check_floats(plan: MatrixPlan, leaves: list[Any]) -> None:
  for path, leaf in zip(plan.paths, leaves):
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(f"{path}: optimizers need floating-point parameters, got dtype {dtype}.")


def _check_shapes(plan: MatrixPlan, updates: list[Any], params: list[Any]) -> None:
  for path, u, p in zip(plan.paths, updates, params):
    us, ps = getattr(u, "shape", None), getattr(p, "shape", None)
    if us is not None and ps is not None and tuple(us) != tuple(ps):
      raise ValueError(f"{path}: the gradient has shape {tuple(us)} but the parameter has "
                       f"shape {tuple(ps)}.")


def _check_planned(plan: MatrixPlan, leaves: list[Any], state_rows: PlannedRows) -> None:
  planned = _planned(plan, leaves)
  if planned == state_rows.planned:
    return
  mine = {m.path for m in plan.members} | {q for q, _ in planned[1]}
  theirs = ({m.path for g in state_rows.planned[0] for m in g.members}
            | {q for q, _ in state_rows.planned[1]})
  raise ValueError("the optimizer state was made for other parameters: only in the state: "
                   f"{sorted(theirs - mine)[:8]}, only in the updates: "
                   f"{sorted(mine - theirs)[:8]} (or shapes differ).")


def matrix_partition(
    matrix_transform: optax.GradientTransformation,
    other_transform: optax.GradientTransformation,
    dimension_numbers: dn.DimensionNumbersSpec = None,
    *,
    stack_others: bool = False,
    skip_nonfinite: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Matrices (as shape-grouped stacks) to one transform, every other leaf to another.

  The tree is planned once per ``init``/``update`` (:func:`plan_matrices` with
  :func:`default_matrix_rule`): ``matrix_transform`` sees
  :class:`MatrixStacks` of updates, its state and the params as stacks;
  ``other_transform`` sees the tree with ``None`` in place of the matrices (no
  ``MaskedNode``: ``nnx.Optimizer`` and orbax restores work), or, with
  ``stack_others``, the other leaves stacked by shape too. A branch with no
  leaves is not called. Gradients shaped unlike their parameter, and integer
  parameters, raise ``ValueError`` naming the path. On a mesh with Explicit
  axes the update runs in Auto mode and hands back updates and state in the
  shardings they came in.

  Everything per-leaf is done once per group, so the compiled update grows by
  a handful of instructions per layer: leaves are concatenated into their
  group's stack on the way in and sliced out (at start rows kept in the state,
  so all same-shaped leaves share one kernel) on the way out.

  Args:
    matrix_transform: runs on the matrix stacks (e.g. a Muon chain).
    other_transform: runs on everything else (e.g. ``optax.adamw``).
    dimension_numbers: which leaves are matrices and how (see
      :func:`resolve_dimension_numbers`); ``None`` = :func:`default_matrix_rule`.
    stack_others: hand ``other_transform`` the non-matrix leaves stacked by
      shape (``[rows, *shape]``). Exact for elementwise transforms (Adam, SGD,
      Lion, decoupled decay with path masks); not for transforms that look at a
      leaf's shape (Adafactor) or at the tree (global clipping).
    skip_nonfinite: skip a step whose gradients are not finite: zero updates,
      both states unchanged, one more ``skipped_steps`` in the state (checked
      once per group, before the update; see :func:`skip_nonfinite`).

  Examples:
    >>> import jax.numpy as jnp, optax, optax_muon
    >>> tx = optax_muon.matrix_partition(
    ...     optax.chain(optax_muon.newton_schulz(), optax.scale(-0.1)), optax.adam(0.1))
    >>> params = {"w": jnp.ones((4, 4)), "embed": {"embedding": jnp.ones((8, 4))}}
    >>> u, _ = tx.update(params, tx.init(params), params)
    >>> u["w"].shape, u["embed"]["embedding"].shape
    ((4, 4), (8, 4))
  """
  matrix_transform = optax.with_extra_args_support(matrix_transform)
  other_transform = optax.with_extra_args_support(other_transform)

  def plan(tree):
    p = plan_matrices(tree, dimension_numbers, default_rule=dn.default_matrix_rule)
    leaves = p.leaves(tree)
    _check_floats(p, leaves)
    return p.with_other_groups(leaves) if stack_others else p

  def others_of(p, tree, what="tree"):
    return p.stack(tree, what, others=True) if stack_others else p.others(tree)

  def init_fn(params):
    if _is_placeholder(params):
      # optax.tree.map_params inits on a leafless stand-in for the parameters to find
      # the state's parameter-shaped parts; the stacks have none, so they are opaque.
      other = _OPAQUE if stack_others else other_transform.init(params)
      return MatrixPartitionState(_OPAQUE, _OPAQUE, other, _OPAQUE if skip_nonfinite else None)
    p = plan(params)
    rows = PlannedRows(tuple(jnp.asarray(m.start, jnp.int32) for m in p.members),
                       _planned(p, p.leaves(params)))
    return MatrixPartitionState(
        rows, matrix_transform.init(p.stack(params)), other_transform.init(others_of(p, params)),
        jnp.zeros([], jnp.int32) if skip_nonfinite else None)

  def run(updates, state, params, extra):
    p = plan(updates)
    leaves = p.leaves(updates)
    if params is not None:
      _check_shapes(p, leaves, p.leaves(params, "params"))
    _check_planned(p, leaves, state.rows)
    has_others = bool(p.other_groups) if stack_others else p.has_others
    matrices_in = p.stack(updates)
    others_in = others_of(p, updates)
    if skip_nonfinite:
      ok = nonfinite.finite_gradients((matrices_in, others_in))
    matrices_out, matrix_state = matrices_in, state.matrix
    others_out, other_state = others_in, state.other
    if p.groups:
      matrices_out, matrix_state = matrix_transform.update(
          matrices_in, state.matrix, None if params is None else p.stack(params, "params"),
          **extra)
    if has_others:
      others_out, other_state = other_transform.update(
          others_in, state.other, None if params is None else others_of(p, params, "params"),
          **extra)
    skipped = state.skipped_steps
    if skip_nonfinite:
      (matrices_out, others_out), (matrix_state, other_state), skipped = nonfinite.keep_if(
          ok, (matrices_out, others_out), (matrix_state, other_state),
          (state.matrix, state.other), skipped)
    if p.groups:
      leaves = p.unstack(matrices_out, leaves, state.rows.rows)
    if has_others and stack_others:
      leaves = p.unstack(others_out, leaves, state.rows.rows)
    elif has_others:
      for i, x in enumerate(p.leaves(others_out)):
        if p.layouts[i] is None:
          leaves[i] = x
    return p.treedef.unflatten(leaves), MatrixPartitionState(state.rows, matrix_state,
                                                             other_state, skipped)

  def update_fn(updates, state, params=None, **extra):
    if params is not None:
      # Reads of the weights wait for the gradients: weight-only work (Muown's column norms,
      # ...) scheduled before the backward pass would hold a copy of every matrix through it.
      updates, params = jax.lax.optimization_barrier((updates, params))
    step = lambda u, s, p: run(u, s, p, extra)
    mesh = distributed.explicit_mesh(jax.tree.leaves(updates))
    if mesh is not None:
      # Sharding-in-types meshes: the power iterations and row norms contract
      # sharded axes, which Explicit mode forbids; run in Auto mode and return
      # updates and state in the shardings they came in.
      types = lambda t: jax.tree.map(lambda x: jax.typeof(x).sharding, t)
      step = jax.sharding.auto_axes(step, out_sharding=(types(updates), types(state)))
    return step(updates, state, params)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
