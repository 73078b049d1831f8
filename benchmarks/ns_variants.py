"""Newton–Schulz variants side by side: which schedule × normalization × steps to use.

    python benchmarks/capture_momentum.py       # once: the real momentum samples (~6 min)
    python benchmarks/ns_variants.py            # full run (~20 min on 2 heavily shared cores)
    python benchmarks/ns_variants.py --quick    # steps 4-5, small shapes (~1.5 min)
    python benchmarks/ns_variants.py --render-only   # rewrite md/png from the JSON

Every variant ``(schedule, normalization, steps)`` with schedule in ``jordan``,
``polar_express``, ``nanogpt5`` (= optax's ``dion`` table, here with ν = 1.02),
normalization in ``optax_muon.NORMALIZATIONS`` and steps 3…8 runs through
``optax_muon.orthogonalize`` on the same inputs. Reported per variant:

* **Failure threshold** (docs/algorithms.md, "Newton–Schulz"): the smallest input singular value
  whose output gain reaches ``level`` (levels 0.1, 0.5, 0.9), in units of
  ``σ / ‖X‖_F`` (plain Frobenius, no ν) for every normalization. The gain of
  direction ``i`` is ``g_i = u_iᵀ O v_i`` (exact numpy SVD of the input ``X``;
  for the scalar normalizations ``g_i = f(σ_i / c(X))`` exactly, for AOL it is
  the component of ``O`` on the input's own singular pair). Measured as the
  first upward crossing of ``g`` vs ``σ/‖X‖_F`` (log-interpolated) on a
  synthetic spectrum ``σ = geomspace(1, 1e-5, r)``; the analytic value is
  ``ns_failure_threshold(level) · c(X)/‖X‖_F`` with the normalizer
  ``c = ν‖X‖_F`` (frobenius), ``‖X‖_{S4}`` (schatten4) or
  ``min(1.05σ₁, (Σσ⁸)^{1/8})`` (spectral); AOL has none.
* **Top-k polar error**: ``‖U_kᵀ O V_k − I_k‖₂`` over the top-k input singular
  pairs, i.e. the worst deviation from the exact polar factor ``UVᵀ`` inside the
  subspace that carries the update. ``k`` = the directions holding 90 % of
  ``Σσ²`` (``e90``) or the top 10 % of the rank (``top10``). Also the literal
  orthogonality error ``‖(OV_k)ᵀ(OV_k) − I_k‖₂`` and the descent retained
  ``Σσ_i g_i / Σσ_i``.
* **Inputs**: synthetic ``[r, 4r]`` matrices (r = 128) with random singular vectors and
  spectra log-uniform on [1e-5, 1] or power laws ``i^-α`` (α = 0.5, 1, 2); and
  real Muon momentum matrices from ``benchmarks/data/momentum_samples.npz``
  (written by ``benchmarks/capture_momentum.py``), all zero-padded into one
  batch and orthogonalized eagerly (no recompilation per coefficient table).
* **Cost**: jitted wall time (median of interleaved repeats,
  ``block_until_ready``) in float32 and with ``compute_dtype=bfloat16``, and
  analytic flops ``steps·(4m²n + 2m³)`` (m the short side) plus the
  normalization's extra. The coefficients are compile-time constants, so the
  cost depends on ``(normalization, steps)`` only: the kernels are timed with
  Jordan's coefficients (and, as a check, every schedule at 5 steps).

Writes ``benchmarks/results/ns_variants.{json,md}`` and ``ns_variants_pareto.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import _common  # noqa: E402
import optax_muon  # noqa: E402

SCHEDULES = ("jordan", "polar_express", "nanogpt5")
NORMALIZATIONS = tuple(optax_muon.NORMALIZATIONS)
STEPS = (3, 4, 5, 6, 7, 8)
LEVELS = (0.1, 0.5, 0.9)
REFERENCE = ("jordan", "frobenius", 5)
SYNTHETIC_SPECTRA = ("loguniform", "power_0.5", "power_1", "power_2")
PRIMARY_SPECTRUM = "loguniform"
FULL = {"synthetic_shape": (128, 512), "cost_shapes": ((256, 1024), (512, 512)), "repeats": 9,
        "min_sample_s": 0.2, "steps": STEPS, "real_max_side": None, "real_limit": None}
QUICK = {"synthetic_shape": (48, 192), "cost_shapes": ((128, 512),), "repeats": 3,
         "min_sample_s": 0.02, "steps": (4, 5), "real_max_side": 192, "real_limit": 4}
SPECTRAL_SAFETY = 1.05


def all_variants(steps=STEPS, schedules=SCHEDULES, normalizations=NORMALIZATIONS):
  """Every ``(schedule, normalization, steps)`` triple."""
  return [(s, n, k) for s in schedules for n in normalizations for k in steps]


def _key(variant) -> str:
  return f"{variant[0]}/{variant[1]}/{variant[2]}"


# ---------------------------------------------------------------------- inputs


def synthetic_spectrum(name: str, r: int) -> np.ndarray:
  """Descending singular values of a named synthetic spectrum (max 1)."""
  if name == "loguniform":
    return np.geomspace(1.0, 1e-5, r)
  if name.startswith("power_"):
    return np.arange(1, r + 1, dtype=np.float64) ** -float(name.split("_")[1])
  raise ValueError(f"unknown spectrum {name!r}; valid: {SYNTHETIC_SPECTRA}")


def _orthonormal(rng, n: int, k: int) -> np.ndarray:
  q, r = np.linalg.qr(rng.standard_normal((n, k)))
  return q * np.sign(np.diag(r))


def synthetic_inputs(shape, spectra=SYNTHETIC_SPECTRA, seed: int = 0) -> list[dict]:
  """``[{name, x, u, s, v}]`` with ``x = u diag(s) vᵀ`` (m <= n) and known SVD."""
  m, n = shape
  rng = np.random.default_rng(seed)
  out = []
  for name in spectra:
    s = synthetic_spectrum(name, m)
    u, v = _orthonormal(rng, m, m), _orthonormal(rng, n, m)
    out.append({"name": name, "x": (u * s) @ v.T, "u": u, "s": s, "v": v})
  return out


def with_svd(name: str, x: np.ndarray, meta: dict | None = None) -> dict:
  """An input record for any matrix; a tall one is transposed (NS(Xᵀ) = NS(X)ᵀ)."""
  x = np.asarray(x, np.float64)
  if x.shape[0] > x.shape[1]:
    x = x.T
  u, s, vt = np.linalg.svd(x, full_matrices=False)
  return {"name": name, "x": x, "u": u, "s": s, "v": vt.T, "meta": meta or {}}


def real_inputs(path=None) -> list[dict]:
  """The captured momentum matrices (empty if the sample file is missing)."""
  import capture_momentum  # pylint: disable=import-outside-toplevel

  path = path or capture_momentum.OUT
  if not os.path.exists(path):
    print(f"[ns_variants] {path} missing: run benchmarks/capture_momentum.py; "
          "skipping real matrices.")
    return []
  mats, meta = capture_momentum.load(path)
  return [with_svd(k, x, meta["matrices"][k]) for k, x in mats.items()]


# -------------------------------------------------------------------- accuracy


def crossing(s_norm: np.ndarray, gains: np.ndarray, level: float):
  """First upward crossing of ``gains`` over ``level`` as σ grows.

  Returns ``(value, flag)``: flag ``"ok"`` (log-interpolated crossing),
  ``"below_range"`` (already reached at the smallest σ: value = that σ, an
  upper bound) or ``"never"`` (value = inf).
  """
  order = np.argsort(s_norm)
  s, g = s_norm[order], gains[order]
  above = g >= level
  if not above.any():
    return math.inf, "never"
  j = int(np.argmax(above))
  if j == 0:
    return float(s[0]), "below_range"
  t = (level - g[j - 1]) / (g[j] - g[j - 1])
  return float(np.exp(np.log(s[j - 1]) + t * (np.log(s[j]) - np.log(s[j - 1])))), "ok"


def normalizer(s: np.ndarray, variant) -> float | None:
  """The scalar ``c(X)`` of ``X / c``, from the exact singular values; None for AOL."""
  schedule, norm, _ = variant
  if norm == "frobenius":
    return optax_muon.NORMALIZATION_SCALE[schedule] * float(np.sqrt(np.sum(s**2)))
  if norm == "schatten4":
    return float(np.sum(s**4) ** 0.25)
  if norm == "spectral":
    return min(SPECTRAL_SAFETY * float(s.max()), float(np.sum(s**8) ** 0.125))
  return None


def analytic_threshold(s: np.ndarray, variant, level: float) -> float | None:
  """``ns_failure_threshold`` mapped to ``σ/‖X‖_F`` units through the normalizer."""
  c = normalizer(s, variant)
  if c is None:
    return None
  t = optax_muon.ns_failure_threshold(variant[0], variant[2], level)
  return t * c / float(np.sqrt(np.sum(s**2)))


def matrix_metrics(rec: dict, o: np.ndarray, variant) -> dict:
  """Gains, thresholds and top-k errors of one output ``o`` for input ``rec``."""
  u, s, v = rec["u"], rec["s"], rec["v"]
  o = np.asarray(o, np.float64)
  g_mat = u.T @ o @ v
  gains = np.diag(g_mat)
  s_norm = s / np.sqrt(np.sum(s**2))
  energy = np.cumsum(s**2) / np.sum(s**2)
  ks = {"e90": int(np.searchsorted(energy, 0.9) + 1), "top10": max(1, math.ceil(0.1 * len(s)))}
  out = {"k": ks}
  for name, k in ks.items():
    eye = np.eye(k)
    out[f"polar_{name}"] = float(np.linalg.svd(g_mat[:k, :k] - eye, compute_uv=False)[0])
    w = o @ v[:, :k]
    out[f"orth_{name}"] = float(np.max(np.abs(np.linalg.eigvalsh(w.T @ w - eye))))
  out["descent_retained"] = float(np.sum(s * gains) / np.sum(s))
  out["threshold"], out["threshold_flag"], out["threshold_analytic"] = {}, {}, {}
  out["frac_below"] = {}
  for level in LEVELS:
    value, flag = crossing(s_norm, gains, level)
    lv = str(level)
    out["threshold"][lv], out["threshold_flag"][lv] = value, flag
    ana = analytic_threshold(s, variant, level)
    out["threshold_analytic"][lv] = ana
    eff = ana if ana is not None else value
    out["frac_below"][lv] = float(np.mean(s_norm < eff))
  return out


def _pad_to(x: np.ndarray, shape) -> np.ndarray:
  out = np.zeros(shape, x.dtype)
  out[:x.shape[0], :x.shape[1]] = x
  return out


def run_variant(records: list[dict], variant, compute_dtype=None) -> list[np.ndarray]:
  """Orthogonalizes each record's ``x`` in one batched call.

  Smaller matrices are zero-padded to the largest ``[m, n]``: NS of
  ``[[X, 0], [0, 0]]`` is ``[[NS(X), 0], [0, 0]]`` (the Gram, its powers and every
  norm of the normalizations only gain exact zeros; only the spectral power
  iteration's start vector and the summation order change).
  """
  schedule, norm, steps = variant
  m = max(r["x"].shape[0] for r in records)
  n = max(r["x"].shape[1] for r in records)
  stack = jnp.asarray(np.stack([_pad_to(r["x"], (m, n)) for r in records]), jnp.float32)
  # Eager on purpose: op-by-op dispatch compiles each primitive once per shape,
  # whatever the coefficients, while a jit would recompile every variant.
  o = optax_muon.orthogonalize(stack, schedule=schedule, steps=steps, normalization=norm,
                               compute_dtype=compute_dtype)
  o = np.asarray(jax.block_until_ready(o).astype(jnp.float32), np.float64)
  return [o[i, :r["x"].shape[0], :r["x"].shape[1]] for i, r in enumerate(records)]


def accuracy(records: list[dict], variants, compute_dtype=None) -> dict[str, list[dict]]:
  """``{variant key: [metrics per record]}``."""
  out = {}
  for var in variants:
    outs = run_variant(records, var, compute_dtype)
    out[_key(var)] = [matrix_metrics(r, o, var) for r, o in zip(records, outs)]
  return out


# ------------------------------------------------------------------------ cost


def ns_flops(shape, steps: int, normalization: str) -> float:
  """``steps·(4m²n + 2m³)`` plus the normalization's extra (all O(mn + m²))."""
  m, n = min(shape), max(shape)
  extra = {"frobenius": 3 * m * n, "schatten4": 3 * m * n + 2 * m * m,
           "spectral": 3 * m * n + (2 * 8 + 4) * m * m, "aol": 3 * m * n + 3 * m * m}
  return float(steps * (4 * m * m * n + 2 * m**3) + extra[normalization])


def _jitted(variant, compute_dtype):
  schedule, norm, steps = variant
  return jax.jit(lambda x: optax_muon.orthogonalize(
      x, schedule=schedule, steps=steps, normalization=norm, compute_dtype=compute_dtype))


def cost(shapes, steps=STEPS, normalizations=NORMALIZATIONS, repeats: int = 5,
         check_schedules=SCHEDULES, min_sample_s: float = 0.1, pairs=None) -> dict:
  """Median ms per ``(shape, dtype, normalization, steps)``, timed interleaved.

  Kernels use Jordan's coefficients, for every ``(normalization, steps)`` (or
  only ``pairs``); every schedule in ``check_schedules`` is also timed at 5
  frobenius steps in the same interleaved loop. Each sample repeats a kernel
  for at least ``min_sample_s``.
  """
  if pairs is None:
    pairs = [(n, k) for n in normalizations for k in steps]
  out = {}
  for shape in shapes:
    x = jnp.asarray(np.random.default_rng(1).standard_normal(shape), jnp.float32)
    for dname, dt in (("f32", None), ("bf16", jnp.bfloat16)):
      kernels = {("jordan", n, k): _jitted(("jordan", n, k), dt) for n, k in pairs}
      for s in check_schedules:
        kernels.setdefault((s, "frobenius", 5), _jitted((s, "frobenius", 5), dt))
      fns = {_key(v): (lambda f=f: f(x)) for v, f in kernels.items()}
      t0 = time.perf_counter()
      for fn in fns.values():  # compile
        _common.block(fn())
      inner, _ = _common.inner_counts(fns, min_sample_s)
      samples = _common.interleaved(fns, repeats=repeats, inner=inner, warmup=0)
      print(f"[ns_variants] timed {len(fns)} kernels at {shape} {dname} "
            f"in {time.perf_counter() - t0:.0f}s", flush=True)
      out[(shape, dname)] = {k: {"median_ms": 1e3 * statistics.median(v),
                                 "min_ms": 1e3 * min(v)} for k, v in samples.items()}
  return out


def fit_times(samples: dict) -> tuple[dict, dict]:
  """Least-squares ``t = a[normalization] + b·steps`` over one shape/dtype's kernels.

  Fitted to the *minimum* sample times (the least disturbed by other processes):
  one shared per-step cost ``b`` and a fixed cost per normalization, so a single
  kernel hit by a load spike cannot move its own relative cost. Returns
  ``({"norm/steps": fitted ms}, {"per_step_ms", "fixed_ms", "max_rel_residual"})``.
  """
  pts = [(k.split("/")[1], int(k.split("/")[2]), v["min_ms"]) for k, v in samples.items()
         if k.startswith("jordan/")]
  norms = sorted({n for n, _, _ in pts})
  a = np.zeros((len(pts), len(norms) + 1))
  for i, (n, k, _) in enumerate(pts):
    a[i, norms.index(n)], a[i, -1] = 1.0, k
  t = np.array([p[2] for p in pts])
  coef = np.linalg.lstsq(a, t, rcond=None)[0]
  fitted = a @ coef
  return ({f"{n}/{k}": float(f) for (n, k, _), f in zip(pts, fitted)},
          {"per_step_ms": float(coef[-1]), "fixed_ms": dict(zip(norms, map(float, coef[:-1]))),
           "max_rel_residual": float(np.max(np.abs(fitted - t) / t))})


# ----------------------------------------------------------------- aggregation


def _median(vals):
  vals = [v for v in vals if v is not None]
  return float(statistics.median(vals)) if vals else None


def _shape_name(shape) -> str:
  return f"{shape[0]}x{shape[1]}"


def build_rows(variants, acc, acc_bf16, synth_records, real_records, timing,
               cost_shapes) -> list[dict]:
  """One JSON row per variant (schema in the module's markdown output).

  ``acc``/``acc_bf16``: :func:`accuracy` over ``synth_records + real_records``.
  """
  ns = len(synth_records)
  synth = {k: v[:ns] for k, v in acc.items()}
  real = {k: v[ns:] for k, v in acc.items()}
  synth_bf16 = {k: v[:ns] for k, v in acc_bf16.items()} if acc_bf16 else None
  real_bf16 = {k: v[ns:] for k, v in acc_bf16.items()} if acc_bf16 else None
  ref_key = _key(REFERENCE)
  primary = [i for i, r in enumerate(synth_records) if r["name"] == PRIMARY_SPECTRUM][0]
  ref_times = {sh: timing[(sh, "f32")][ref_key]["median_ms"] for sh in cost_shapes}
  fits = {(sh, d): fit_times(timing[(sh, d)])[0] for sh in cost_shapes for d in ("f32", "bf16")}
  ref_fit = {sh: fits[(sh, "f32")][f"{REFERENCE[1]}/{REFERENCE[2]}"] for sh in cost_shapes}
  rows = []
  for var in variants:
    key, (schedule, norm, steps) = _key(var), var
    tkey = _key(("jordan", norm, steps))
    m_syn = synth[key]
    p = m_syn[primary]
    times = {}
    for sh in cost_shapes:
      times[_shape_name(sh)] = {
          "f32_ms": timing[(sh, "f32")][tkey]["median_ms"],
          "bf16_ms": timing[(sh, "bf16")][tkey]["median_ms"],
          "f32_min_ms": timing[(sh, "f32")][tkey]["min_ms"],
          "f32_fit_ms": fits[(sh, "f32")][f"{norm}/{steps}"],
          "bf16_fit_ms": fits[(sh, "bf16")][f"{norm}/{steps}"],
          "bf16_min_ms": timing[(sh, "bf16")][tkey]["min_ms"],
          "flops": ns_flops(sh, steps, norm),
      }
    fkey = f"{norm}/{steps}"
    ratios = [fits[(sh, "f32")][fkey] / ref_fit[sh] for sh in cost_shapes]
    ratios_median = [timing[(sh, "f32")][tkey]["median_ms"] / ref_times[sh] for sh in cost_shapes]
    ratios_min = [timing[(sh, "f32")][tkey]["min_ms"] / timing[(sh, "f32")][ref_key]["min_ms"]
                  for sh in cost_shapes]
    first = _shape_name(cost_shapes[0])
    row = {
        "schedule": schedule, "normalization": norm, "steps": steps,
        "threshold": {lv: p["threshold"][lv] for lv in p["threshold"]},
        "threshold_flag": p["threshold_flag"],
        "threshold_analytic": p["threshold_analytic"],
        "threshold_scalar_map": {str(lv): optax_muon.ns_failure_threshold(schedule, steps, lv)
                                 for lv in LEVELS},
        "threshold_bf16": synth_bf16[key][primary]["threshold"] if synth_bf16 else None,
        "synthetic": {r["name"]: {k: m[k] for k in ("polar_e90", "polar_top10", "orth_e90",
                                                     "descent_retained", "threshold",
                                                     "threshold_flag", "threshold_analytic")}
                      for r, m in zip(synth_records, m_syn)},
        "synthetic_bf16": ({r["name"]: {k: m[k] for k in ("polar_e90", "polar_top10",
                                                            "descent_retained", "threshold")}
                            for r, m in zip(synth_records, synth_bf16[key])}
                           if synth_bf16 else None),
        "time_ms_f32": times[first]["f32_ms"],
        "time_ms_bf16": times[first]["bf16_ms"],
        "time_shape": first,
        "times": times,
        "flops": ns_flops(cost_shapes[0], steps, norm),
        "relative_cost": float(np.exp(np.mean(np.log(ratios)))),
        "relative_cost_median": float(np.exp(np.mean(np.log(ratios_median)))),
        "relative_cost_min": float(np.exp(np.mean(np.log(ratios_min)))),
        "relative_cost_bf16": float(np.exp(np.mean(np.log(
            [fits[(sh, "bf16")][fkey] / ref_fit[sh] for sh in cost_shapes])))),
        "relative_cost_by_shape": {_shape_name(sh): r for sh, r in zip(cost_shapes, ratios)},
        "relative_flops": ns_flops(cost_shapes[0], steps, norm) / ns_flops(
            cost_shapes[0], REFERENCE[2], REFERENCE[1]),
    }
    if real_records:
      m_real = real[key]
      # Effective threshold per matrix: analytic for the scalar normalizations;
      # for AOL the measured crossing, where one lies inside the matrix's spectrum.
      eff = {lv: [m["threshold_analytic"][lv] if m["threshold_analytic"][lv] is not None
                  else (m["threshold"][lv] if m["threshold_flag"][lv] == "ok" else None)
                  for m in m_real] for lv in p["threshold"]}
      row["real"] = {
          "threshold_median": {lv: _median(v) for lv, v in eff.items()},
          "threshold_max": {lv: max((x for x in v if x is not None), default=None)
                            for lv, v in eff.items()},
          "threshold_n": {lv: sum(x is not None for x in v) for lv, v in eff.items()},
          "frac_below_mean": {lv: float(np.mean([m["frac_below"][lv] for m in m_real]))
                              for lv in p["threshold"]},
          "polar_e90_median": _median([m["polar_e90"] for m in m_real]),
          "polar_e90_max": max(m["polar_e90"] for m in m_real),
          "polar_top10_median": _median([m["polar_top10"] for m in m_real]),
          "orth_e90_median": _median([m["orth_e90"] for m in m_real]),
          "descent_retained_median": _median([m["descent_retained"] for m in m_real]),
          "polar_e90_median_bf16": (_median([m["polar_e90"] for m in real_bf16[key]])
                                    if real_bf16 else None),
          "per_matrix": {r["name"]: {"polar_e90": m["polar_e90"],
                                     "descent_retained": m["descent_retained"],
                                     "threshold": m["threshold"],
                                     "threshold_analytic": m["threshold_analytic"]}
                         for r, m in zip(real_records, m_real)},
      }
    rows.append(row)
  return rows


def pareto_front(xs, ys) -> list[int]:
  """Indices of points not dominated (lower x and lower y are better)."""
  idx = []
  for i, (x, y) in enumerate(zip(xs, ys)):
    if not any((xs[j] <= x and ys[j] <= y and (xs[j] < x or ys[j] < y))
               for j in range(len(xs))):
      idx.append(i)
  return sorted(idx, key=lambda i: xs[i])


def headline(rows, source: str = "synthetic", noise: float = 0.05,
             with_error: bool = False) -> dict:
  """Cheapest variant whose thresholds (0.5 and 0.9) are <= Jordan-5 frobenius's.

  ``source``: ``"synthetic"`` (measured on the log-uniform spectrum) or
  ``"real"`` (median effective threshold over the momentum matrices).
  ``with_error``: also require a top-k polar error (``polar_e90``, log-uniform
  or real median) no larger than Jordan-5's.
  """
  def thr(r, lv):
    v = r["real"]["threshold_median"][lv] if source == "real" else r["threshold"][lv]
    return math.inf if v is None else v

  def err(r):
    return (r["real"]["polar_e90_median"] if source == "real"
            else r["synthetic"][PRIMARY_SPECTRUM]["polar_e90"])

  ref = next(r for r in rows if (r["schedule"], r["normalization"], r["steps"]) == REFERENCE)
  ok = [r for r in rows if all(thr(r, lv) <= thr(ref, lv) for lv in ("0.5", "0.9"))
        and (not with_error or err(r) <= err(ref))]
  best = min(ok, key=lambda r: (r["relative_cost"], thr(r, "0.5")))
  near = [r for r in ok if r["relative_cost"] <= best["relative_cost"] * (1 + noise)]
  label = source + (", and top-k polar error <= Jordan-5's" if with_error else "")
  return {"source": label, "reference": {lv: thr(ref, lv) for lv in ("0.5", "0.9")},
          "reference_error": err(ref), "best_error": err(best),
          "best": best, "within_noise": near, "n_qualifying": len(ok),
          "best_by_flops": min(ok, key=lambda r: (r["relative_flops"], r["relative_cost"]))}


# ---------------------------------------------------------------------- output


def finite_or_none(obj):
  """``obj`` with every non-finite float replaced by None (strict JSON)."""
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {k: finite_or_none(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [finite_or_none(v) for v in obj]
  return obj


def _name(r) -> str:
  return f"{r['schedule']}×{r['steps']} {r['normalization']}"


def plot(rows, path) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  panels = [("threshold σ/‖X‖_F at f=0.5 (synthetic log-uniform)", lambda r: r["threshold"]["0.5"])]
  if "real" in rows[0]:
    panels.append(("top-k (90% energy) polar error, real momentum (median)",
                   lambda r: r["real"]["polar_e90_median"]))
  else:
    panels.append(("top-k (90% energy) polar error, synthetic power_1",
                   lambda r: r["synthetic"]["power_1"]["polar_e90"]))
  colors = {"jordan": "tab:blue", "polar_express": "tab:orange", "nanogpt5": "tab:green"}
  markers = {"frobenius": "o", "spectral": "s", "schatten4": "^", "aol": "D"}
  fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5))
  for ax, (title, fy) in zip(np.atleast_1d(axes), panels):
    xs = [r["relative_cost"] for r in rows]
    ys = [fy(r) for r in rows]
    for r, x, y in zip(rows, xs, ys):
      ax.scatter(x, y, c=colors[r["schedule"]], marker=markers[r["normalization"]], s=28,
                 alpha=0.75)
    front = pareto_front(xs, ys)
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "k-", lw=1.2, zorder=0)
    for i in front:
      ax.annotate(f"{rows[i]['schedule'][:6]}×{rows[i]['steps']} {rows[i]['normalization'][:4]}",
                  (xs[i], ys[i]), fontsize=6.5, xytext=(3, 3), textcoords="offset points")
    ref = next(i for i, r in enumerate(rows)
               if (r["schedule"], r["normalization"], r["steps"]) == REFERENCE)
    ax.scatter([xs[ref]], [ys[ref]], s=160, facecolors="none", edgecolors="red", lw=1.5,
               label="jordan×5 frobenius")
    ax.axhline(ys[ref], color="red", lw=0.7, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("time ÷ jordan×5 frobenius time (f32, geometric mean over shapes)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
  handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=s) for s, c in colors.items()]
  handles += [plt.Line2D([], [], color="gray", marker=m, ls="", label=n)
              for n, m in markers.items()]
  handles.append(plt.Line2D([], [], color="k", label="Pareto front"))
  np.atleast_1d(axes)[0].legend(handles=handles, fontsize=7, loc="upper right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


SCHEMA = """\
## JSON schema (`ns_variants.json`)

Top level: `machine` (see `_common.machine_info`), `config` (shapes, steps, levels, repeats),
`definitions` (the text of the definitions below), `reference` (`jordan/frobenius/5`),
`headline` (per source), `real_matrices` (per captured matrix: key, layer, kind, shape, spectrum
summary), `timing_check` (all schedules at 5 frobenius steps) and `rows`, one per variant:

| field | type | meaning |
|---|---|---|
| `schedule` | str | `jordan`, `polar_express`, `nanogpt5` (ν = 1.02) |
| `normalization` | str | `frobenius`, `spectral`, `schatten4`, `aol` |
| `steps` | int | Newton–Schulz steps |
| `threshold` | dict str(level) → float | measured failure threshold in σ/‖X‖_F units (f32, synthetic log-uniform spectrum); levels `"0.1"`, `"0.5"`, `"0.9"` |
| `threshold_flag` | dict | `ok`, `below_range` (upper bound) or `never` (written as null) |
| `threshold_analytic` | dict | `ns_failure_threshold(level)·c(X)/‖X‖_F` on the same spectrum; null for AOL |
| `threshold_scalar_map` | dict | `ns_failure_threshold(schedule, steps, level)` in the scalar map's own units (σ after normalization) |
| `threshold_bf16` | dict | as `threshold`, with `compute_dtype=bfloat16` |
| `synthetic`, `synthetic_bf16` | dict spectrum → metrics | `polar_e90`, `polar_top10`, `orth_e90`, `descent_retained`, thresholds |
| `real` | dict | over the captured momentum matrices: `threshold_median`/`threshold_max` (effective threshold: analytic for scalar normalizations, measured for AOL), `frac_below_mean`, `polar_e90_median`/`_max`, `polar_top10_median`, `orth_e90_median`, `descent_retained_median`, `per_matrix` |
| `time_ms_f32`, `time_ms_bf16` | float | median jitted ms on `time_shape` (the first cost shape) |
| `times` | dict shape → {`f32_ms`, `bf16_ms`, `f32_min_ms`, `bf16_min_ms`, `f32_fit_ms`, `bf16_fit_ms`, `flops`} | per cost shape |
| `flops` | float | analytic flops on `time_shape` |
| `relative_cost` | float | f32 time ÷ jordan×5 frobenius's f32 time, geometric mean over the cost shapes, both times from the fit `t = a[normalization] + b·steps` to the minimum sample times of that shape (see `timing_fit`; robust to a load spike on one kernel) |
| `relative_cost_median`, `relative_cost_min` | float | the same ratio from the raw median / minimum times of the two kernels alone |
| `relative_cost_bf16` | float | fitted bf16 time ÷ fitted jordan×5 frobenius f32 time |
| `relative_cost_by_shape`, `relative_flops` | | per shape; the flops ratio |
"""


def _fmt(v) -> str:
  if v is None:
    return "n/a"
  if isinstance(v, float):
    if math.isinf(v):
      return "never"
    return f"{v:.2e}" if (v != 0 and abs(v) < 1e-2) else f"{v:.3f}"
  return str(v)


def markdown(payload, command: str) -> str:
  rows, info, heads = payload["rows"], payload["machine"], payload["headline"]
  has_real = "real" in rows[0]
  notes = [
      f"Load average during the run: start {info['loadavg_at_start']}, "
      f"end {payload['loadavg_at_end']} (2 shared cores: absolute times are noisy; "
      "ratios come from one interleaved run).",
      f"Inputs: synthetic {payload['config']['synthetic_shape']} "
      f"({', '.join(SYNTHETIC_SPECTRA)}); real: {len(payload['real_matrices'])} momentum "
      "matrices from `benchmarks/data/momentum_samples.npz`.",
      f"Cost shapes {payload['config']['cost_shapes']}, {payload['config']['repeats']} "
      "interleaved repeats, median.",
  ]
  out = [_common.md_header("Newton–Schulz variants: accuracy vs cost", info, command, notes)]
  out.append("\n" + SCHEMA)
  out.append("\n## Definitions\n\n" + payload["definitions"] + "\n")
  out.append("\n## Headline: who reaches the Jordan-5 threshold of 1e-3 at least cost?\n")
  ref_row = next(r for r in rows if (r["schedule"], r["normalization"], r["steps"]) == REFERENCE)
  for h in heads:
    b = h["best"]
    thr = (b["threshold"] if h["source"].startswith("synthetic")
           else b["real"]["threshold_median"])
    out.append(
        f"\n**{h['source']}** (reference jordan×5 frobenius: σ/‖X‖_F = "
        f"{_fmt(h['reference']['0.5'])} at f=0.5, {_fmt(h['reference']['0.9'])} at f=0.9; "
        f"{h['n_qualifying']} variants reach both): cheapest is **{_name(b)}** at "
        f"**{b['relative_cost']:.2f}×** the time of jordan×5 frobenius "
        f"(f32 {b['time_ms_f32']:.1f} ms vs {ref_row['time_ms_f32']:.1f} ms on "
        f"{b['time_shape']}; bf16 {b['time_ms_bf16']:.1f} ms vs {ref_row['time_ms_bf16']:.1f} ms; "
        f"flops ratio {b['relative_flops']:.2f}; raw ratio of median times "
        f"{b.get('relative_cost_median', math.nan):.2f}, of minimum times "
        f"{b.get('relative_cost_min', math.nan):.2f}), thresholds {_fmt(thr['0.5'])} / "
        f"{_fmt(thr['0.9'])}, top-k polar error {_fmt(h['best_error'])} (jordan×5: "
        f"{_fmt(h['reference_error'])}). Within 5% of its time: "
        + ", ".join(f"{_name(r)} ({r['relative_cost']:.2f}×)" for r in h["within_noise"])
        + f". Cheapest by analytic flops: {_name(h['best_by_flops'])} "
        f"({h['best_by_flops']['relative_flops']:.2f}× flops, "
        f"{h['best_by_flops']['relative_cost']:.2f}× time).\n")
  out.append("\n## Pareto front (time vs accuracy)\n\n![pareto](ns_variants_pareto.png)\n")
  for label, fy in payload["pareto"].items():
    out.append(f"\n{label}:\n\n")
    out.append(_common.md_table(
        ["variant", "relative cost", "value"],
        [[n, c, v] for n, c, v in fy]))
  out.append("\n## Recommendation\n\n" + payload["recommendation"] + "\n")
  headers = ["schedule", "norm", "steps", "thr f=0.5", "thr f=0.9", "thr f=0.5 (ana)",
             "thr f=0.5 bf16", "polar e90 (logu)", "polar e90 (pow1)"]
  if has_real:
    headers += ["real thr f=0.5 (med)", "real polar e90 (med)", "real descent"]
  headers += ["ms f32", "ms bf16", "GFLOP", "rel. cost", "rel. cost (raw median)"]
  table = []
  for r in rows:
    line = [r["schedule"], r["normalization"], r["steps"], _fmt(r["threshold"]["0.5"]),
            _fmt(r["threshold"]["0.9"]), _fmt(r["threshold_analytic"]["0.5"]),
            _fmt((r["threshold_bf16"] or {}).get("0.5")),
            _fmt(r["synthetic"]["loguniform"]["polar_e90"]),
            _fmt(r["synthetic"]["power_1"]["polar_e90"])]
    if has_real:
      line += [_fmt(r["real"]["threshold_median"]["0.5"]), _fmt(r["real"]["polar_e90_median"]),
               _fmt(r["real"]["descent_retained_median"])]
    line += [f"{r['time_ms_f32']:.1f}", f"{r['time_ms_bf16']:.1f}", f"{r['flops'] / 1e9:.2f}",
             f"{r['relative_cost']:.2f}", f"{r.get('relative_cost_median', math.nan):.2f}"]
    table.append(line)
  out.append(f"\n## Full table\n\n`ms` = raw median times on {rows[0]['time_shape']}; "
             "`rel. cost` = fitted time ÷ fitted jordan×5 frobenius time, geometric mean over "
             "the cost shapes (schema above); `raw median` = the plain ratio of the two median "
             "times (noisy under load). `thr` = failure threshold in σ/‖X‖_F (measured, f32, "
             "log-uniform spectrum; `ana` = analytic). `real` columns: medians over the "
             "momentum matrices.\n\n")
  out.append(_common.md_table(headers, table))
  if "timing_fit" in payload:
    out.append("\n## Timing model\n\nLeast squares `t = a[normalization] + b·steps` on the "
               "minimum sample times (ms); `max_rel_residual` = worst kernel's deviation from "
               "the fit.\n\n")
    out.append(_common.md_table(
        ["shape/dtype", "b (ms/step)"] + [f"a {n}" for n in NORMALIZATIONS] + ["max rel. residual"],
        [[k, f"{v['per_step_ms']:.2f}"] + [f"{v['fixed_ms'].get(n, math.nan):.2f}"
                                           for n in NORMALIZATIONS]
         + [f"{v['max_rel_residual']:.2f}"] for k, v in payload["timing_fit"].items()]))
  out.append("\n## Timing check: the schedule does not change the cost\n\n")
  out.append(_common.md_table(["shape", "dtype", "variant", "median ms"],
                              payload["timing_check"]))
  if payload["real_matrices"]:
    out.append("\n## Real momentum matrices\n\n" + payload["real_note"] + "\n\n")
    out.append(_common.md_table(
        ["key", "position", "kind", "shape", "σ₁/‖X‖_F", "median σ/‖X‖_F", "min σ/‖X‖_F",
         "‖X‖_S4/‖X‖_F", "frac σ < 1.07e-3"],
        [[m["key"], m["position"], m["kind"], "x".join(map(str, m["shape"])), _fmt(m["s1"]),
          _fmt(m["s_median"]), _fmt(m["s_min"]), _fmt(m["s4_ratio"]),
          _fmt(m["frac_below_jordan5"])] for m in payload["real_matrices"]]))
  return "".join(out)


DEFINITIONS = """\
- **Normalized σ** = σ_i / ‖X‖_F (plain Frobenius norm of the input, no ν), for every
  normalization, so thresholds of different normalizations are comparable.
- **Gain** of direction i: g_i = u_iᵀ O v_i with (u_i, σ_i, v_i) the exact (numpy float64) SVD of
  the input X and O = `optax_muon.orthogonalize(X, ...)`. For frobenius/spectral/schatten4,
  g_i = f(σ_i / c(X)) (f = `ns_scalar_map`); AOL rotates singular vectors, so g_i is O's
  component on X's own singular pair.
- **Failure threshold** at level ℓ: the first upward crossing of g_i ≥ ℓ as σ grows
  (log-interpolated between neighbouring σ_i), as `ns_failure_threshold` defines it for the
  scalar map. ℓ = 0.5 and 0.9 (ε = 0.5, 0.1); 0.1 is also recorded. The "Jordan-5 threshold of
  1e-3" is jordan×5 frobenius: 1.07e-3 at ℓ = 0.5 and 2.13e-3 at ℓ = 0.9 (docs/algorithms.md, "Newton–Schulz").
- **Analytic threshold**: `ns_failure_threshold(schedule, steps, ℓ) · c(X)/‖X‖_F`, with
  c = ν‖X‖_F (frobenius), ‖X‖_S4 = (Σσ⁴)^{1/4} (schatten4), min(1.05σ₁, (Σσ⁸)^{1/8}) (spectral,
  assuming the power iteration converged); none for AOL. On real matrices the effective
  threshold is this analytic value (measured crossing for AOL, where it falls inside the
  matrix's spectrum). Frobenius thresholds are the same for every input; those of
  spectral/schatten4/AOL move with c(X)/‖X‖_F, i.e. with the spectrum (lower for flatter
  spectra): the `threshold` field is their value on the log-uniform spectrum, `real` holds
  the momentum-matrix values.
- **Top-k polar error** `polar_e90`: ‖U_kᵀ O V_k − I_k‖₂, k = number of directions holding 90 % of
  Σσ² (`polar_top10`: k = 10 % of the rank); 0 for the exact polar factor UVᵀ. For the scalar
  normalizations it is max_{i≤k} |g_i − 1|. `orth_e90` = ‖(O V_k)ᵀ(O V_k) − I_k‖₂.
- **Descent retained** = Σσ_i g_i / Σσ_i (docs/algorithms.md, "Spectral diagnostics"), 1 for the exact polar factor.
- **Cost**: median wall time of a jitted `orthogonalize` (float32 input; bf16 =
  `compute_dtype=jnp.bfloat16`), all kernels timed interleaved in one process; flops =
  steps·(4m²n + 2m³) + normalization extra (frobenius 3mn; schatten4 +2m²; spectral +20m²;
  aol +3m²)."""


def _spectrum_summary(rec, thr_ref: float) -> dict:
  s = rec["s"]
  fro = float(np.sqrt(np.sum(s**2)))
  sn = s / fro
  meta = rec["meta"]
  return {"key": rec["name"], "layer": meta.get("layer"), "position": meta.get("position"),
          "kind": meta.get("kind"), "shape": meta.get("shape"), "step": meta.get("step"),
          "s1": float(sn[0]), "s_median": float(np.median(sn)), "s_min": float(sn[-1]),
          "s4_ratio": float(np.sum(s**4) ** 0.25 / fro),
          "quantiles": {str(q): float(sn[max(0, math.ceil(q * len(sn)) - 1)])
                        for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
          "frac_below_jordan5": float(np.mean(sn < thr_ref))}


def recommendation(rows, heads) -> str:
  """A paragraph written from the measured numbers."""
  by = {h["source"]: h for h in heads}
  ref = next(r for r in rows if (r["schedule"], r["normalization"], r["steps"]) == REFERENCE)
  syn = by["synthetic"]["best"]
  syn_err = by["synthetic, and top-k polar error <= Jordan-5's"]["best"]
  real_h = by.get("real")
  best5 = min((r for r in rows if r["steps"] == 5), key=lambda r: r["threshold"]["0.5"])
  conv = min((r for r in rows if r["synthetic"][PRIMARY_SPECTRUM]["polar_e90"] < 0.05),
             key=lambda r: (r["relative_cost"], r["threshold"]["0.5"]), default=None)
  parts = [
      f"To reach the Jordan-5 failure threshold (≈1e-3 in σ/‖X‖_F) for less, use "
      f"**{_name(syn)}**: thresholds {_fmt(syn['threshold']['0.5'])} / "
      f"{_fmt(syn['threshold']['0.9'])} (f = 0.5 / 0.9, log-uniform spectrum) vs "
      f"{_fmt(ref['threshold']['0.5'])} / {_fmt(ref['threshold']['0.9'])}, at "
      f"{syn['relative_cost']:.2f}× the time of jordan×5 frobenius ({syn['steps']} instead of 5 "
      "steps; the normalization is nearly free because it reuses the first Gram)."]
  sibs = [r for r in rows if r["schedule"] == syn["schedule"] and r["steps"] == syn["steps"]
          and r is not syn and all(r["threshold"][lv] <= ref["threshold"][lv]
                                   for lv in ("0.5", "0.9"))]
  if sibs:
    parts.append(
        " " + ", ".join(f"{_name(r)} ({r['relative_cost']:.2f}×)" for r in sibs)
        + " qualify as well: the normalizations' fixed costs are within this machine's timing "
        "noise (see the timing model), so among them choose by accuracy.")
  if real_h is not None:
    rb = real_h["best"]
    parts.append(f" On the real momentum matrices the same criterion picks **{_name(rb)}** "
                 f"({rb['relative_cost']:.2f}×).")
  parts.append(
      " Schatten-4, spectral and AOL lower the threshold in σ/‖X‖_F units because they divide "
      "by less than ‖X‖_F (by ‖X‖_S4/‖X‖_F ≈ 0.5-0.7 on these inputs), which is what buys the "
      "saved step; with Frobenius normalization no 4-step schedule gets there "
      "(polar_express×4: 1.19e-3). But a 4-step schedule is a poorer orthogonalizer of the "
      f"top directions: {_name(syn)} leaves a top-k polar error of "
      f"{_fmt(syn['synthetic'][PRIMARY_SPECTRUM]['polar_e90'])} vs "
      f"{_fmt(ref['synthetic'][PRIMARY_SPECTRUM]['polar_e90'])} for Jordan-5. Requiring both "
      f"(threshold and top-k error no worse than Jordan-5), the cheapest is **{_name(syn_err)}** "
      f"({syn_err['relative_cost']:.2f}×, error "
      f"{_fmt(syn_err['synthetic'][PRIMARY_SPECTRUM]['polar_e90'])}).")
  parts.append(
      f" At 5 steps the lowest threshold is {_name(best5)} ({_fmt(best5['threshold']['0.5'])}). "
      "Jordan's coefficients never converge (top gains stay in ≈[0.7, 1.13] at any step count)")
  if conv is not None:
    parts.append(f"; the cheapest variant with top-k polar error < 0.05 is {_name(conv)} "
                 f"({conv['relative_cost']:.2f}×)")
  parts.append(
      ". Most real momentum matrices here have no singular value below 1e-3·‖X‖_F at all (see "
      "the last table: only q/o kernels and the last down projection have a tail there), so "
      "for them the threshold hardly matters and the top-k error decides. bf16 compute "
      "(`threshold_bf16`) keeps thresholds down to ≈1e-4 but not below: its rounding floors "
      "the 7-8 step variants.")
  return "".join(parts)


def finish(payload: dict, out_prefix: str, command: str) -> list[dict]:
  """Headline, Pareto fronts and recommendation from ``payload["rows"]``; writes the
  JSON, the markdown and the plot. Returns the headline dicts."""
  rows = payload["rows"]
  has_real = bool(payload["real_matrices"])
  heads = [headline(rows, src, with_error=e) for e in (False, True)
           for src in (("synthetic", "real") if has_real else ("synthetic",))]
  xs = [r["relative_cost"] for r in rows]
  pareto = {}
  for label, fy in [("threshold f=0.5, synthetic log-uniform", lambda r: r["threshold"]["0.5"]),
                    ("polar e90, real momentum median",
                     (lambda r: r["real"]["polar_e90_median"]) if has_real else None)]:
    if fy is None:
      continue
    ys = [math.inf if fy(r) is None else fy(r) for r in rows]
    pareto[label] = [[_name(rows[i]), round(xs[i], 3), _fmt(ys[i])] for i in pareto_front(xs, ys)]
  payload = dict(payload, pareto=pareto, recommendation=recommendation(rows, heads))
  payload["headline"] = [
      {"source": h["source"], "reference": h["reference"],
       "best": _key((h["best"]["schedule"], h["best"]["normalization"], h["best"]["steps"])),
       "relative_cost": h["best"]["relative_cost"],
       "relative_cost_min": h["best"].get("relative_cost_min"),
       "n_qualifying": h["n_qualifying"],
       "within_noise": [_name(r) for r in h["within_noise"]]} for h in heads]
  _common.write_json(f"{out_prefix}.json", finite_or_none(payload))
  _common.write_text(f"{out_prefix}.md", markdown(dict(payload, headline=heads), command))
  plot(rows, _common.RESULTS_DIR / f"{out_prefix}_pareto.png")
  return heads


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small shapes, one cost shape")
  parser.add_argument("--out-prefix", default="ns_variants",
                      help="results/<prefix>.{json,md} and <prefix>_pareto.png")
  parser.add_argument("--no-bf16-accuracy", action="store_true")
  parser.add_argument("--render-only", action="store_true",
                      help="rewrite the md/png (and JSON summary) from results/<prefix>.json")
  _common.add_load_argument(parser)
  args = parser.parse_args()
  if args.render_only:
    path = _common.RESULTS_DIR / f"{args.out_prefix}.json"
    with open(path) as f:
      payload = json.load(f)
    payload["definitions"] = DEFINITIONS
    command = "python benchmarks/ns_variants.py" + (" --quick" if payload["config"]["quick"]
                                                     else "")
    finish(payload, args.out_prefix, command)
    print(f"[ns_variants] re-rendered from {path}")
    return
  cfg = QUICK if args.quick else FULL
  _common.check_load(args.allow_load, "at the start")
  info = _common.machine_info()
  variants = all_variants(cfg["steps"])
  t_start = time.perf_counter()

  synth_records = synthetic_inputs(cfg["synthetic_shape"])
  real_records = [r for r in real_inputs()
                  if cfg["real_max_side"] is None or max(r["x"].shape) <= cfg["real_max_side"]]
  real_records = real_records[:cfg["real_limit"]]
  records = synth_records + real_records
  acc = accuracy(records, variants)
  print(f"[ns_variants] f32 accuracy done in {time.perf_counter() - t_start:.0f}s", flush=True)
  acc_bf16 = None if args.no_bf16_accuracy else accuracy(records, variants, jnp.bfloat16)
  print(f"[ns_variants] accuracy done in {time.perf_counter() - t_start:.0f}s", flush=True)
  timing = cost(cfg["cost_shapes"], steps=cfg["steps"], repeats=cfg["repeats"],
                min_sample_s=cfg["min_sample_s"])
  rows = build_rows(variants, acc, acc_bf16, synth_records, real_records, timing,
                    cfg["cost_shapes"])
  ref_thr = next(r for r in rows if (r["schedule"], r["normalization"], r["steps"])
                 == REFERENCE)["threshold"]["0.5"]
  check = [[_shape_name(sh), dname, f"{s}×5 frobenius",
            f"{t[_key((s, 'frobenius', 5))]['median_ms']:.1f}"]
           for (sh, dname), t in timing.items() for s in SCHEDULES]
  payload = {
      "machine": info,
      "loadavg_at_end": _common.check_load(args.allow_load, "at the end"),
      "wall_seconds": round(time.perf_counter() - t_start, 1),
      "config": {"quick": args.quick, "synthetic_shape": cfg["synthetic_shape"],
                 "cost_shapes": cfg["cost_shapes"], "repeats": cfg["repeats"],
                 "min_sample_s": cfg["min_sample_s"], "steps": cfg["steps"],
                 "levels": LEVELS, "schedules": SCHEDULES, "normalizations": NORMALIZATIONS},
      "definitions": DEFINITIONS,
      "reference": _key(REFERENCE),
      "real_matrices": [_spectrum_summary(r, ref_thr) for r in real_records],
      "real_note": ("Captured by `benchmarks/capture_momentum.py` (see the npz's `meta`): "
                    "Muon momentum buffers of the first, middle and last layer; tall "
                    "kernels are transposed (wide orientation), which changes nothing."),
      "timing_check": check,
      "timing_fit": {f"{_shape_name(sh)}/{d}": fit_times(timing[(sh, d)])[1]
                     for sh in cfg["cost_shapes"] for d in ("f32", "bf16")},
      "rows": rows,
  }
  command = "python benchmarks/ns_variants.py" + (" --quick" if args.quick else "")
  heads = finish(payload, args.out_prefix, command)
  print(f"[ns_variants] done in {time.perf_counter() - t_start:.0f}s; wrote "
        f"{_common.RESULTS_DIR / args.out_prefix}.{{json,md}} and _pareto.png")
  for h in heads:
    print(f"  {h['source']}: {_name(h['best'])} at {h['best']['relative_cost']:.2f}x")


if __name__ == "__main__":
  main()
