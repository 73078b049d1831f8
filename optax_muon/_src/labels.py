"""Which leaves are Muon matrices: the default labelling rule of the aliases.

A leaf is a hidden matrix (orthogonalized over its last two axes, leading axes
a batch, e.g. scanned layers ``[L, fan_in, fan_out]``) unless

* its rank is < 2 or it has no elements (norm gains, biases, scalars), or
* a component of its path names an embedding, the LM head/unembedding or a
  norm: ``embed*``, ``*embedding*``, ``wte``, ``wpe``, ``lm_head``, ``head``,
  ``unembed*``, ``output``, ``readout``, ``logits``, ``*norm*``, ``ln*``,
  ``bias``, ``scale``.

Those go to AdamW (Moonlight's recipe). Override with ``dimension_numbers=``: a
callable, a tree, or a ``{regex: MuonDimensionNumbers | None}`` mapping whose
unmatched leaves fall back to this rule.
"""

from __future__ import annotations

import math
import re
from typing import Any

from optax_muon._src import dimension_numbers as dn

__all__ = ["default_matrix_rule", "EXCLUDED_PATH_PATTERN"]

EXCLUDED_PATH_PATTERN = re.compile(
    r"^(embed.*|.*embedding.*|wte|wpe|lm_head|head|unembed.*|output|readout|logits?"
    r"|.*norm.*|ln(_.*|f|\d*)|bias|scale)$",
    re.IGNORECASE,
)


def default_matrix_rule(path: str, leaf: Any) -> dn.MuonDimensionNumbers | None:
  """``MuonDimensionNumbers`` over the last two axes, or ``None`` for AdamW.

  Examples:
    >>> import jax.numpy as jnp
    >>> default_matrix_rule("layers/0/mlp/up/kernel", jnp.zeros((4, 8)))
    MuonDimensionNumbers(reduction_axis=0, output_axis=1)
    >>> default_matrix_rule("embed/embedding", jnp.zeros((256, 8))) is None
    True
  """
  shape = tuple(getattr(leaf, "shape", ()))
  if len(shape) < 2 or math.prod(shape) == 0:
    return None
  if any(EXCLUDED_PATH_PATTERN.match(part) for part in path.split("/")):
    return None
  return dn.MuonDimensionNumbers(len(shape) - 2, len(shape) - 1)
