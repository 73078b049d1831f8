"""The matrix-stack machinery under every alias: plans, groups, stacks (a public submodule).

A parameter tree is read once into a :class:`MatrixPlan`: which leaves are
matrices (their :class:`MatrixLayout`, from the dimension numbers) and which
same-shaped matrices form a :class:`Group`. The matrices then travel as
:class:`MatrixStacks`, one ``[B, fan_in, fan_out]`` array per group, through
every transform of a Muon chain. Most users need only
:func:`optax_muon.matrix_partition` and :func:`optax_muon.per_matrix` (re-exported
at the top level); this module is for writing transforms that see whole stacks
(:func:`stacked_transform`), reading a plan (:func:`plan_matrices`) or the
placement of Newton–Schulz on a mesh (:func:`balance`, :func:`slice_local_axes`).

Examples:
  >>> import jax.numpy as jnp
  >>> from optax_muon import matrices
  >>> plan = matrices.plan_matrices({"a": jnp.zeros((4, 8)), "b": jnp.zeros((4, 8)),
  ...                                "bias": jnp.zeros(8)})
  >>> [(g.name, g.rows) for g in plan.groups]
  [('4x8', 2)]
"""

from optax_muon._src.dimension_numbers import DimensionNumbersSpec
from optax_muon._src.dimension_numbers import MatrixLayout
from optax_muon._src.dimension_numbers import matrix_layout
from optax_muon._src.distributed import Placement
from optax_muon._src.distributed import balance
from optax_muon._src.distributed import slice_local_axes
from optax_muon._src.matrices import Group
from optax_muon._src.matrices import MatrixPartitionState
from optax_muon._src.matrices import MatrixPlan
from optax_muon._src.matrices import MatrixStacks
from optax_muon._src.matrices import Member
from optax_muon._src.matrices import is_stacks
from optax_muon._src.matrices import matrix_partition
from optax_muon._src.matrices import per_matrix
from optax_muon._src.matrices import plan_matrices
from optax_muon._src.matrices import row_mask
from optax_muon._src.matrices import row_runs
from optax_muon._src.matrices import stacked_transform

__all__ = [
    "DimensionNumbersSpec",
    "Group",
    "MatrixLayout",
    "MatrixPartitionState",
    "MatrixPlan",
    "MatrixStacks",
    "Member",
    "Placement",
    "balance",
    "is_stacks",
    "matrix_layout",
    "matrix_partition",
    "per_matrix",
    "plan_matrices",
    "row_mask",
    "row_runs",
    "slice_local_axes",
    "stacked_transform",
]
