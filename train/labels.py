"""The trainer's map from model parameter paths to optimizer choices (MaxText's muon_utils idea).

The model (`models/`) knows nothing of optimizers; this module reads its parameter paths with
the project's one path classifier (`optax_muon.path_kind`): hidden projections
`.../attn/{q,k,v,o}/kernel` and `.../mlp/{gate,up,down}/kernel` are Muon matrices
`[fan_in, fan_out]` (`[L, fan_in, fan_out]` with scanned layers); everything else (embedding,
LM head, norm scales) goes to AdamW (`None`). QK-clip specs mark the query and key kernels.
"""

from typing import Any

import jax
import optax_muon as om
from optax.contrib import MuonDimensionNumbers

from models.config import ModelConfig
from models.transformer import layer_name

HIDDEN_KINDS = frozenset({"q", "k", "v", "o", "gate", "up", "down"})


def _kind(path) -> str:
  return om.path_kind(om.path_to_str(path))


def dimension_numbers(params) -> Any:
  """`MuonDimensionNumbers` for hidden matrices, `None` for embeddings, head and norms.

  `(reduction_axis=0, output_axis=1)` for 2-D kernels and `(1, 2)` for scanned `[L, in, out]`.
  """
  def label(path, x):
    if _kind(path) not in HIDDEN_KINDS:
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

  def spec(path, x):
    kind = _kind(path)
    if kind not in ("q", "k") or x.ndim != 2:
      return None
    names = om.path_to_str(path).split("/")
    layer = layer_name(int(names[names.index("layers") + 1]))
    return om.QKClipSpec(
        layer=layer,
        role="query" if kind == "q" else "key",
        head_axis=1,
        num_heads=cfg.n_heads if kind == "q" else cfg.n_kv_heads,
        shared_keys=cfg.n_kv_heads < cfg.n_heads)

  return jax.tree_util.tree_map_with_path(spec, params)
