"""Param labelling for optimizers: Muon dimension numbers and QK-clip specs.

Both functions take a param tree (a pure nested dict of arrays, or an `nnx.State`) and return a
tree of the same structure, keyed on the parameter paths produced by `models.transformer`:
hidden projections `.../attn/{q,k,v,o}/kernel` and `.../mlp/{gate,up,down}/kernel` are matrices
`[fan_in, fan_out]` (or `[L, fan_in, fan_out]` when layers are scanned); everything else
(embedding, LM head, norm scales) is routed to AdamW with `None`.
"""

from typing import Any

import jax
from optax.contrib import MuonDimensionNumbers

from models.config import ModelConfig
from models.transformer import layer_name

HIDDEN_MATRICES = frozenset({"q", "k", "v", "o", "gate", "up", "down"})


def _path_names(path) -> tuple:
  return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)


def _kernel_owner(names: tuple) -> Any:
  """The module name owning a `kernel` leaf (e.g. "q"), or None for other leaves."""
  names = tuple(n for n in names if n != "value")  # `nnx.Variable` nodes add a "value" key.
  return names[-2] if len(names) >= 2 and names[-1] == "kernel" else None


def dimension_numbers(params) -> Any:
  """`MuonDimensionNumbers` for hidden matrices, `None` for embeddings, head and norms.

  `(reduction_axis=0, output_axis=1)` for 2-D kernels and `(1, 2)` for scanned `[L, in, out]`.
  """
  def label(path, x):
    if _kernel_owner(_path_names(path)) not in HIDDEN_MATRICES:
      return None
    lead = x.ndim - 2
    return MuonDimensionNumbers(reduction_axis=lead, output_axis=lead + 1)

  return jax.tree_util.tree_map_with_path(label, params)


def qk_clip_specs(params, cfg: ModelConfig) -> Any:
  """`optax_muon.QKClipSpec` for each query/key kernel, `None` elsewhere.

  `layer` matches the keys of `aux["max_logits"]` ("layers_0", ...). A q kernel
  `[d_model, n_heads * head_dim]` holds head h in columns `h*head_dim:(h+1)*head_dim`, so
  `head_axis=1`; k kernels hold `n_kv_heads` heads the same way and are shared by
  `n_heads / n_kv_heads` query heads under GQA (`shared_keys=True`).

  Raises:
    ValueError: for scanned layers (stacked `[L, ...]` kernels are not supported by QK-clip here;
      use `scan_layers=False`).
  """
  if cfg.scan_layers:
    raise ValueError("QK-clip needs per-layer kernels: set model.scan_layers=False.")
  import optax_muon  # pylint: disable=g-import-not-at-top  # Optional until the library lands.

  def spec(path, x):
    names = _path_names(path)
    owner = _kernel_owner(names)
    if owner not in ("q", "k") or x.ndim != 2:
      return None
    layer = layer_name(int(names[names.index("layers") + 1]))
    return optax_muon.QKClipSpec(
        layer=layer,
        role="query" if owner == "q" else "key",
        head_axis=1,
        num_heads=cfg.n_heads if owner == "q" else cfg.n_kv_heads,
        shared_keys=cfg.n_kv_heads < cfg.n_heads)

  return jax.tree_util.tree_map_with_path(spec, params)
