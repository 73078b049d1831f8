"""Whole matrices per device, balanced by cost: Newton–Schulz with no collective inside.

Under plain GSPMD an FSDP-sharded matrix turns every Newton–Schulz iteration
into collectives, or every device repeats the whole orthogonalization. Here
each bucket, a ``[B, m, n]`` stack of independent matrices, is resharded so
that its *stack* axis is split over the devices (one all-to-all in, one out),
and the function runs inside ``jax.shard_map`` on each device's own matrices.

Which device gets how many matrices of which bucket is one plan for all buckets
(:func:`balance`): every matrix goes to the least-loaded device, largest cost
first (longest-processing-time scheduling, as Megatron's layer-sharded Muon
bin-packs whole matrices), with each matrix's cost the flops its function runs
(``newton_schulz`` counts its steps, in the Gram form where it takes it). A device with
fewer matrices of a bucket than others holds zero padding there and skips it
(``lax.cond``), so per-device work is its share of the plan, not the padding.
A device runs its matrices one after another (``lax.map``): one matrix's
temporaries are live at a time, and each bucket's function is compiled once.

Only mesh axes that stay inside one TPU slice carry the stack: an axis whose
devices span slices (data parallelism over DCN) is left out, so each slice
orthogonalizes its own copy and no Newton–Schulz traffic crosses DCN. Device
placement is known from a concrete ``jax.sharding.Mesh`` (the ``mesh``
argument, ``jax.set_mesh`` with a ``Mesh``, or concrete arrays); an
``AbstractMesh`` alone spreads over all its axes.

The mesh comes from, in order: an explicit ``mesh`` argument, the context mesh
(``jax.set_mesh``), the sharding type of the arrays (Explicit axes), or the
sharding of concrete (non-traced) arrays. Without one (a single device, or an
Auto-axis mesh used under ``jax.jit`` without ``jax.set_mesh``) the function
runs on the stacks as they are.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

__all__ = ["Placement", "auto_region", "balance", "explicit_mesh", "find_mesh", "is_explicit",
           "map_buckets", "slice_local_axes"]

Mesh = Any  # jax.sharding.Mesh | jax.sharding.AbstractMesh
SCOPE = "newton_schulz"  # named scope of the distributed region (read back from compiled HLO)


def _usable(mesh: Mesh | None) -> bool:
  if mesh is None or getattr(mesh, "empty", True) or mesh.size <= 1:
    return False
  # Inside a user's shard_map the axes are Manual: the work is already split.
  return all(t != AxisType.Manual for t in mesh.axis_types)


def _context_mesh() -> Mesh | None:
  """The ``jax.set_mesh`` mesh: the concrete one when set (it knows its devices' slices)."""
  abstract = jax.sharding.get_abstract_mesh()
  if not _usable(abstract):
    return None
  try:  # jax.sharding.get_mesh refuses under jit; the context still holds the Mesh.
    from jax._src import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
    concrete = mesh_lib.get_concrete_mesh()
  except (ImportError, AttributeError):
    concrete = None
  if (concrete is not None and not getattr(concrete, "empty", True)
      and concrete.axis_names == abstract.axis_names
      and tuple(concrete.axis_sizes) == tuple(abstract.axis_sizes)):
    return concrete.update(axis_types=abstract.axis_types)
  return abstract


def find_mesh(leaves: Sequence[Any], mesh: Mesh | bool | None = None) -> Mesh | None:
  """The mesh to spread matrices over, or ``None`` to run them where they are.

  Args:
    leaves: the arrays about to be orthogonalized (tracers or concrete arrays).
    mesh: ``False`` never distributes; a ``Mesh``/``AbstractMesh`` is used as
      given; ``None`` (default) finds one as the module docstring says.
  """
  if mesh is False:
    return None
  if mesh is not None and mesh is not True:
    return mesh if _usable(mesh) else None
  context = _context_mesh()
  if context is not None:
    return context
  for leaf in leaves:
    sharding = getattr(jax.typeof(leaf), "sharding", None)
    if sharding is not None and _usable(getattr(sharding, "mesh", None)):
      return sharding.mesh
    if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
      concrete = getattr(leaf, "sharding", None)
      if isinstance(concrete, NamedSharding) and _usable(concrete.mesh):
        return concrete.mesh
  return None


def explicit_mesh(leaves: Sequence[Any]) -> Mesh | None:
  """The Explicit-axis mesh in the sharding types of ``leaves``, if any."""
  for leaf in leaves:
    mesh = getattr(getattr(jax.typeof(leaf), "sharding", None), "mesh", None)
    if _usable(mesh) and is_explicit(mesh):
      return mesh
  return None


def is_explicit(mesh: Mesh) -> bool:
  """Whether any of the mesh's axes are Explicit (sharding in types)."""
  return any(t == AxisType.Explicit for t in mesh.axis_types)


def slice_local_axes(mesh: Mesh) -> tuple[str, ...]:
  """The mesh axes (of size > 1) whose devices all lie in one TPU slice.

  Devices without a ``slice_index`` (CPU, GPU, one slice) count as one slice;
  an ``AbstractMesh`` has no devices, so all its axes count.

  Examples:
    >>> import jax
    >>> slice_local_axes(jax.sharding.AbstractMesh((2, 4), ("data", "fsdp")))
    ('data', 'fsdp')
  """
  names = tuple(n for n in mesh.axis_names if mesh.shape[n] > 1)
  if not isinstance(mesh, jax.sharding.Mesh):
    return names
  slice_of = np.vectorize(lambda d: getattr(d, "slice_index", 0) or 0,
                          otypes=[int])(mesh.devices)
  return tuple(n for n in names
               if not np.any(np.diff(slice_of, axis=mesh.axis_names.index(n))))


@dataclasses.dataclass(frozen=True)
class Placement:
  """How many matrices of each bucket each device orthogonalizes.

  ``counts[k][d]``: matrices of bucket ``k`` on device ``d``; ``costs[k]``: the
  cost of one of them. Device ``d`` holds ``slots[k]`` entries of bucket ``k``,
  its own matrices first, then zero padding it skips.
  """

  counts: tuple[tuple[int, ...], ...]
  costs: tuple[int, ...]

  @property
  def devices(self) -> int:
    return len(self.counts[0]) if self.counts else 1

  @property
  def slots(self) -> tuple[int, ...]:
    return tuple(max(c) for c in self.counts)

  def loads(self) -> np.ndarray:
    """Each device's total cost."""
    return sum((np.asarray(c, np.float64) * w for c, w in zip(self.counts, self.costs)),
               np.zeros(self.devices))

  @property
  def imbalance(self) -> float:
    """The busiest device's cost over the ideal (total cost / devices); 1.0 is perfect."""
    loads = self.loads()
    return float(loads.max() / loads.mean()) if loads.sum() else 1.0


def balance(sizes: Sequence[int], costs: Sequence[int], devices: int) -> Placement:
  """Spreads buckets of ``sizes[k]`` matrices of cost ``costs[k]`` over ``devices``.

  Largest cost first, each matrix goes to a least-loaded device (ties: the
  lowest index), so the busiest device carries at most one matrix more than
  the ideal share would.

  Examples:
    >>> p = balance([96, 64, 64], [7, 2, 1], devices=128)  # 3 shapes on 128 chips
    >>> p.slots, round(p.imbalance, 2)
    ((1, 2, 2), 1.04)
    >>> balance([12], [1], devices=8).counts  # one bucket: 2 on four devices, 1 on four
    ((2, 2, 2, 2, 1, 1, 1, 1),)
  """
  if devices < 1 or len(sizes) != len(costs) or any(c < 0 for c in costs):
    raise ValueError(f"balance: devices={devices} must be >= 1, one cost >= 0 per bucket")
  loads = np.zeros(devices, np.int64)
  counts = np.zeros((len(sizes), devices), np.int64)
  for k in sorted(range(len(sizes)), key=lambda k: -costs[k]):
    left, cost = int(sizes[k]), int(costs[k])
    while left:
      low = loads.min()
      lowest = np.flatnonzero(loads == low)
      if left < lowest.size:
        lowest = lowest[:left]
      above = loads[loads > low]
      # Whole rounds over the lowest devices, up to the next load level.
      rounds = left // lowest.size
      if above.size and cost:
        rounds = min(rounds, max(1, -(-(int(above.min()) - int(low)) // cost)))
      counts[k, lowest] += rounds
      loads[lowest] += rounds * cost
      left -= rounds * lowest.size
  return Placement(tuple(tuple(int(n) for n in row) for row in counts),
                   tuple(int(c) for c in costs))


def _runs(counts: Sequence[int]) -> list[tuple[int, int]]:
  """``counts`` as (devices, count) runs in device order."""
  runs: list[tuple[int, int]] = []
  for c in counts:
    if runs and runs[-1][1] == c:
      runs[-1] = (runs[-1][0] + 1, c)
    else:
      runs.append((1, c))
  return runs


def _to_slots(stack: jax.Array, counts: Sequence[int]) -> jax.Array:
  """``[B, ...]`` -> ``[devices * slots, ...]``: device d's matrices, then zeros, in order."""
  slots = max(counts)
  rest = stack.shape[1:]
  if all(c == slots for c in counts):
    return stack
  pieces, lo = [], 0
  for devices, c in _runs(counts):
    block = stack[lo:lo + devices * c].reshape((devices, c) + rest)
    pieces.append(jnp.pad(block, ((0, 0), (0, slots - c)) + ((0, 0),) * len(rest)))
    lo += devices * c
  return jnp.concatenate(pieces).reshape((-1,) + rest)


def _from_slots(out: jax.Array, counts: Sequence[int]) -> jax.Array:
  """The inverse of :func:`_to_slots`."""
  slots = max(counts)
  rest = out.shape[1:]
  if all(c == slots for c in counts):
    return out
  out = out.reshape((len(counts), slots) + rest)
  pieces, first = [], 0
  for devices, c in _runs(counts):
    if c:
      pieces.append(out[first:first + devices, :c].reshape((devices * c,) + rest))
    first += devices
  return jnp.concatenate(pieces)


def _one_at_a_time(fn: Callable[[jax.Array], jax.Array], counts: Sequence[int],
                   axes: tuple[str, ...]) -> Callable[[jax.Array], jax.Array]:
  """``fn`` on a device's ``[slots, ...]`` block, one matrix after another, skipping padding.

  A loop instead of one batched call: one matrix's temporaries are live at a time (a batch
  holds every slot's, gigabytes for a 70B model's MLP matrices), ``fn`` is compiled once
  per bucket, and a device runs only its own ``counts[d]`` matrices.
  """
  fewest, slots = min(counts), max(counts)
  if slots == 1 and fewest == 1:
    return fn
  one = lambda x: fn(x[None])[0]
  if fewest == slots:
    return lambda block: jax.lax.map(one, block)

  def run(block: jax.Array) -> jax.Array:
    mine = jnp.asarray(counts, jnp.int32)[jax.lax.axis_index(axes)]
    out = jax.eval_shape(one, block[0])
    skip = lambda x: jnp.zeros(out.shape, out.dtype)
    return jax.lax.map(lambda args: jax.lax.cond(args[0] < mine, one, skip, args[1]),
                       (jnp.arange(slots, dtype=jnp.int32), block))

  return run


def map_buckets(fns: Sequence[Callable[[jax.Array], jax.Array]], stacks: Sequence[jax.Array],
                mesh: Mesh | None, costs: Sequence[int]) -> list[jax.Array]:
  """``[fn(stack) for fn, stack in zip(fns, stacks)]``, with whole matrices per device.

  Each ``fn`` must treat each ``stack[i]`` independently. On a mesh the
  buckets share one :func:`balance` plan over the devices of
  :func:`slice_local_axes` (``costs``: the cost of one matrix of each bucket)
  and each runs inside
  ``jax.shard_map``; results come back in the inputs' layout. Call it in an
  Auto-axis context (see :func:`auto_region`).
  """
  if mesh is None:
    return [fn(x) for fn, x in zip(fns, stacks)]
  axes = slice_local_axes(mesh)
  # shard_map takes the context's mesh where it is this one (inside auto_region: its Auto form).
  context = jax.sharding.get_abstract_mesh()
  if (_usable(context) and not is_explicit(context) and context.axis_names == mesh.axis_names
      and tuple(context.axis_sizes) == tuple(mesh.axis_sizes)):
    mesh = context
  devices = math.prod(mesh.shape[a] for a in axes)
  if devices <= 1:
    return [fn(x) for fn, x in zip(fns, stacks)]
  plan = balance([x.shape[0] for x in stacks], costs, devices)
  with jax.named_scope(SCOPE):
    return [_map_bucket(fn, x, counts, mesh, axes)
            for fn, x, counts in zip(fns, stacks, plan.counts)]


def _map_bucket(fn, stack: jax.Array, counts: Sequence[int], mesh: Mesh,
                axes: tuple[str, ...]) -> jax.Array:
  devices = len(counts)
  # With several mesh axes in use, a matrix sharded on both of its dimensions
  # (fsdp × tensor) cannot move onto the stack axis in one all-to-all: SPMD falls
  # back to a full copy on every device. Going through "all axes on one matrix
  # dimension" makes each move one all-to-all. (With one axis, direct is best.)
  via = None
  if len(axes) > 1:
    for dim in (1, 2):
      if stack.shape[dim] % devices == 0:
        via = NamedSharding(mesh, P(*(axes if d == dim else None for d in range(stack.ndim))))
        stack = jax.lax.with_sharding_constraint(stack, via)
        break
  spec = P(axes, *([None] * (stack.ndim - 1)))
  slotted = jax.lax.with_sharding_constraint(_to_slots(stack, counts), NamedSharding(mesh, spec))
  out = jax.shard_map(_one_at_a_time(fn, counts, axes), mesh=mesh, in_specs=spec,
                      out_specs=spec, check_vma=False)(slotted)
  out = _from_slots(out, counts)
  return out if via is None else jax.lax.with_sharding_constraint(out, via)


def auto_region(fn: Callable[..., Any], mesh: Mesh | None, out_shardings: Any):
  """``fn`` run with the mesh's axes in Auto mode (a no-op unless some are Explicit).

  Explicit-axis meshes put shardings in types, where reshaping sharded axes
  is an error; inside ``jax.sharding.auto_axes`` the partitioner handles
  the group/ungroup reshapes, and ``out_shardings`` returns each result in its
  input's sharding.
  """
  if mesh is None or not is_explicit(mesh):
    return fn
  return jax.sharding.auto_axes(fn, out_sharding=out_shardings)
