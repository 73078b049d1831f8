"""Momentum-spectrum scaling across model sizes, and the NS recipe it implies.

    nice -n 5 python benchmarks/spectral_scaling.py              # d_model 64/96/128, 300 steps
    nice -n 5 python benchmarks/spectral_scaling.py --quick      # d_model 32/64, 60 steps (smoke)

Trains the built-in-corpus transformer (4 layers, 4 query / 2 KV heads,
d_ff = 3·d_model, batch 16 × 64 tokens, Muon with the default config's
learning rate and cosine schedule) at each size through the trainer's library
API with ``diagnostics.every`` set, reads ``metrics.jsonl``, averages each
layer group's (type × depth bucket) momentum-spectrum quantiles over the steps
after burn-in, fits ``σ_q ∝ M^(−α)`` (M = hidden-matrix parameters) per group,
and asks :func:`optax_muon.diagnostics.recommend_ns_schedule` for a per-layer
Newton–Schulz configuration at a larger target size (candidates from
``benchmarks/results/ns_variants.json`` if present, else the analytic table).

It also measures the train-step overhead of the diagnostics: the jitted train
step of the middle size, timed interleaved (off / every 10 / every 1), ten
steps per sample.

Writes ``benchmarks/results/spectral_scaling.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _common  # noqa: E402

QUANTS = ("sigma_q10", "sigma_q25", "sigma_q50", "sigma_q75", "sigma_q90")
EXTRA = ("frac_below", "descent_retained", "svd_entropy", "stable_rank", "weight_norm",
         "row_magnitude", "row_coherence", "ortho_error", "update_rms_ratio")


def run_config(d_model: int, steps: int, every: int, n_layers: int, method: str = "svd"):
  from train.configs import default
  c = default.get_config()
  c.train_steps = steps
  c.batch_size = 16
  c.seq_len = 64
  c.eval_every = steps
  c.eval_steps = 2
  c.checkpoint_every = steps
  c.log_every = every
  c.model.preset = "tiny"
  c.model.d_model = d_model
  c.model.n_layers = n_layers
  c.model.n_heads = 4
  c.model.n_kv_heads = 2
  c.model.d_ff = 3 * d_model
  c.optimizer.warmup_steps = max(steps // 10, 1)
  c.diagnostics.every = every
  c.diagnostics.method = method
  return c


def hidden_params(d_model: int, n_layers: int, n_heads: int = 4, n_kv: int = 2) -> int:
  """Hidden-matrix parameters: q, k, v, o and the three SwiGLU matrices per layer."""
  hd = d_model // n_heads
  attn = 2 * d_model * n_heads * hd + 2 * d_model * n_kv * hd
  return n_layers * (attn + 3 * d_model * 3 * d_model)


def train_one(d_model: int, steps: int, every: int, n_layers: int, root: str,
              method: str, reuse: bool = False) -> tuple:
  from train import trainer
  from train.metrics import read_rows
  workdir = os.path.join(root, f"d{d_model}")
  metrics = os.path.join(workdir, "metrics.jsonl")
  if reuse and os.path.exists(metrics):
    rows = read_rows(metrics)
    done = [r for r in rows if r["step"] == steps and "eval_loss" in r]
    if done:
      return rows, float("nan"), done[-1]
  shutil.rmtree(workdir, ignore_errors=True)
  t0 = time.perf_counter()
  last = trainer.train_and_evaluate(run_config(d_model, steps, every, n_layers, method), workdir)
  return read_rows(os.path.join(workdir, "metrics.jsonl")), time.perf_counter() - t0, last


def _previous_seconds(name: str, d_model: int) -> float:
  path = os.path.join(_common.RESULTS_DIR, name + ".json")
  try:
    with open(path) as f:
      for r in json.load(f)["runs"]:
        if r["d_model"] == d_model:
          return float(r["train_seconds"])
  except (OSError, ValueError, KeyError):
    pass
  return float("nan")


def stabilized(rows: list[dict], burn_in: int) -> dict[str, dict[str, float]]:
  """``{group: {stat: mean over diagnostic rows after burn_in}}``."""
  acc: dict = {}
  for r in rows:
    if r["step"] <= burn_in:
      continue
    for k, v in r.items():
      if k.startswith("spec/") and k.count("/") == 3:
        _, typ, dep, stat = k.split("/")
        acc.setdefault(f"{typ}/{dep}", {}).setdefault(stat, []).append(v)
  return {g: {s: float(np.mean(v)) for s, v in st.items()} for g, st in sorted(acc.items())}


def measure_overhead(d_model: int, n_layers: int, repeats: int, inner: int = 10) -> dict:
  """Median train-step seconds, diagnostics off / every 10 (svd, gram) / every 1 (interleaved)."""
  import jax
  import jax.numpy as jnp
  from train import spectral_metrics as train_diag
  from train import mesh as mesh_lib
  from train import optimizer as optimizer_lib
  from train import trainer
  from train.state import init_state
  from train.step import jit_steps
  import models

  variants = {"off": (0, "svd"), "every_10_svd": (10, "svd"), "every_10_gram": (10, "gram"),
              "every_1_gram": (1, "gram")}
  fns, states = {}, {}
  c0 = run_config(d_model, 1000, 0, n_layers)
  model_cfg = trainer.model_config(c0.model)
  mesh = mesh_lib.make_mesh(c0.mesh)
  batch_sharding = models.sharding.batch_sharding(mesh)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 256, size=(c0.batch_size, c0.seq_len + 1), dtype=np.int32)
  batch = jax.device_put({"tokens": jnp.asarray(tokens),
                          "mask": jnp.ones(tokens.shape, jnp.float32)}, batch_sharding)
  for name, (every, method) in variants.items():
    c = run_config(d_model, 1000, every, n_layers, method)
    tx, qk = optimizer_lib.make_optimizer(c.optimizer, model_cfg, c.train_steps,
                                          train_diag.optimizer_config(c))
    graphdef, state, shardings = init_state(model_cfg, tx, mesh, c.seed)
    train_fn, _ = jit_steps(graphdef, tx, qk, shardings, batch_sharding)
    fns[name] = train_fn
    for _ in range(2 * inner):  # compile + warm up, crossing a diagnostic step
      state, _ = train_fn(state, batch)
    states[name] = jax.block_until_ready(state)
  samples = {k: [] for k in variants}
  for _ in range(repeats):
    for k in variants:
      st = states[k]
      t0 = time.perf_counter()
      for _ in range(inner):
        st, m = fns[k](st, batch)
      jax.block_until_ready(m)
      samples[k].append((time.perf_counter() - t0) / inner)
      states[k] = st
  med = {k: statistics.median(v) for k, v in samples.items()}
  return {"d_model": d_model, "n_layers": n_layers, "steps_per_sample": inner,
          "repeats": repeats,
          "median_step_s": med, "min_step_s": {k: min(v) for k, v in samples.items()},
          "ratio_vs_off": {k: med[k] / med["off"] for k in med}}


def plot(path, sizes, per_size, fits, target_size, recipe, stat="sigma_q50"):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  types = ["q", "k", "v", "o", "gate", "up", "down"]
  fig, axes = plt.subplots(2, 4, figsize=(18, 8.5), sharey=True)
  xs = np.geomspace(min(sizes), target_size, 50)
  for ax, typ in zip(axes.ravel(), types):
    groups = sorted(g for g in fits if g.startswith(typ + "/"))
    cmap = plt.get_cmap("viridis", max(len(groups), 2))
    for i, g in enumerate(groups):
      ys = [per_size[s].get(g, {}).get(stat, np.nan) for s in sizes]
      f = fits[g]
      ax.loglog(sizes, ys, "o", color=cmap(i))
      ax.loglog(xs, f.prefactor * xs ** (-f.alpha), "-", color=cmap(i),
                label=f"{g}: α={f.alpha:.2f}")
      thr = recipe.groups[g]["threshold"]
      ax.axhline(thr, color=cmap(i), ls=":", lw=0.8)
    ax.axvline(target_size, color="gray", ls="--", lw=0.8)
    ax.set_title(f"{typ}: median σ/‖M‖_F vs hidden params")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
  axes.ravel()[-1].axis("off")
  axes.ravel()[-1].text(0.02, 0.5, "dots: measured (stabilized)\nlines: fit σ = A·M^(−α)\n"
                        "dotted: failure threshold (f=0.5)\nof the recommended NS\n"
                        "dashed: target size", fontsize=10, va="center")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--sizes", default="64,96,128", help="d_model values")
  ap.add_argument("--steps", type=int, default=300)
  ap.add_argument("--every", type=int, default=25)
  ap.add_argument("--burn_in", type=float, default=0.5, help="fraction of steps skipped")
  ap.add_argument("--n_layers", type=int, default=4)
  ap.add_argument("--target_d_model", type=int, default=1024)
  ap.add_argument("--overhead_repeats", type=int, default=5)
  ap.add_argument("--method", default="gram", choices=("svd", "gram"),
                  help="singular values of the training runs' probes (gram: fast on CPU)")
  ap.add_argument("--reuse", action="store_true",
                  help="reuse finished runs found under --root (same steps)")
  ap.add_argument("--reuse_overhead", action="store_true",
                  help="keep the overhead numbers of the existing result file")
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--root", default="/tmp/spectral_scaling")
  ap.add_argument("--name", default="spectral_scaling")
  ap.add_argument("--report-only", action="store_true",
                  help="train nothing: rebuild results/NAME.md from results/NAME.json")
  args = ap.parse_args(argv)
  if args.report_only:
    payload = json.loads((_common.RESULTS_DIR / f"{args.name}.json").read_text())
    _common.write_text(args.name + ".md", markdown(payload, payload["machine"]))
    return
  if args.quick:
    args.sizes, args.steps, args.every, args.overhead_repeats = "32,64", 60, 10, 2
    args.name = args.name + "_quick"
  import absl.logging
  absl.logging.set_verbosity(absl.logging.WARNING)
  from optax_muon import diagnostics as omd

  info = _common.machine_info()
  dims = [int(s) for s in args.sizes.split(",")]
  sizes = [hidden_params(d, args.n_layers) for d in dims]
  target = hidden_params(args.target_d_model, args.n_layers)
  per_size, runs = {}, []
  for d, m in zip(dims, sizes):
    rows, secs, last = train_one(d, args.steps, args.every, args.n_layers, args.root,
                                 args.method, args.reuse)
    per_size[m] = stabilized(rows, int(args.burn_in * args.steps))
    if not np.isfinite(secs):  # reused: keep the time of the run that produced it
      secs = _previous_seconds(args.name, d)
    runs.append({"d_model": d, "hidden_params": m, "train_seconds": secs,
                 "final_eval_loss": last.get("eval_loss"), "workdir": f"{args.root}/d{d}"})
    print(f"d_model={d}: {secs:.0f}s, eval loss {last.get('eval_loss')}", flush=True)
  groups = sorted(set.intersection(*[set(v) for v in per_size.values()]))
  fits = {}
  for stat in QUANTS:
    fits[stat] = omd.fit_spectral_power_law(
        sizes, {g: [per_size[m][g][stat] for m in sizes] for g in groups})
  medians = {g: [per_size[m][g]["sigma_q50"] for m in sizes] for g in groups}
  cand_path = os.path.join(_common.RESULTS_DIR, "ns_variants.json")
  candidates = None  # the analytic table unless the variant benchmark's rows are there
  if os.path.exists(cand_path):
    with open(cand_path) as f:
      candidates = omd.candidates_from_rows(json.load(f)["rows"])
  recipe = omd.recommend_ns_schedule(sizes, medians, target, n_layers=args.n_layers,
                                     candidates=candidates)
  old = os.path.join(_common.RESULTS_DIR, args.name + ".json")
  if args.reuse_overhead and os.path.exists(old):
    with open(old) as f:
      overhead = json.load(f)["overhead"]
  else:
    overhead = measure_overhead(dims[len(dims) // 2], args.n_layers, args.overhead_repeats)
  print("overhead:", json.dumps(overhead["ratio_vs_off"]), flush=True)

  payload = {
      "machine": info,
      "command": "nice -n 5 python benchmarks/spectral_scaling.py" + (" --quick" if args.quick
                                                                       else ""),
      "setup": {"d_models": dims, "hidden_params": sizes, "steps": args.steps,
                "diagnostics_every": args.every, "method": args.method, "burn_in_steps": int(args.burn_in * args.steps),
                "n_layers": args.n_layers, "batch": 16, "seq_len": 64, "optimizer": "muon",
                "target_d_model": args.target_d_model, "target_hidden_params": target,
                "candidates": "ns_variants.json" if candidates else "analytic"},
      "runs": runs,
      "stabilized": {str(m): per_size[m] for m in sizes},
      "exponents": {stat: {g: f._asdict() for g, f in fits[stat].items()} for stat in QUANTS},
      "recipe": {"ns_schedule": recipe.ns_schedule, "ns_steps": recipe.ns_steps,
                 "normalization": recipe.normalization, "groups": recipe.groups},
      "overhead": overhead,
  }
  _common.write_json(args.name + ".json", payload)
  png = os.path.join(_common.RESULTS_DIR, args.name + ".png")
  plot(png, sizes, per_size, fits["sigma_q50"], target, recipe)
  _common.write_text(args.name + ".md", markdown(payload, info))
  print(f"wrote {args.name}.json/.md/.png")


def markdown(p: dict, info: dict) -> str:
  s = p["setup"]
  lines = [_common.md_header(
      "Momentum-spectrum scaling and the layer-aware NS recipe", info, p["command"],
      [f"Model: {s['n_layers']} layers, d_model {s['d_models']} (hidden params "
       f"{s['hidden_params']}), batch {s['batch']}×{s['seq_len']} tokens, {s['steps']} steps "
       f"of {s['optimizer']}; diagnostics every {s['diagnostics_every']} steps "
       f"(singular values by {s['method']}); stabilized "
       f"= mean over steps > {s['burn_in_steps']}.",
       f"Target: d_model {s['target_d_model']} ({s['target_hidden_params']} hidden params); "
       f"candidates: {s['candidates']}."]), ""]
  lines += ["## Runs", "", "| d_model | hidden params | seconds | final eval loss |",
            "|---|---|---|---|"]
  for r in p["runs"]:
    lines.append(f"| {r['d_model']} | {r['hidden_params']} | {r['train_seconds']:.0f} | "
                 f"{r['final_eval_loss']:.4f} |")
  sizes = [str(m) for m in s["hidden_params"]]
  lines += ["", "## Exponents α of σ_q ∝ M^(−α) and the recommendation", "",
            "| group | " + " | ".join(f"median σ @ {m}" for m in sizes) +
            " | α(q25) | α(q50) | α(q75) | r²(q50) | predicted median @ target | NS | "
            "threshold f=0.5 |",
            "|---|" + "---|" * (len(sizes) + 7)]
  ex = p["exponents"]
  for g, d in p["recipe"]["groups"].items():
    meds = " | ".join(f"{p['stabilized'][m][g]['sigma_q50']:.2e}" for m in sizes)
    lines.append(f"| {g} | {meds} | {ex['sigma_q25'][g]['alpha']:.2f} | "
                 f"{ex['sigma_q50'][g]['alpha']:.2f} | {ex['sigma_q75'][g]['alpha']:.2f} | "
                 f"{ex['sigma_q50'][g]['r2']:.2f} | {d['predicted_median']:.2e} | "
                 f"{d['schedule']}×{d['steps']}{'' if d['ok'] else ' (none qualifies)'} | "
                 f"{d['threshold']:.2e} |")
  lines += ["", "Per-leaf configuration (pass as `optax_muon.muon(lr, ns_schedule=..., "
            "ns_steps=...)`):", "", "```", "ns_schedule = " +
            json.dumps(p["recipe"]["ns_schedule"], indent=1), "ns_steps = " +
            json.dumps(p["recipe"]["ns_steps"], indent=1), "```", ""]
  o = p["overhead"]
  lines += ["## Diagnostics overhead", "",
            f"d_model {o['d_model']}, {o['n_layers']} layers; median train-step seconds over "
            f"{o['repeats']} interleaved samples of {o['steps_per_sample']} steps:", "",
            "| variant | median step s | min step s | ratio vs off |", "|---|---|---|---|"]
  for k in o["median_step_s"]:
    lines.append(f"| {k} | {o['median_step_s'][k]:.4f} | {o['min_step_s'][k]:.4f} | "
                 f"{o['ratio_vs_off'][k]:.3f} |")
  lines += ["", "Other stabilized statistics per group (largest size):", "",
            "| group | " + " | ".join(EXTRA) + " |", "|---|" + "---|" * len(EXTRA)]
  big = p["stabilized"][sizes[-1]]
  for g in sorted(big):
    lines.append(f"| {g} | " + " | ".join(f"{big[g].get(k, float('nan')):.3g}" for k in EXTRA)
                 + " |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
