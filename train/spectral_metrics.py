"""Periodic spectral diagnostics (`--config.diagnostics.every=N`), logged to metrics.jsonl.

With `every > 0` the Muon-family optimizers are built with `diagnostics=...`
(`optax_muon.diagnostics`): probes inside the optimizer record, on steps N, 2N, ...,
the momentum spectrum of every hidden matrix (the Newton–Schulz input), the
orthogonality error and update RMS, and the weight spectral norm with its
row-magnitude and row-coherence factors. `compute` reads them out of the train
state, averages them per layer type and relative-depth bucket (`q/d0`, ..., `down/d3`)
so a row has a bounded number of keys, and flattens them as `spec/<group>/<stat>`.
For AdamW (no probes) only the weight statistics are computed, from the params.
The per-layer max attention logits are logged every step by `logit_metrics`.
"""

import functools

import jax
import ml_collections
import numpy as np
from optax_muon import diagnostics as omd
import optax_muon as om

from train.state import TrainState

PREFIX = "spec"
# Logged per group; the rest of what the probes record stays in the state.
LOGGED = tuple(f"sigma_q{int(round(q * 100)):02d}" for q in omd.QUANTILES) + (
    "sigma_1", "sigma_ratio_12", "stable_rank", "frac_below", "descent_retained",
    "svd_entropy", "weight_norm", "row_magnitude", "row_coherence", "ortho_error",
    "update_rms_ratio")


def optimizer_config(config: ml_collections.ConfigDict) -> omd.DiagnosticsConfig | None:
  """The `diagnostics=` argument of the optimizer aliases (None when off)."""
  d = config.diagnostics
  if not d.every:
    return None
  return omd.DiagnosticsConfig(
      every=int(d.every), which=d.get("which", None) or None,
      weight_norm=d.get("weight_norm", "power"), level=float(d.get("level", 0.5)),
      method=d.get("method", "svd"))


def logit_metrics(max_logits: dict) -> dict:
  """Per-layer max and head-mean of the max attention logit, and the max over every layer as
  `max_attn_logit` (cheap; every step; NaN when a logit is NaN)."""
  out = omd.attention_logit_summary(max_logits)
  if "max_logit/all" in out:
    out["max_attn_logit"] = out.pop("max_logit/all")
  return out


@functools.partial(jax.jit, static_argnames=("exact",))
def _weight_stats(params: dict, exact: bool = False) -> dict:
  out = {}
  for path, w in jax.tree_util.tree_leaves_with_path(params):
    p = om.path_to_str(path)
    if w.ndim < 2 or omd.layer_type(p) == "other":
      continue
    m = w if w.ndim == 3 else w[None]
    norm, _ = omd.weight_spectral_norm(m, iters=20, exact=exact)
    rf = omd.row_factors(m, spectral_norm=norm)
    out[p] = {"weight_norm": norm, "row_magnitude": rf["row_magnitude"],
              "row_coherence": rf["row_coherence"]}
  return out


def flatten(grouped: dict, prefix: str = PREFIX, keep=LOGGED) -> dict[str, float]:
  """`{group: {stat: v}}` -> `{"spec/<group>/<stat>": v}` for the logged stats."""
  return {f"{prefix}/{g}/{k}": float(v) for g, st in grouped.items()
          for k, v in st.items() if k in keep and np.isfinite(v)}


def compute(state: TrainState, mesh: jax.sharding.Mesh, buckets: int = 4) -> dict[str, float]:
  """Extra metrics for the current state, merged into that step's metrics row."""
  del mesh
  stats = jax.device_get(omd.read(state.opt_state))
  step = stats.pop("__step__", None)
  if not stats:
    stats = jax.device_get(_weight_stats(state.params))
  out = flatten(omd.group_stats(stats, buckets=buckets))
  if step is not None:
    out[f"{PREFIX}/recorded_step"] = float(step["step"])
  return out
