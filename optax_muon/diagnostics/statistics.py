"""Per-matrix spectral statistics (docs/algorithms.md, "Spectral diagnostics"), jit-friendly.

Every function takes ``[B, m, n]`` stacks (``B`` independent matrices, Flax
layout ``[fan_in, fan_out]``: an output neuron is a *column*) and returns plain
dicts of ``[B]`` float32 arrays, so the results are pytrees that run under
``jax.jit`` (and on sharded arrays: only ``jnp`` ops, ``jnp.linalg.svd`` /
``eigvalsh`` included) and log as numbers.

* :func:`momentum_spectrum`: the spectrum of the Newton–Schulz input after
  Frobenius normalization: descending-rank quantiles ``σ_(⌈q·r⌉)``, ``σ₁``,
  ``σ₁/σ₂``, spike share ``σ₁²``, stable rank ``1/σ₁²``, the fraction of ``σ``
  below the schedule's failure threshold, the descent retained
  ``Σσf(σ)/Σσ`` (``f`` the schedule's scalar map) and the SVD entropy.
* :func:`svd_entropy`: ``p = σ²/Σσ², H = −Σp log p / log r`` (Moonlight).
* :func:`orthogonality_error`: ``‖OᵀO − I‖`` on the short side.
* :func:`weight_spectral_norm`: power iteration (warm start) or exact SVD.
* :func:`row_factors`: ``‖W‖₂ = max(r)·sqrt(λ_max(PCP))`` (Muown's identity).
* :func:`attention_logit_summary`: per-layer max pre-softmax logits (§7).
* :func:`matrix_group`: ``(layer type, depth bucket)`` from a parameter path.
"""

import math
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import nonfinite
from optax_muon._src import path_kinds
from optax_muon._src import power_iteration as pi

__all__ = [
    "QUANTILES",
    "singular_values",
    "svd_entropy",
    "spectrum_stats",
    "momentum_spectrum",
    "orthogonality_error",
    "weight_spectral_norm",
    "row_factors",
    "attention_logit_summary",
    "matrix_group",
    "quantile_index",
]

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
_TINY = 1e-30


def quantile_index(q: float, r: int) -> int:
  """0-based index of ``σ_(⌈q·r⌉)`` in a descending list of ``r`` values."""
  return min(max(math.ceil(q * r - 1e-9), 1), r) - 1


def _stack(x: jax.Array) -> jax.Array:
  x = jnp.asarray(x)
  return x[None] if x.ndim == 2 else x


def singular_values(x: jax.Array, method: str = "svd") -> jax.Array:
  """Descending singular values (float32) of a matrix or ``[B, m, n]`` stack.

  ``method="svd"``: ``jnp.linalg.svd`` (accurate). ``"gram"``: square roots of
  the eigenvalues of the short-side Gram (``eigvalsh``; on CPU ~50× faster than
  XLA's SVD), accurate to about ``3e-4·σ₁`` in float32, so values far below
  ``σ₁`` are resolved poorly.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.diag(jnp.array([3.0, 2.0, 1.0]))
    >>> singular_values(x).round(4).tolist(), singular_values(x, "gram").round(4).tolist()
    ([[3.0, 2.0, 1.0]], [[3.0, 2.0, 1.0]])
  """
  x = _stack(x).astype(jnp.float32)
  if method == "svd":
    return jnp.linalg.svd(x, compute_uv=False)
  if method == "gram":
    lam = jnp.linalg.eigvalsh(_short_gram(x))
    return jnp.sqrt(jnp.maximum(lam, 0.0))[..., ::-1]
  raise ValueError(f"method must be 'svd' or 'gram', got {method!r}.")


def svd_entropy(sigma: jax.Array) -> jax.Array:
  """Normalized SVD entropy ``−Σp log p / log r`` with ``p = σ²/Σσ²``; in [0, 1].

  Examples:
    >>> import jax.numpy as jnp
    >>> float(svd_entropy(jnp.ones(4)))
    1.0
    >>> float(svd_entropy(jnp.array([2.0, 0.0, 0.0])))
    0.0
  """
  s2 = jnp.square(sigma.astype(jnp.float32))
  p = s2 / jnp.maximum(jnp.sum(s2, axis=-1, keepdims=True), _TINY)
  h = jnp.maximum(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0),
                          axis=-1), 0.0)
  r = sigma.shape[-1]
  return h / math.log(r) if r > 1 else jnp.zeros_like(h)


def _scalar_map(s: jax.Array, table: np.ndarray) -> jax.Array:
  for a, b, c in table:
    s2 = s * s
    s = s * (float(a) + s2 * (float(b) + float(c) * s2))
  return s


def spectrum_stats(sigma: jax.Array, *, schedule: coeffs_lib.Schedule = "jordan",
                   steps: int = 5, level: float = 0.5,
                   quantiles: Sequence[float] = QUANTILES) -> dict[str, jax.Array]:
  """Statistics of descending, Frobenius-normalized singular values ``[..., r]``.

  ``σ`` is read as ``σ_i/‖X‖_F`` (so ``Σσ² = 1``); the schedule's map and
  failure threshold apply to ``σ/ν`` (``ν`` the schedule's input scale, e.g.
  1.01 for Polar Express), as inside Newton–Schulz.

  Examples:
    >>> import jax.numpy as jnp
    >>> st = spectrum_stats(jnp.array([0.8, 0.6, 0.0]))
    >>> round(float(st["sigma_1"]), 3), round(float(st["stable_rank"]), 4)
    (0.8, 1.5625)
    >>> round(float(st["frac_below"]), 3)  # the zero direction is below threshold
    0.333
  """
  sigma = sigma.astype(jnp.float32)
  r = sigma.shape[-1]
  table = coeffs_lib.ns_coefficients(schedule, steps)
  nu = coeffs_lib.schedule_input_scale(schedule)
  thr = coeffs_lib.ns_failure_threshold(schedule, steps, level)
  out = {}
  for q in quantiles:
    out[f"sigma_q{int(round(q * 100)):02d}"] = sigma[..., quantile_index(q, r)]
  s1 = sigma[..., 0]
  s2 = sigma[..., 1] if r > 1 else jnp.zeros_like(s1)
  out["sigma_1"] = s1
  out["sigma_ratio_12"] = s1 / jnp.maximum(s2, _TINY)
  out["spike_share"] = jnp.square(s1)
  out["stable_rank"] = 1.0 / jnp.maximum(jnp.square(s1), _TINY)
  out["frac_below"] = jnp.mean((sigma / nu < thr).astype(jnp.float32), axis=-1)
  f = _scalar_map(sigma / nu, table)
  out["descent_retained"] = jnp.sum(sigma * f, axis=-1) / jnp.maximum(
      jnp.sum(sigma, axis=-1), _TINY)
  out["svd_entropy"] = svd_entropy(sigma)
  return out


def momentum_spectrum(x: jax.Array, *, schedule: coeffs_lib.Schedule = "jordan",
                      steps: int = 5, level: float = 0.5,
                      quantiles: Sequence[float] = QUANTILES,
                      method: str = "svd") -> dict[str, jax.Array]:
  """:func:`spectrum_stats` of the Newton–Schulz input ``x`` (``[m, n]`` or ``[B, m, n]``).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> st = momentum_spectrum(jnp.eye(4))
    >>> [round(float(st[k][0]), 3) for k in ("sigma_q50", "svd_entropy", "frac_below")]
    [0.5, 1.0, 0.0]
  """
  x = _stack(x).astype(jnp.float32)
  fro = jnp.sqrt(jnp.sum(jnp.square(x), axis=(1, 2)))
  sigma = singular_values(x, method) / jnp.maximum(fro, _TINY)[:, None]
  return spectrum_stats(sigma, schedule=schedule, steps=steps, level=level,
                        quantiles=quantiles)


def _short_gram(x: jax.Array) -> jax.Array:
  m, n = x.shape[-2:]
  return (jnp.einsum("bij,bkj->bik", x, x) if m <= n
          else jnp.einsum("bji,bjk->bik", x, x))


def orthogonality_error(o: jax.Array) -> dict[str, jax.Array]:
  """``‖OᵀO − I‖`` on the short side: spectral (``max|σ²−1|``) and RMS (``‖·‖_F/√r``).

  Also returns the spectrum's extremes ``sigma_max``/``sigma_min`` of ``O``.

  Examples:
    >>> import jax.numpy as jnp
    >>> e = orthogonality_error(jnp.eye(3)[:, :2] * 1.1)
    >>> round(float(e["ortho_error"][0]), 3)
    0.21
  """
  o = _stack(o).astype(jnp.float32)
  g = _short_gram(o)
  r = g.shape[-1]
  lam = jnp.linalg.eigvalsh(g)
  eye = jnp.eye(r, dtype=g.dtype)
  return {
      "ortho_error": nonfinite.nan_propagating_max(jnp.abs(lam - 1.0), axis=-1),
      "ortho_error_rms": jnp.sqrt(jnp.sum(jnp.square(g - eye), axis=(1, 2)) / r),
      "sigma_max": jnp.sqrt(jnp.maximum(lam[..., -1], 0.0)),
      "sigma_min": jnp.sqrt(jnp.maximum(lam[..., 0], 0.0)),
  }


def weight_spectral_norm(w: jax.Array, v: jax.Array | None = None, *, iters: int = 4,
                         exact: bool = False) -> tuple[jax.Array, jax.Array]:
  """``‖W‖₂`` per matrix and the refined right vector (``[B, fan_out]``).

  Power iteration (a lower bound converging geometrically; warm-start it with
  the returned vector) or, with ``exact=True``, the top singular value by SVD
  (``v`` is then returned unchanged).

  Examples:
    >>> import jax.numpy as jnp
    >>> s, v = weight_spectral_norm(jnp.diag(jnp.array([3.0, 1.0])), iters=8)
    >>> round(float(s[0]), 4)
    3.0
  """
  w = _stack(w).astype(jnp.float32)
  if exact:
    return singular_values(w)[:, 0], (pi.start_vectors(w.shape[0], w.shape[2]) if v is None
                                      else v)
  sigma, _, v = pi.top_singular_triplet(w, v, iters)
  return sigma, v


def row_factors(w: jax.Array, *, spectral_norm: jax.Array | None = None
                ) -> dict[str, jax.Array]:
  """Row-magnitude and row-coherence factors of ``W`` (docs/algorithms.md, "Muown").

  With ``r`` the per-output-neuron norms (Flax: column norms, over axis 0),
  ``D = W/diag(r)``, ``C = DᵀD`` and ``P = diag(r/max r)``:
  ``‖W‖₂ = max(r)·sqrt(λ_max(PCP))``. ``PCP = (W/max r)ᵀ(W/max r)``, so
  ``λ_max`` is taken exactly (``eigvalsh`` of the short-side Gram) unless a
  spectral norm is given (then coherence = ``‖W‖₂/max r``).

  Examples:
    >>> import jax.numpy as jnp
    >>> f = row_factors(jnp.array([[3.0, 0.0], [0.0, 1.0]]))
    >>> float(f["row_magnitude"][0]), float(f["row_coherence"][0])
    (3.0, 1.0)
  """
  w = _stack(w).astype(jnp.float32)
  r = jnp.sqrt(jnp.sum(jnp.square(w), axis=1))  # [B, fan_out]
  rmax = nonfinite.nan_propagating_max(r, axis=-1)
  safe = jnp.maximum(rmax, _TINY)
  if spectral_norm is None:
    wn = w / safe[:, None, None]
    lam = jnp.linalg.eigvalsh(_short_gram(wn))[..., -1]
    coherence = jnp.sqrt(jnp.maximum(lam, 0.0))
  else:
    coherence = spectral_norm / safe
  return {"row_magnitude": rmax, "row_coherence": coherence,
          "row_norm_min": nonfinite.nan_propagating_min(r, axis=-1)}


def attention_logit_summary(max_logits: Mapping[str, jax.Array],
                            threshold: float | None = None) -> dict[str, jax.Array]:
  """Per-layer ``max`` and head-mean of the max pre-softmax logits (``{layer: [H]}``).

  With ``threshold`` (QK-clip's τ), also the fraction of heads above it.

  Examples:
    >>> import jax.numpy as jnp
    >>> s = attention_logit_summary({"layers_0": jnp.array([1.0, 3.0])}, threshold=2.0)
    >>> {k: float(v) for k, v in sorted(s.items())}
    {'max_logit/all': 3.0, 'max_logit/layers_0': 3.0, 'max_logit_frac_above/layers_0': 0.5, 'max_logit_mean/layers_0': 2.0}
  """
  out = {}
  for name, h in max_logits.items():
    h = jnp.asarray(h, jnp.float32)
    out[f"max_logit/{name}"] = nonfinite.nan_propagating_max(h)
    out[f"max_logit_mean/{name}"] = jnp.mean(h)
    if threshold is not None:
      out[f"max_logit_frac_above/{name}"] = jnp.mean((h > threshold).astype(jnp.float32))
  if max_logits:
    out["max_logit/all"] = nonfinite.nan_propagating_max(jnp.stack(
        [out[f"max_logit/{name}"] for name in max_logits]))
  return out


_LAYER_RE = re.compile(r"(?:^|/)(?:layers?|blocks?|h)[/_](\d+)(?:/|$)")


def layer_type(path: str) -> str:
  """``q``/``k``/``v``/``o``/``qkv``/``gate``/``up``/``down`` from a parameter path, else ``other``.

  The project's one path classifier (:func:`optax_muon.path_kind`) decides.

  Examples:
    >>> layer_type("layers/3/attn/q/kernel"), layer_type("layers/mlp/down/kernel")
    ('q', 'down')
  """
  kind = path_kinds.path_kind(path)
  return kind if kind in path_kinds.HIDDEN_KINDS else "other"


def layer_index(path: str) -> int | None:
  """The layer number in ``layers/3/...`` paths, ``None`` for scanned/unnumbered ones."""
  m = _LAYER_RE.search(path)
  return int(m.group(1)) if m else None


def depth_bucket(layer: int, n_layers: int, buckets: int = 4) -> int:
  """``floor(layer·b/L)`` with ``b = min(buckets, L)``: 0 = first layers, b−1 = last.

  Examples:
    >>> [depth_bucket(i, 8, 4) for i in range(8)]
    [0, 0, 1, 1, 2, 2, 3, 3]
  """
  b = max(1, min(buckets, n_layers))
  return min(b - 1, layer * b // max(n_layers, 1))


def matrix_group(path: str, batch_index: int = 0, *, n_layers: int | None = None,
                 batch: int = 1, buckets: int = 4) -> str:
  """``"<type>/d<bucket>"``: layer type and relative-depth bucket of one matrix.

  The layer is the number in the path (``layers/3/attn/q/kernel``) or, for a
  scanned ``[L, in, out]`` leaf (``layers/attn/q/kernel``), its batch index.

  Examples:
    >>> matrix_group("layers/3/attn/q/kernel", n_layers=4)
    'q/d3'
    >>> matrix_group("layers/mlp/up/kernel", 1, batch=8)
    'up/d0'
  """
  typ = layer_type(path)
  idx = layer_index(path)
  if idx is None:
    idx, n_layers = (batch_index, batch) if batch > 1 else (0, 1)
  n_layers = n_layers if n_layers is not None else idx + 1
  return f"{typ}/d{depth_bucket(idx, n_layers, buckets)}"


def group_stats(stats: Mapping[str, Mapping[str, Any]], *, buckets: int = 4,
                reduce: str = "mean") -> dict[str, dict[str, float]]:
  """Averages (or maxes) ``path -> {stat: [B] array}`` over ``type/depth`` groups.

  Examples:
    >>> import numpy as np
    >>> st = {f"layers/{i}/attn/q/kernel": {"x": np.array([float(i)])} for i in range(4)}
    >>> group_stats(st, buckets=2)
    {'q/d0': {'x': 0.5}, 'q/d1': {'x': 2.5}}
  """
  n_layers = 1 + max([layer_index(p) or 0 for p in stats] or [0])
  acc: dict[str, dict[str, list[float]]] = {}
  for path, st in stats.items():
    for name, arr in st.items():
      arr = np.asarray(arr, dtype=np.float64).reshape(-1)
      for b, val in enumerate(arr):
        g = matrix_group(path, b, n_layers=n_layers, batch=arr.size, buckets=buckets)
        acc.setdefault(g, {}).setdefault(name, []).append(float(val))
  fn = np.max if reduce == "max" else np.mean
  return {g: {k: float(fn(v)) for k, v in d.items()} for g, d in sorted(acc.items())}
