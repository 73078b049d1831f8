"""The trainer's map from model parameter paths to optimizer choices (MaxText's muon_utils idea).

The model (`models/`) knows nothing of optimizers. Which leaves are Muon matrices is the
library's one rule, `optax_muon.default_matrix_rule` (itself built on the one path
classifier, `optax_muon.path_kind`): every rank >= 2 leaf but embeddings, the LM head, norm
gains and biases, over its last two axes (`[fan_in, fan_out]`, `[L, fan_in, fan_out]` with
scanned layers). QK-clip specs mark the query and key kernels by the same classifier.
"""

from typing import Any

import jax
import optax_muon as om

from models.config import ModelConfig
from models.transformer import layer_name


def _kind(path) -> str:
  return om.path_kind(om.path_to_str(path))


def dimension_numbers(params) -> Any:
  """`MuonDimensionNumbers` for hidden matrices, `None` for embeddings, head and norms.

  The library's default rule on each leaf: `(reduction_axis=0, output_axis=1)` for 2-D
  kernels and `(1, 2)` for scanned `[L, in, out]`. Passing this function, or leaving
  `dimension_numbers` unset, gives an alias the same matrices.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, x: om.default_matrix_rule(om.path_to_str(path), x), params)


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
