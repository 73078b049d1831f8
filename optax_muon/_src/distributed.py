"""Whole matrices per device: run a batched matrix function once, not once per device.

Under plain GSPMD an FSDP-sharded matrix turns every Newton–Schulz iteration
into collectives, or every device repeats the whole orthogonalization. Here a
``[B, m, n]`` stack of independent matrices is padded to a multiple of the mesh
size, sharded over its *stack* axis across every mesh axis (one reshard in, one
out), and the function runs inside ``jax.shard_map`` on each device's own
matrices: no collective inside the iteration, and each device does
``ceil(B / devices)`` matrices of work (docs/algorithms.md, "Distributing Newton–Schulz").

The mesh comes from, in order: an explicit ``mesh`` argument, the context mesh
(``jax.set_mesh``), the sharding type of the arrays (Explicit axes), or the
sharding of concrete (non-traced) arrays. Without one — a single device, or an
Auto-axis mesh used under ``jax.jit`` without ``jax.set_mesh`` — the function
runs on the stack as it is, exactly as before.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

__all__ = ["auto_region", "explicit_mesh", "find_mesh", "is_explicit", "map_matrices",
           "per_device_batch"]

Mesh = Any  # jax.sharding.Mesh | jax.sharding.AbstractMesh


def _usable(mesh: Mesh | None) -> bool:
  if mesh is None or getattr(mesh, "empty", True) or mesh.size <= 1:
    return False
  # Inside a user's shard_map the axes are Manual: the work is already split.
  return all(t != AxisType.Manual for t in mesh.axis_types)


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
  context = jax.sharding.get_abstract_mesh()
  if _usable(context):
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


def per_device_batch(batch: int, mesh: Mesh | None) -> int:
  """Matrices each device orthogonalizes for a stack of ``batch``."""
  return batch if mesh is None else math.ceil(batch / mesh.size)


def map_matrices(fn: Callable[[jax.Array], jax.Array], stack: jax.Array,
                 mesh: Mesh | None) -> jax.Array:
  """``fn(stack)`` for a batched, per-matrix ``fn``, with whole matrices per device.

  ``fn`` must treat each ``stack[i]`` independently and map zero matrices to
  zero (padding). The result equals ``fn(stack)``; on a mesh it is computed
  with the stack axis sharded over all mesh axes inside ``jax.shard_map``.
  Call it in an Auto-axis context (see :func:`auto_region`).
  """
  if mesh is None:
    return fn(stack)
  if is_explicit(mesh):  # inside auto_region the context holds the Auto version
    context = jax.sharding.get_abstract_mesh()
    mesh = context if _usable(context) and not is_explicit(context) else mesh
  devices = mesh.size
  batch = stack.shape[0]
  axes = tuple(mesh.axis_names)
  # With several mesh axes in use, a matrix sharded on both of its dimensions
  # (fsdp × tensor) cannot move onto the stack axis in one all-to-all: SPMD falls
  # back to a full copy on every device. Going through "all axes on one matrix
  # dimension" makes each move one all-to-all. (With one axis, direct is best.)
  via = None
  if sum(size > 1 for size in mesh.shape.values()) > 1:
    for dim in (1, 2):
      if stack.shape[dim] % devices == 0:
        via = NamedSharding(mesh, P(*(axes if d == dim else None for d in range(stack.ndim))))
        stack = jax.lax.with_sharding_constraint(stack, via)
        break
  padded = math.ceil(batch / devices) * devices
  if padded != batch:
    stack = jnp.pad(stack, ((0, padded - batch),) + ((0, 0),) * (stack.ndim - 1))
  spec = P(axes, *([None] * (stack.ndim - 1)))
  stack = jax.lax.with_sharding_constraint(stack, NamedSharding(mesh, spec))
  out = jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)(stack)
  out = out[:batch] if padded != batch else out
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
