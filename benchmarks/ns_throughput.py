"""Newton–Schulz throughput: optax_muon vs optax.contrib vs plain matmul.

    python benchmarks/ns_throughput.py            # all shapes (~10 min on 2 CPU cores)
    python benchmarks/ns_throughput.py --quick    # a subset (< 1 min)

For each [m, n] input (m the short side) and 5 Jordan steps it times, in one
process and interleaved (A B C ... A B C ...):

* ``ours``:  ``optax_muon.orthogonalize(x, schedule="jordan", steps=5)``,
* ``optax``: ``optax.contrib._muon.orthogonalize_via_newton_schulz(x, [3.4445, -4.7750, 2.0315], 5)``,
* ``matmul``: the three product shapes of one NS step, each a jitted ``a @ b``
  ([m,n]@[n,m], [m,m]@[m,m], [m,m]@[m,n]); their summed time is the "matmul
  roofline" of one step (the NS FLOPs at plain-matmul speed),

in float32 and bfloat16 (input cast to bf16 for both; ours also with
``compute_dtype=bfloat16`` on a bf16 or a float32 input). FLOPs per NS step are
``4m²n + 2m³``. Accuracy is measured against the exact polar factor ``U Vᵀ``
(numpy float64 SVD): relative Frobenius error and ``max_i |σ_i(O) − 1|``. With
a Gaussian input and only 5 Jordan steps neither is small (Jordan's schedule
leaves σ in ≈[0.7, 1.2] and the smallest singular values of a square Gaussian
are ≈0); the point is that ours and optax agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from optax.contrib._muon import orthogonalize_via_newton_schulz  # noqa: E402

import _common  # noqa: E402
import optax_muon  # noqa: E402

JORDAN = (3.4445, -4.7750, 2.0315)
STEPS = 5
FULL_SHAPES = [(512, 512), (1024, 1024), (2048, 2048), (256, 1024), (512, 2048), (1024, 4096)]
QUICK_SHAPES = [(512, 512), (256, 1024)]


def ns_flops(m: int, n: int, steps: int = STEPS) -> float:
  m, n = min(m, n), max(m, n)
  return float(steps) * (4 * m * m * n + 2 * m**3)


def make_variants(x32: jax.Array):
  """name -> (dtype group, zero-arg callable); every callable is jitted once."""
  coeffs = jnp.asarray(JORDAN)
  ours = jax.jit(lambda x: optax_muon.orthogonalize(x, schedule="jordan", steps=STEPS))
  ours_c16 = jax.jit(lambda x: optax_muon.orthogonalize(
      x, schedule="jordan", steps=STEPS, compute_dtype=jnp.bfloat16))
  optax_ns = jax.jit(lambda x: orthogonalize_via_newton_schulz(x, coeffs, STEPS))
  x16 = x32.astype(jnp.bfloat16)
  return {
      "f32/ours": ("f32", lambda: ours(x32)),
      "f32/optax": ("f32", lambda: optax_ns(x32)),
      "bf16/ours(bf16 in, f32 compute)": ("bf16", lambda: ours(x16)),
      "bf16/ours(bf16 in, bf16 compute)": ("bf16", lambda: ours_c16(x16)),
      "bf16/ours(f32 in, bf16 compute)": ("bf16", lambda: ours_c16(x32)),
      "bf16/optax": ("bf16", lambda: optax_ns(x16)),
  }


def make_matmuls(m: int, n: int, key):
  """Per dtype: the three per-step products of NS, each a jitted ``a @ b``."""
  mm = jax.jit(lambda a, b: a @ b)
  k1, k2, k3 = jax.random.split(key, 3)
  out = {}
  for name, dt in (("f32", jnp.float32), ("bf16", jnp.bfloat16)):
    x = jax.random.normal(k1, (m, n), dt)
    xt = jax.random.normal(k2, (n, m), dt)
    a = jax.random.normal(k3, (m, m), dt)
    out[f"{name}/mm gram [m,n]@[n,m]"] = (name, lambda x=x, xt=xt: mm(x, xt))
    if m != n:  # square: all three products have one shape
      out[f"{name}/mm [m,m]@[m,m]"] = (name, lambda a=a: mm(a, a))
      out[f"{name}/mm [m,m]@[m,n]"] = (name, lambda a=a, x=x: mm(a, x))
  return out


def polar_errors(x64: np.ndarray, out: np.ndarray, polar: np.ndarray) -> dict[str, float]:
  o = np.asarray(out, dtype=np.float64)
  sv = np.linalg.svd(o, compute_uv=False)
  return {
      "rel_fro_err_vs_polar": float(np.linalg.norm(o - polar) / np.linalg.norm(polar)),
      "max_abs_sigma_minus_1": float(np.max(np.abs(sv - 1.0))),
      "sigma_min": float(sv.min()),
      "sigma_max": float(sv.max()),
  }


def bench_shape(m: int, n: int, budget_s: float, max_repeats: int, min_sample_s: float,
                seed: int = 0):
  key = jax.random.key(seed)
  kx, kmm = jax.random.split(key)
  x32 = jax.random.normal(kx, (m, n), jnp.float32)
  variants = make_variants(x32)
  matmuls = make_matmuls(min(m, n), max(m, n), kmm)
  fns = {k: f for k, (_, f) in {**variants, **matmuls}.items()}

  timed = _common.side_by_side(fns, budget_s, max_repeats, min_sample_s)
  first, compile_s, inner = timed["first"], timed["compile_s"], timed["inner"]
  repeats, stats = timed["repeats"], timed["stats"]

  # Accuracy vs the exact polar factor (float64 SVD).
  x64 = np.asarray(x32, dtype=np.float64)
  u, _, vt = np.linalg.svd(x64, full_matrices=False)
  polar = u @ vt
  outs = {k: np.asarray(first[k].astype(jnp.float32)) for k in variants}
  del first
  acc = {k: polar_errors(x64, o, polar) for k, o in outs.items()}
  ref = outs["f32/optax"]
  for k, o in outs.items():
    acc[k]["rel_fro_diff_vs_optax_f32"] = float(np.linalg.norm(o - ref) / np.linalg.norm(ref))

  s, l = min(m, n), max(m, n)
  flops = ns_flops(m, n)
  rows = {}
  for dt in ("f32", "bf16"):
    gram = stats[f"{dt}/mm gram [m,n]@[n,m]"]["median_s"]
    if m == n:
      step_t = 3 * gram
    else:
      step_t = gram + stats[f"{dt}/mm [m,m]@[m,m]"]["median_s"] + stats[f"{dt}/mm [m,m]@[m,n]"]["median_s"]
    mm_gflops = (4 * s * s * l + 2 * s**3) / step_t / 1e9
    gram_gflops = 2 * s * s * l / gram / 1e9
    optax_t = stats[f"{dt}/optax"]["median_s"]
    for k, (group, _) in variants.items():
      if group != dt:
        continue
      t = stats[k]["median_s"]
      rows[k] = {
          "median_s": t,
          "min_s": stats[k]["min_s"],
          "gflops": flops / t / 1e9,
          "gflops_at_min": flops / stats[k]["min_s"] / 1e9,
          "matmul_gflops": mm_gflops,
          "matmul_gram_gflops": gram_gflops,
          "frac_of_matmul": (flops / t / 1e9) / mm_gflops,
          "speedup_vs_optax_same_dtype_input": optax_t / t,
          "compile_and_first_call_s": compile_s[k],
          **acc[k],
      }
  return {
      "shape": [m, n],
      "flops_per_call": flops,
      "repeats": repeats,
      "calls_per_sample": inner,
      "timings": stats,
      "variants": rows,
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="a subset of shapes, fewer repeats (< 1 min)")
  p.add_argument("--out", default="ns_throughput", help="basename under benchmarks/results/")
  _common.add_load_argument(p)
  p.add_argument("--report-only", action="store_true",
                 help="measure nothing: rebuild results/OUT.md from results/OUT.json")
  args = p.parse_args(argv)
  if args.report_only:
    payload = json.loads((_common.RESULTS_DIR / f"{args.out}.json").read_text())
    _common.write_text(f"{args.out}.md", markdown(payload))
    return
  load_start = _common.check_load(args.allow_load, "at the start")

  shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
  # Per shape: time budget for the interleaved rounds, most rounds, and the
  # least duration of one sample (short calls are repeated back to back).
  budget_s, max_repeats, min_sample_s = (3.0, 5, 0.02) if args.quick else (40.0, 9, 0.1)
  info = _common.machine_info()
  command = "python benchmarks/ns_throughput.py" + (" --quick" if args.quick else "")
  t_start = time.perf_counter()
  results = []
  for m, n in shapes:
    t0 = time.perf_counter()
    r = bench_shape(m, n, budget_s, max_repeats, min_sample_s)
    results.append(r)
    v = r["variants"]
    print(f"[{m}x{n}] repeats={r['repeats']} ({time.perf_counter() - t0:.0f}s): "
          f"f32 ours {v['f32/ours']['gflops']:.1f} optax {v['f32/optax']['gflops']:.1f} "
          f"matmul {v['f32/ours']['matmul_gflops']:.1f} GFLOP/s; ours/optax "
          f"{v['f32/ours']['speedup_vs_optax_same_dtype_input']:.2f}x, ours/matmul "
          f"{v['f32/ours']['frac_of_matmul']:.2f}", flush=True)
  total = time.perf_counter() - t_start
  load_end = _common.check_load(args.allow_load, "at the end")
  payload = {"machine": info, "command": command, "steps": STEPS, "schedule": "jordan",
             "coefficients": JORDAN, "total_wall_s": total, "loadavg_at_end": load_end,
             "results": results}
  _common.write_report(args.out, payload, markdown)


def markdown(payload: dict) -> str:
  """results/ns_throughput.md from the results JSON."""
  results, total = payload["results"], payload["total_wall_s"]
  load_start = _common.as_tuple(payload["machine"]["loadavg_at_start"])
  load_end = _common.as_tuple(payload["loadavg_at_end"])
  headers = ["shape [m,n]", "dtype", "variant", "median ms", "GFLOP/s", "matmul GFLOP/s",
             "× matmul", "speed vs optax", "rel err vs UVᵀ", "max|σ−1|", "diff vs optax f32"]
  rows = []
  for r in results:
    for k, v in r["variants"].items():
      dt, name = k.split("/", 1)
      rows.append([f"{r['shape'][0]}×{r['shape'][1]}", dt, name, v["median_s"] * 1e3, v["gflops"],
                   v["matmul_gflops"], v["frac_of_matmul"], v["speedup_vs_optax_same_dtype_input"],
                   v["rel_fro_err_vs_polar"], v["max_abs_sigma_minus_1"],
                   v["rel_fro_diff_vs_optax_f32"]])
  notes = [
      f"Jordan coefficients {JORDAN}, {STEPS} steps, frobenius normalization; "
      "FLOPs per step 4m²n + 2m³ (m the short side).",
      "All variants of a shape are timed interleaved in one process; medians of "
      f"the repeats (repeats and calls per sample in the JSON). Total wall time {total:.0f} s.",
      "`matmul GFLOP/s`: NS-step FLOPs over the summed median times of jitted `a @ b` of its "
      "three product shapes ([m,n]@[n,m], [m,m]@[m,m], [m,m]@[m,n]) in the same dtype; "
      "`× matmul` = GFLOP/s / matmul GFLOP/s.",
      "`speed vs optax` = optax median / variant median (optax given the same-dtype input: "
      "f32 rows vs optax f32, bf16 rows vs optax on bf16 input).",
      "Accuracy vs the exact polar factor U·Vᵀ of the (f32) input from a float64 numpy SVD; "
      "Gaussian input, so 5 Jordan steps leave small singular values unconverged "
      "(large max|σ−1| on square shapes is expected, and the same for both libraries).",
      f"Load average (1/5/15 min) at the start {load_start}, at the end {load_end} on "
      f"{os.cpu_count()} cores.",
  ]
  return (_common.md_header("Newton–Schulz throughput", payload["machine"], payload["command"],
                            notes) + "\n" + _common.md_table(headers, rows))


if __name__ == "__main__":
  main()
