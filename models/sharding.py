"""Logical axis names -> mesh axes: the one rules table, and shardings for param trees."""

from collections.abc import Sequence

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis name -> mesh axis (or axes). Names not listed are replicated. Params use "embed"
# (sharded over fsdp: FSDP); activations use "act_embed" (whole on every device: the batch is
# what "data" and "fsdp" split), as MaxText's activation rules do.
LOGICAL_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "length": None,
    "act_embed": None,
    "embed": "fsdp",
    "vocab": "tensor",
    "heads": "tensor",
    "kv": "tensor",
    "mlp": "tensor",
    "layers": None,
    "head_dim": None,
}


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh) -> P:
  """PartitionSpec for an array with logical axis `names`; a dim that a mesh axis does not
  divide (or whose mesh axis is already used) stays replicated."""
  used, spec = set(), []
  for name, dim in zip(names, shape):
    axes = LOGICAL_RULES.get(name) if name else None
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
    size = 1
    for a in axes:
      size *= mesh.shape[a]
    if not axes or dim % size:
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else axes)
  return P(*spec)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """`x` constrained to the layout of its logical axis `names` on the mesh in context.

  Without a mesh in context (`jax.set_mesh`, `jax.sharding.use_abstract_mesh`), or one without
  `MESH_AXES`, `x` is returned unchanged. Inside `nnx.scan` and `jax.checkpoint` the partitioner
  loses an activation's batch sharding unless it is pinned like this (each device would compute
  the whole global batch).

  Examples:
    >>> import jax.numpy as jnp
    >>> constrain(jnp.ones((4, 8)), ("batch", "act_embed")).shape  # no mesh: unchanged
    (4, 8)
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or any(a not in mesh.shape for a in MESH_AXES):
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(names, x.shape, mesh))


def logical_names(abstract_state: nnx.State) -> dict:
  """Pure-dict tree of each variable's logical axis names (a tuple, `None` = unannotated)."""
  specs = nnx.to_pure_dict(nnx.get_partition_spec(abstract_state))
  shapes = nnx.to_pure_dict(abstract_state)
  return jax.tree.map(lambda p, x: tuple(p) if p else (None,) * x.ndim, specs, shapes,
                      is_leaf=lambda x: isinstance(x, P))


def param_shardings(abstract_params: dict, names: dict, mesh: Mesh) -> dict:
  """`NamedSharding`s for a pure-dict param tree, given its logical names tree."""
  return jax.tree.map(
      lambda x, n: NamedSharding(mesh, logical_to_spec(n, x.shape, mesh)),
      abstract_params, names, is_leaf=lambda x: isinstance(x, tuple))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a `[B, L]` token batch: batch over ("data", "fsdp"), length replicated."""
  return NamedSharding(mesh, P(LOGICAL_RULES["batch"], None))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
