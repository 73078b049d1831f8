"""Gram Newton–Schulz vs the standard iteration vs plain matmul, side by side.

    python benchmarks/gram_ns.py                  # all shapes, f32 and bf16 (~10 min)
    python benchmarks/gram_ns.py --quick          # small shapes (< 2 min)
    python benchmarks/gram_ns.py --shapes 1024x4096,4096x1024 --schedule polar_express --steps 8

For each ``[m, n]`` (square, 1:4, 1:8 and transposed, incl. 1024×4096) and each
dtype (``f32``: float32 iteration; ``bf16``: float32 input with
``compute_dtype=bfloat16``, the usual Muon setting) it times, in one process and
interleaved (A B C … A B C …), jitted:

* ``standard``: ``optax_muon.orthogonalize(x, method="standard")``,
* ``gram``:     ``optax_muon.orthogonalize(x, method="gram")`` (default restarts),
* the three matmul shapes of the iterations, each alone: ``gram`` ([m,n]·[n,m],
  contracting the long side), ``small`` ([m,m]·[m,m]) and ``apply``
  ([m,m]·[m,n]), accumulating in f32 like the kernels.

Reported: medians (and minimums) of the repeats, ``speedup = standard / gram``,
the flop model's ratio (``gram_newton_schulz.flops``), and the *matmul
roofline* of each method: its products at plain-matmul speed,
``T(t_gram + t_small + t_apply)`` for standard and
``r(t_gram + t_apply) + (4T − 3r) t_small`` for gram (``r`` blocks), with the
measured time as a fraction of it. Accuracy on the same Gaussian input:
relative Frobenius difference gram vs standard, and each method's error
against the exact polar factor ``UVᵀ`` and the exact iteration ``U f(σ̂) Vᵀ``
(float64 NumPy SVD).

The load average is recorded before and after. With a load above the number of
cores the script refuses to start, and (if it rose during the run) to write
results, unless ``--allow-load`` (the numbers are then printed, and marked).
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

import _common  # noqa: E402
import optax_muon  # noqa: E402
from optax_muon._src import gram_newton_schulz as gram_ns  # noqa: E402

FULL_SHAPES = [(1024, 1024), (1024, 4096), (4096, 1024), (512, 4096), (4096, 512),
               (1024, 8192), (8192, 1024)]
QUICK_SHAPES = [(256, 256), (256, 1024), (1024, 256), (128, 1024), (1024, 128)]
DTYPES = {"f32": None, "bf16": jnp.bfloat16}


def _cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # pragma: no cover - not on Linux
    return os.cpu_count() or 1


def _load() -> tuple[float, float, float]:
  return tuple(float(v) for v in os.getloadavg())


def _dot(a, b, dims):
  return jax.lax.dot_general(a, b, (dims, ((0,), (0,))), preferred_element_type=jnp.float32)


def make_fns(x32: jax.Array, schedule: str, steps: int, key):
  """name -> (dtype, zero-arg callable), every callable jitted once."""
  m, n = sorted(x32.shape)
  fns = {}
  for dname, cdt in DTYPES.items():
    for method in ("standard", "gram"):
      f = jax.jit(lambda x, method=method, cdt=cdt: optax_muon.orthogonalize(
          x, schedule=schedule, steps=steps, compute_dtype=cdt, method=method))
      fns[f"{dname}/{method}"] = (dname, lambda f=f: f(x32))
    dt = cdt or jnp.float32
    k1, k2 = jax.random.split(jax.random.fold_in(key, len(fns)))
    x = jax.random.normal(k1, (1, m, n), dt)
    s = jax.random.normal(k2, (1, m, m), dt)
    gram = jax.jit(lambda x: _dot(x, x, ((2,), (2,))))
    mm = jax.jit(lambda a, b: _dot(a, b, ((2,), (1,))))
    fns[f"{dname}/mm gram"] = (dname, lambda x=x: gram(x))
    fns[f"{dname}/mm small"] = (dname, lambda s=s: mm(s, s))
    fns[f"{dname}/mm apply"] = (dname, lambda s=s, x=x: mm(s, x))
  return fns


def accuracy(x32: jax.Array, outs: dict, schedule: str, steps: int) -> dict:
  x = np.asarray(x32, np.float64)
  u, s, vt = np.linalg.svd(x, full_matrices=False)
  polar = u @ vt
  sn = s / (optax_muon.NORMALIZATION_SCALE.get(schedule, 1.0) * np.linalg.norm(s))
  iterated = (u * optax_muon.ns_scalar_map(sn, schedule, steps)) @ vt
  rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
  res = {}
  for dname in DTYPES:
    o = {k: np.asarray(outs[f"{dname}/{k}"].astype(jnp.float32), np.float64)
         for k in ("standard", "gram")}
    res[dname] = {
        "rel_diff_gram_vs_standard": rel(o["gram"], o["standard"]),
        **{f"rel_err_{k}_vs_polar": rel(o[k], polar) for k in o},
        **{f"rel_err_{k}_vs_iteration": rel(o[k], iterated) for k in o},
    }
  return res


def bench_shape(m, n, schedule, steps, budget_s, max_repeats, min_sample_s, seed=0):
  key = jax.random.key(seed)
  kx, kf = jax.random.split(key)
  x32 = jax.random.normal(kx, (m, n), jnp.float32)
  fns = make_fns(x32, schedule, steps, kf)
  calls = {k: f for k, (_, f) in fns.items()}
  timed = _common.side_by_side(calls, budget_s, max_repeats, min_sample_s)
  first, compile_s, inner = timed["first"], timed["compile_s"], timed["inner"]
  repeats, stats = timed["repeats"], timed["stats"]
  acc = accuracy(x32, {k: v for k, v in first.items() if "/mm" not in k}, schedule, steps)
  del first

  short, long = min(m, n), max(m, n)
  table = optax_muon.ns_coefficients(schedule, steps)
  restarts = gram_ns.default_restarts(table)
  blocks = 1 + len(restarts)
  f_std = gram_ns.flops(m, n, steps, "standard", schedule=schedule)
  f_gram = gram_ns.flops(m, n, steps, "gram", schedule=schedule)
  rows = {}
  for dname in DTYPES:
    t = {k.split("/", 1)[1]: stats[k]["median_s"] for k in stats if k.startswith(dname + "/")}
    tmin = {k.split("/", 1)[1]: stats[k]["min_s"] for k in stats if k.startswith(dname + "/")}
    roof_std = steps * (t["mm gram"] + t["mm small"] + t["mm apply"])
    roof_gram = blocks * (t["mm gram"] + t["mm apply"]) + (4 * steps - 3 * blocks) * t["mm small"]
    rows[dname] = {
        "standard_s": t["standard"], "gram_s": t["gram"],
        "standard_min_s": tmin["standard"], "gram_min_s": tmin["gram"],
        "speedup": t["standard"] / t["gram"],
        "speedup_at_min": tmin["standard"] / tmin["gram"],
        "flop_ratio": f_std / f_gram,
        "roofline_standard_s": roof_std, "roofline_gram_s": roof_gram,
        "roofline_speedup": roof_std / roof_gram,
        "standard_frac_of_roofline": roof_std / t["standard"],
        "gram_frac_of_roofline": roof_gram / t["gram"],
        "gflops_standard": f_std / t["standard"] / 1e9,
        "gflops_gram_equiv": f_std / t["gram"] / 1e9,
        "matmul_s": {k: t[k] for k in ("mm gram", "mm small", "mm apply")},
        "auto_picks": gram_ns.choose_method("auto", m, n, table),
        "compile_and_first_call_s": {k: compile_s[f"{dname}/{k}"] for k in ("standard", "gram")},
        **acc[dname],
    }
  return {"shape": [m, n], "short_long": [short, long], "restarts": list(restarts),
          "flops_standard": f_std, "flops_gram": f_gram, "repeats": repeats,
          "calls_per_sample": inner, "timings": stats, "rows": rows}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="small shapes, few repeats")
  p.add_argument("--shapes", default=None, help="comma-separated MxN list (overrides the set)")
  p.add_argument("--schedule", default="jordan")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--allow-load", action="store_true",
                 help="run and write results even when the load average exceeds the cores")
  p.add_argument("--out", default=None, help="basename under benchmarks/results/ "
                 "(default gram_ns, or gram_ns_quick)")
  p.add_argument("--report-only", action="store_true",
                 help="measure nothing: rebuild results/OUT.md from results/OUT.json")
  args = p.parse_args(argv)
  out = args.out or ("gram_ns_quick" if args.quick else "gram_ns")
  if args.report_only:
    payload = json.loads((_common.RESULTS_DIR / f"{out}.json").read_text())
    _common.write_text(f"{out}.md", markdown(payload))
    return 0

  cores = _cores()
  load_before = _load()
  if load_before[0] > cores and not args.allow_load:
    print(f"load average {load_before} exceeds the {cores} cores: the timings would be "
          "noise. Wait for a quiet machine, or pass --allow-load.", file=sys.stderr)
    return 2
  if args.shapes:
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",")]
  else:
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
  budget_s, max_repeats, min_sample_s = (4.0, 5, 0.05) if args.quick else (40.0, 9, 0.2)
  info = _common.machine_info()
  command = "python benchmarks/gram_ns.py " + " ".join(argv if argv is not None else sys.argv[1:])
  t_start = time.perf_counter()
  results = []
  for m, n in shapes:
    t0 = time.perf_counter()
    r = bench_shape(m, n, args.schedule, args.steps, budget_s, max_repeats, min_sample_s)
    results.append(r)
    msg = "  ".join(f"{d}: std {v['standard_s'] * 1e3:.1f} ms gram {v['gram_s'] * 1e3:.1f} ms "
                    f"x{v['speedup']:.2f} (flops x{v['flop_ratio']:.2f}, roofline "
                    f"x{v['roofline_speedup']:.2f}) diff {v['rel_diff_gram_vs_standard']:.1e}"
                    for d, v in r["rows"].items())
    print(f"[{m}x{n}] repeats={r['repeats']} ({time.perf_counter() - t0:.0f}s, load "
          f"{_load()[0]:.2f}) {msg}", flush=True)
  load_after = _load()
  total = time.perf_counter() - t_start
  noisy = load_before[0] > cores or load_after[0] > 1.5 * cores  # own threads count at the end

  restarts = gram_ns.default_restarts(optax_muon.ns_coefficients(args.schedule, args.steps))
  payload = {"machine": info, "command": command, "schedule": args.schedule,
             "steps": args.steps, "restarts": list(restarts), "cores": cores,
             "loadavg_before": load_before, "loadavg_after": load_after,
             "load_above_cores": noisy, "total_wall_s": total, "results": results}
  md = markdown(payload)
  print(md)
  if noisy and not args.allow_load:
    print(f"NOT WRITTEN: the load average rose above the {cores} cores during the run "
          f"({load_before} -> {load_after}); rerun on a quiet machine or pass --allow-load.",
          file=sys.stderr)
    return 3
  _common.write_json(f"{out}.json", payload)
  _common.write_text(f"{out}.md", md)
  return 0



def markdown(payload: dict) -> str:
  """results/gram_ns.md from the results JSON."""
  results, schedule, steps = payload["results"], payload["schedule"], payload["steps"]
  restarts, cores, noisy = payload["restarts"], payload["cores"], payload["load_above_cores"]
  load_before = _common.as_tuple(payload["loadavg_before"])
  load_after = _common.as_tuple(payload["loadavg_after"])
  total = payload["total_wall_s"]
  headers = ["shape [m,n]", "dtype", "standard ms", "gram ms", "speedup", "speedup (min)",
             "flop ratio", "roofline ratio", "std/roofline", "gram/roofline", "auto",
             "diff gram vs std", "err vs UVᵀ std", "err vs UVᵀ gram", "err vs iter. std",
             "err vs iter. gram"]
  table_rows = []
  for r in results:
    for d, v in r["rows"].items():
      table_rows.append([
          f"{r['shape'][0]}×{r['shape'][1]}", d, v["standard_s"] * 1e3, v["gram_s"] * 1e3,
          v["speedup"], v["speedup_at_min"], v["flop_ratio"], v["roofline_speedup"],
          v["standard_frac_of_roofline"], v["gram_frac_of_roofline"], v["auto_picks"],
          v["rel_diff_gram_vs_standard"], v["rel_err_standard_vs_polar"],
          v["rel_err_gram_vs_polar"], v["rel_err_standard_vs_iteration"],
          v["rel_err_gram_vs_iteration"]])
  notes = [
      f"Schedule {schedule} × {steps} steps, frobenius normalization; gram restarts "
      f"{tuple(restarts)} (the default). Input: one Gaussian matrix per shape; `bf16` rows: "
      "float32 input, `compute_dtype=bfloat16`.",
      f"Load average before {load_before}, after {load_after}, on {cores} cores"
      + (" — ABOVE THE CORE COUNT: timings are noise (written with --allow-load)." if noisy
         else "."),
      "Medians of interleaved repeats; `speedup` = standard / gram. `flop ratio` = "
      "T(4m²n + 2m³) / (4rm²n + (8T − 6r)m³). `roofline ratio`: the same ratio with each "
      "product timed alone as a plain matmul; `std/roofline`, `gram/roofline`: the fraction "
      "of that plain-matmul speed each method reaches.",
      "Errors are relative Frobenius norms against the float64 SVD polar factor UVᵀ and the "
      "exact iteration U f(σ̂) Vᵀ.",
      f"Total wall time {total:.0f} s.",
  ]
  return (_common.md_header("Gram Newton–Schulz vs standard", payload["machine"],
                            payload["command"], notes) + "\n"
          + _common.md_table(headers, table_rows))


if __name__ == "__main__":
  sys.exit(main())
