"""Optimizer quality on the built-in corpus: AdamW, Muon, Muon++ and Muown.

    python benchmarks/quality.py                  # sizes A (300 steps) and B (120 steps), ~1.5 h
    python benchmarks/quality.py --sizes A        # one size
    python benchmarks/quality.py --quick          # smoke test: size A, 50 steps, 1 lr, 1 seed
    python benchmarks/quality.py --report-only    # rebuild the report from cached runs

Every run trains the repo's NNX transformer with the trainer's library API
(``train.trainer.train_and_evaluate``) on the stdlib-source byte corpus, batch
16 x 128 tokens, cosine schedule with warmup, eval on a fixed 8-batch eval set
every 25 steps. Protocol (ordered so that a cut-short run still has the essentials):

1. size A: learning-rate sweep per optimizer (4-6 values, extended until the best is
   bracketed; seed 0), then drift runs
   without weight decay (Muon and Muown at their best lr, ``weight_decay=0``);
2. size B (fewer steps: the CPU budget): each optimizer at size A's best lr and the
   grid value just below it (two below for AdamW, whose lr does not transfer across
   width), seed 0, and the same drift runs;
3. every size: the best lr again with seed 1.

Every run logs the spectral norm ``‖W‖₂`` (exact, numpy SVD) of each hidden
matrix every 25 steps (max and mean over matrices) through the trainer's
diagnostics hook.

Time: the trainer's clock is reported, but on a shared machine it mostly measures the
load during each run, so the time columns and the loss-vs-time plot use modelled time =
steps x the optimizer's step time (forward+backward + update) timed interleaved on the
same model by ``trainer_throughput.py``; produce those files first:

    python benchmarks/trainer_throughput.py --preset tiny \\
        --model d_model=64,n_layers=2,d_ff=192 --out trainer_throughput_sizeA
    python benchmarks/trainer_throughput.py --preset tiny --out trainer_throughput_sizeB

Reported: best final eval loss per optimizer (mean over 2 seeds at the best
lr), the steps (and seconds) each needs to reach AdamW's best-tuned final eval
loss as a fraction of AdamW's, plots of eval loss vs steps and vs time, and the
spectral-norm drift. Finished runs are cached in ``results/quality.runs.json``;
a rerun only fills gaps (delete an entry to redo it).

Muon++'s lr is in spectral units (``‖ΔW‖₂ = lr·sqrt(fan_out/fan_in)``), and
the alias uses the same lr for its AdamW leaves (embeddings, head, norms); here
those leaves get the schedule scaled to a peak of ``MPP_ADAM_LR`` instead, so
that the sweep moves only the matrix step.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import _common  # noqa: E402

OPTS = ("adamw", "muon", "muon_plus_plus", "muown")
LABEL = {"adamw": "AdamW", "muon": "Muon", "muon_plus_plus": "Muon++", "muown": "Muown"}
LRS = {
    "adamw": (1e-3, 3e-3, 1e-2, 3e-2, 6e-2),
    "muon": (3e-3, 6e-3, 1.2e-2, 2.4e-2, 4.8e-2, 9.6e-2),
    "muown": (6e-3, 1.2e-2, 2.4e-2, 4.8e-2, 9.6e-2),
    # Spectral units: Muon at lr 4.8e-2 on a square d=64 matrix steps 0.2*sqrt(64)*4.8e-2 = 0.077.
    "muon_plus_plus": (2e-2, 4e-2, 8e-2, 1.6e-1),
}
MPP_ADAM_LR = 1.2e-2
SIZES = {
    "A": {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_ff": 192},
    "B": {"d_model": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2, "d_ff": 384},
}
EVERY = 25
CACHE = "quality.runs.json"
WORK_ROOT = os.path.join(os.environ.get("TMPDIR", "/tmp"), "optax_muon_quality")

_mpp_adam_ratio = 1.0  # MPP_ADAM_LR / peak lr of the current Muon++ run.


def _patch_trainer():
  """Muon++ AdamW-leaf lr override and the spectral-norm diagnostics hook."""
  import optax_muon as om
  from train import labels
  from train.labels import HIDDEN_KINDS as HIDDEN_MATRICES
  from train import diagnostics
  from train import optimizer as optimizer_lib

  base = optimizer_lib._base

  def _base(name, lr, weight_decay, *args, **kwargs):
    if name != "muon_plus_plus":
      return base(name, lr, weight_decay, *args, **kwargs)
    ratio = _mpp_adam_ratio
    return om.muon_plus_plus(lr, weight_decay=weight_decay,
                             adam_learning_rate=lambda t: lr(t) * ratio,
                             dimension_numbers=labels.dimension_numbers)

  optimizer_lib._base = _base
  # Our own spectral norms only: no optimizer probes (they would change the timed step).
  diagnostics.optimizer_config = lambda config: None

  def compute(state, *args, **kwargs):
    del args, kwargs
    out = {}
    norms, rows = [], []
    for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(state.params)):
      names = [str(getattr(k, "key", k)) for k in path]
      if len(names) >= 2 and names[-1] == "kernel" and names[-2] in HIDDEN_MATRICES:
        w = np.asarray(x, np.float64).reshape(-1, *x.shape[-2:])
        norms += [float(np.linalg.norm(m, 2)) for m in w]
        rows += [float(np.linalg.norm(m, axis=0).max()) for m in w]  # per output neuron
    out.update({"spec_max": max(norms), "spec_mean": float(np.mean(norms)),
                "neuron_norm_max": max(rows)})
    return out

  diagnostics.compute = compute


class _NoBar:
  """Stands in for the trainer's tqdm bar (no progress output in the log)."""

  n = 0
  format_dict = {"rate": None}

  def __init__(self, *a, **k):
    del a, k

  def __getattr__(self, name):
    return lambda *a, **k: None


def _step_times(size):
  """{opt: fwd+bwd + update seconds} from results/trainer_throughput_size<S>.json, or None."""
  path = _common.RESULTS_DIR / f"trainer_throughput_size{size}.json"
  if not path.exists():
    return None
  res = json.loads(path.read_text())["results"]
  return {o: r["fwd_bwd_s"] + r["update_s"] for o, r in res.items()}


def run_key(size, opt, lr, seed, wd):
  return f"{size}/{opt}/lr{lr:g}/s{seed}/wd{wd:g}"


def make_config(size, opt, lr, seed, wd, steps):
  from train.configs import default

  c = default.get_config()
  c.seed = seed
  c.train_steps = steps
  c.batch_size, c.seq_len = 16, 128
  c.eval_every = c.log_every = c.diagnostics.every = EVERY
  c.eval_steps = 8
  c.checkpoint_every = 100
  c.max_checkpoints = 1
  c.model.preset = "tiny"
  for k, v in SIZES[size].items():
    c.model[k] = v
  c.optimizer.name = opt
  c.optimizer.learning_rate = lr
  c.optimizer.weight_decay = wd
  c.optimizer.warmup_steps = max(steps // 10, 1)
  return c


class Cache:
  """Finished runs, keyed by `run_key`, in one JSON file under results/."""

  def __init__(self, path):
    self.path = path
    self.runs = json.load(open(path)) if os.path.exists(path) else {}

  def save(self):
    """Merges into what is on disk (another process may have added runs), then writes."""
    on_disk = json.load(open(self.path)) if os.path.exists(self.path) else {}
    self.runs = {**on_disk, **self.runs}
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(self.runs, f)
    os.replace(tmp, self.path)


def train_one(cache, size, opt, lr, seed, wd, steps):
  """Trains one run unless cached; returns its record."""
  global _mpp_adam_ratio
  key = run_key(size, opt, lr, seed, wd)
  rec = cache.runs.get(key)
  if rec is not None and rec["steps"] == steps:
    return rec
  from train import trainer
  from train.metrics import read_rows

  workdir = os.path.join(WORK_ROOT, f"{steps}", key.replace("/", "_"))
  _mpp_adam_ratio = MPP_ADAM_LR / lr
  t0 = time.perf_counter()
  print(f"[quality] {key} ({steps} steps) ...", flush=True)
  diverged = False
  try:
    last = trainer.train_and_evaluate(make_config(size, opt, lr, seed, wd, steps), workdir)
  except FloatingPointError as e:  # diverged: record it, do not retry forever
    print(f"[quality] {key} diverged: {e}", flush=True)
    diverged = True
  else:
    if last.get("step", 0) < steps:  # SIGTERM: the trainer checkpointed; resume next time
      raise SystemExit(f"[quality] {key} stopped at step {last.get('step')}; rerun to resume")
  rows = read_rows(os.path.join(workdir, "metrics.jsonl"))
  rec = {"size": size, "opt": opt, "lr": lr, "seed": seed, "wd": wd, "steps": steps,
         "total_s": time.perf_counter() - t0, "rows": rows,
         "diverged": diverged}
  cache.runs[key] = rec
  cache.save()
  shutil.rmtree(workdir, ignore_errors=True)
  last = [r for r in rows if "eval_loss" in r]
  print(f"[quality] {key}: final eval {last[-1]['eval_loss'] if last else float('nan'):.4f} "
        f"in {rec['total_s']:.0f}s", flush=True)
  return rec


def curves(rec):
  """(steps, eval losses, cumulative train seconds, spec_max, spec_mean) at eval rows."""
  tokens = 16 * 128
  t, prev, out = 0.0, 0, []
  for r in rec["rows"]:
    t += tokens * (r["step"] - prev) / max(r["tokens_per_sec"], 1e-9)
    prev = r["step"]
    if "eval_loss" in r:
      out.append((r["step"], r["eval_loss"], t, r.get("spec_max", math.nan),
                  r.get("spec_mean", math.nan), r.get("neuron_norm_max", math.nan)))
  return [np.array(c) for c in zip(*out)] if out else [np.array([])] * 6


def final_eval(rec):
  ev = [r["eval_loss"] for r in rec["rows"] if "eval_loss" in r]
  return ev[-1] if ev and not rec["diverged"] else math.inf


def first_reach(x, y, target):
  """First x where the piecewise-linear curve y(x) reaches <= target (nan if never)."""
  for i in range(len(y)):
    if y[i] <= target:
      if i == 0:
        return float(x[0])
      f = (y[i - 1] - target) / (y[i - 1] - y[i])
      return float(x[i - 1] + f * (x[i] - x[i - 1]))
  return math.nan


def best_lr(cache, size, opt, steps):
  cands = [(final_eval(r), r["lr"]) for r in cache.runs.values()
           if r["size"] == size and r["opt"] == opt and r["seed"] == 0 and r["steps"] == steps
           and r["wd"] == 0.1]
  return min(cands)[1] if cands else None


def seed_runs(cache, size, opt, lr, steps, wd=0.1):
  return [r for r in cache.runs.values() if r["size"] == size and r["opt"] == opt
          and r["lr"] == lr and r["steps"] == steps and r["wd"] == wd]


def mean_curve(recs):
  cs = [curves(r) for r in recs if not r["diverged"]]
  if not cs:
    return None
  n = min(len(c[0]) for c in cs)
  return [np.mean([c[i][:n] for c in cs], axis=0) for i in range(6)]


def run_all(cache, sizes, steps_of, quick):
  """Sweep + drift runs of the first size, the others at its best lrs, then second seeds."""
  lrs = {k: v[1:2] for k, v in LRS.items()} if quick else LRS
  first = sizes[0]
  for size in sizes:
    steps = steps_of[size]
    for opt in ("adamw", "muon", "muown", "muon_plus_plus"):
      if size == first:
        for lr in lrs[opt]:
          train_one(cache, size, opt, lr, 0, 0.1, steps)
      else:  # the first size's best lr and the grid values just below it (2 for AdamW)
        grid = sorted(lrs[opt])
        i = grid.index(best_lr(cache, first, opt, steps_of[first]))
        for lr in grid[max(i - (2 if opt == "adamw" else 1), 0):i + 1][::-1]:
          train_one(cache, size, opt, lr, 0, 0.1, steps)
    for opt in ("muon", "muown"):
      train_one(cache, size, opt, best_lr(cache, size, opt, steps), 0, 0.0, steps)
  if not quick:
    for size in sizes:
      for opt in OPTS:
        train_one(cache, size, opt, best_lr(cache, size, opt, steps_of[size]), 1, 0.1,
                  steps_of[size])


def report(cache, sizes, steps_of, command, info):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  out = {"machine": info, "steps": steps_of, "sizes": {s: SIZES[s] for s in sizes}, "lrs": LRS,
         "mpp_adam_lr": MPP_ADAM_LR, "batch": [16, 128], "eval_every": EVERY, "results": {}}
  md_rows, sweep_rows, drift_rows = [], [], []
  fig, axes = plt.subplots(2, len(sizes), figsize=(6 * len(sizes), 8), squeeze=False)
  fig2, axes2 = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4), squeeze=False)
  for j, size in enumerate(sizes):
    res = out["results"][size] = {}
    steps = steps_of[size]
    best = {o: best_lr(cache, size, o, steps) for o in OPTS}
    mc = {o: mean_curve(seed_runs(cache, size, o, best[o], steps)) for o in OPTS if best[o]}
    if "adamw" not in mc or mc["adamw"] is None:
      continue
    a_steps, a_loss, a_time = mc["adamw"][:3]
    target = float(a_loss[-1])
    tstep = _step_times(size)
    if tstep and all(o in tstep for o in mc):  # modelled time: steps x interleaved step time
      for o, c in mc.items():
        if c is not None:
          c.append(c[0] * tstep[o])
    else:
      for c in mc.values():
        if c is not None:
          c.append(c[2])
    res["step_time_model_s"] = tstep
    a_mtime = mc["adamw"][6]
    t_common = min(float(c[6][-1]) for c in mc.values() if c is not None)
    res["common_time_s"] = t_common
    for o in OPTS:
      if mc.get(o) is None:
        continue
      st, lo, tm = mc[o][:3]
      mt = mc[o][6]
      seeds = [final_eval(r) for r in seed_runs(cache, size, o, best[o], steps)]
      s_reach, t_reach = first_reach(st, lo, target), first_reach(tm, lo, target)
      m_reach = first_reach(mt, lo, target)
      # Equal wall clock: eval loss at the shortest total (modelled) time among the optimizers.
      at_time = float(np.interp(t_common, mt, lo))
      res[o] = {"best_lr": best[o], "final_eval_seeds": seeds,
                "final_eval_mean": float(np.mean(seeds)),
                "steps_to_adamw": s_reach, "steps_ratio": s_reach / a_steps[-1],
                "clock_time_ratio": t_reach / a_time[-1],
                "model_time_ratio": m_reach / a_mtime[-1],
                "train_time_s": float(tm[-1]), "eval_at_common_time": at_time,
                "curve": {"step": st.tolist(), "eval_loss": lo.tolist(), "time_s": tm.tolist()}}
      md_rows.append([size, LABEL[o], f"{best[o]:g}",
                      " / ".join(f"{s:.4f}" for s in seeds), float(np.mean(seeds)),
                      f"{s_reach / a_steps[-1]:.2f}" if s_reach == s_reach else "not reached",
                      f"{m_reach / a_mtime[-1]:.2f}" if m_reach == m_reach else "not reached",
                      f"{t_reach / a_time[-1]:.2f}" if t_reach == t_reach else "not reached",
                      float(mt[-1]), float(tm[-1]), at_time])
      axes[0][j].plot(st, lo, "o-", ms=3, label=f"{LABEL[o]} lr {best[o]:g}")
      axes[1][j].plot(mt, lo, "o-", ms=3, label=f"{LABEL[o]} lr {best[o]:g}")
    for o in OPTS:
      for r in sorted((r for r in cache.runs.values() if r["size"] == size and r["opt"] == o
                       and r["seed"] == 0 and r["wd"] == 0.1 and r["steps"] == steps),
                      key=lambda r: r["lr"]):
        sweep_rows.append([size, LABEL[o], f"{r['lr']:g}", final_eval(r)])
    res["sweep"] = {f"{r[1]}/{r[2]}": r[3] for r in sweep_rows if r[0] == size}
    drift = res["spectral_norm"] = {}
    variants = [("muon", 0.0, "Muon, wd 0"), ("muon", 0.1, "Muon, wd 0.1"),
                ("muown", 0.0, "Muown, wd 0"), ("muown", 0.1, "Muown, wd 0.1"),
                ("muon_plus_plus", 0.1, "Muon++ (adaptive)")]
    # The lr of the no-decay run if there is one (so wd 0 and 0.1 compare at equal lr).
    lr_of = {}
    for o in OPTS:
      no_wd = [r["lr"] for r in cache.runs.values() if r["size"] == size and r["opt"] == o
               and r["wd"] == 0.0 and r["seed"] == 0 and r["steps"] == steps]
      lr_of[o] = best.get(o) if not no_wd or best.get(o) in no_wd else no_wd[0]
    for o, wd, name in variants:
      recs = [r for r in seed_runs(cache, size, o, lr_of[o], steps, wd) if r["seed"] == 0]
      if not recs:
        continue
      st, _, _, smax, smean, nmax = curves(recs[0])
      keep = np.isfinite(smax)  # the last step may fall between diagnostics steps
      st, smax, smean, nmax = st[keep], smax[keep], smean[keep], nmax[keep]
      drift[name] = {"lr": lr_of[o], "step": st.tolist(), "spec_max": smax.tolist(),
                     "spec_mean": smean.tolist(), "neuron_norm_max": nmax.tolist()}
      drift_rows.append([size, name, f"{lr_of[o]:g}", float(smax[0]), int(st[-1]),
                         float(smax[-1]),
                         float(smean[-1]), float(nmax[-1]), final_eval(recs[0])])
      axes2[0][j].plot(st, smax, "o-", ms=3, label=name)
    axes[0][j].axhline(target, color="gray", ls=":", lw=1)
    axes[1][j].axhline(target, color="gray", ls=":", lw=1)
    d = SIZES[size]
    title = f"size {size}: d_model {d['d_model']}, {d['n_layers']} layers"
    xt = "modelled train time (s)" if tstep else "train time, trainer clock (s)"
    for ax, xl in ((axes[0][j], "step"), (axes[1][j], xt)):
      ax.set_title(title)
      ax.set_xlabel(xl)
      ax.set_ylabel("eval loss (nats/byte)")
      ax.set_ylim(top=min(ax.get_ylim()[1], target + 1.0))
      ax.grid(alpha=0.3)
      ax.legend(fontsize=8)
    axes2[0][j].set_title(title)
    axes2[0][j].set_xlabel("step")
    axes2[0][j].set_ylabel("max over hidden matrices of ‖W‖₂")
    axes2[0][j].grid(alpha=0.3)
    axes2[0][j].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(_common.RESULTS_DIR / "quality.loss.png", dpi=110)
  fig2.tight_layout()
  fig2.savefig(_common.RESULTS_DIR / "quality.spectral_norm.png", dpi=110)
  plt.close("all")
  _common.write_json("quality.json", out)

  notes = [f"steps per size {steps_of}, batch 16 x 128 bytes, cosine schedule (warmup 10%, "
           f"final lr 0.1x), grad clip 1, weight decay 0.1, eval every {EVERY} steps on 8 "
           "fixed eval batches; model sizes: " + "; ".join(
               f"{s} = d_model {SIZES[s]['d_model']}, {SIZES[s]['n_layers']} layers, "
               f"d_ff {SIZES[s]['d_ff']}" for s in sizes),
           "lr grids: " + "; ".join(f"{LABEL[o]} {list(LRS[o])}" for o in OPTS)
           + f" (Muon++ in spectral units; its AdamW leaves at peak {MPP_ADAM_LR:g})",
           "Train time is the trainer's step clock (compile and eval excluded) on a shared "
           "2-core machine (other jobs running): treat time ratios as rough."]
  text = _common.md_header("Optimizer quality on the stdlib byte corpus", info, command, notes)
  text += ("\n## Best eval loss and steps to AdamW's final eval loss\n\n"
           "Mean of 2 seeds at each optimizer's best lr (seed-0 sweep). `steps ratio` = first "
           "step (linear interpolation between evals) at which the mean eval curve reaches "
           "tuned AdamW's final eval loss, divided by AdamW's steps. `time ratio` the same in "
           "modelled train time = steps x that optimizer's step time (forward+backward + "
           "update, timed interleaved on this model by `trainer_throughput.py`, results in "
           "`trainer_throughput_size<S>.md`), because the trainer's own clock (`clock` "
           "columns) mixes in whatever else loaded the shared machine during each run "
           "(load average 2-17 here); `eval @ equal time` = eval loss (interpolated) at the "
           "shortest total modelled time among the optimizers of that size (equal wall "
           "clock).\n\n")
  text += _common.md_table(["size", "optimizer", "best lr", "final eval (seeds)", "mean",
                            "steps ratio", "time ratio", "clock time ratio", "time s",
                            "clock s", "eval @ equal time"],
                           md_rows)
  text += "\n![eval loss vs steps and time](quality.loss.png)\n"
  text += "\n## Learning-rate sweep (seed 0, final eval loss)\n\n"
  text += _common.md_table(["size", "optimizer", "lr", "final eval"], sweep_rows)
  text += ("\n## Weight spectral norm (max over hidden matrices of ‖W‖₂, exact SVD)\n\n"
           "Seed 0 at each optimizer's best lr (or the lr of its no-decay run), at the first "
           "and the last logged step (every 25); `neuron max` = largest per-output-neuron "
           "norm (Muown's magnitude factor).\n\n")
  text += _common.md_table(["size", "run", "lr", "‖W‖₂ max @ step 25", "last step", "‖W‖₂ max",
                            "‖W‖₂ mean", "neuron max", "final eval"], drift_rows)
  text += "\n![spectral norm](quality.spectral_norm.png)\n"
  text += "\n## Issue goals, checked on these runs\n\n" + "\n".join(_goals(out)) + "\n"
  _common.write_text("quality.md", text)
  return out


def _goals(out):
  """One line per goal of the issue: met / not met, per size."""
  lines = []
  for size, res in out["results"].items():
    mu, mw = res.get("muon"), res.get("muown")
    if mu:
      r = mu["steps_ratio"]
      ok = r == r and r <= 0.7
      lines.append(f"- size {size}: Muon reaches tuned AdamW's final eval loss in "
                   f"{r:.2f}x the steps (goal <= 0.7): {'met' if ok else 'NOT met'}.")
    if mu and mw:
      ok = mw["final_eval_mean"] <= mu["final_eval_mean"]
      lines.append(f"- size {size}: Muown best eval {mw['final_eval_mean']:.4f} vs Muon "
                   f"{mu['final_eval_mean']:.4f} (goal Muown <= Muon): "
                   f"{'met' if ok else 'NOT met'}.")
    sn = res.get("spectral_norm", {})
    if "Muon, wd 0" in sn:
      m0 = sn["Muon, wd 0"]["spec_max"]
      parts = [f"Muon wd 0 {m0[0]:.2f} -> {m0[-1]:.2f}"]
      for k in ("Muown, wd 0", "Muon++ (adaptive)"):
        if k in sn:
          v = sn[k]["spec_max"]
          parts.append(f"{k} {v[0]:.2f} -> {v[-1]:.2f}")
      lines.append(f"- size {size}: max hidden ||W||_2 from step 25 to the end: "
                   + "; ".join(parts) + ".")
  return lines or ["- (no complete results yet)"]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", default="A,B")
  p.add_argument("--steps", default="A:300,B:120", help="train steps per size")
  p.add_argument("--quick", action="store_true", help="size A, 40 steps, one lr and seed")
  p.add_argument("--report-only", action="store_true")
  args = p.parse_args(argv)
  sizes = ["A"] if args.quick else args.sizes.split(",")
  steps = dict(kv.split(":") for kv in args.steps.split(","))
  steps = {k: 50 if args.quick else int(v) for k, v in steps.items()}
  command = "python benchmarks/quality.py" + "".join(
      f" {a}" for a in (sys.argv[1:] if argv is None else argv))
  info = _common.machine_info()
  _common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
  os.makedirs(WORK_ROOT, exist_ok=True)
  cache = Cache(os.path.join(WORK_ROOT, "quick.json") if args.quick
                else str(_common.RESULTS_DIR / CACHE))
  if not args.report_only:
    _patch_trainer()
    from train import trainer
    trainer.tqdm = argparse.Namespace(tqdm=_NoBar)  # no progress bars in the log
    run_all(cache, sizes, steps, args.quick)
  if args.quick:
    print(json.dumps({k: final_eval(r) for k, r in cache.runs.items()}, indent=1))
    return
  present = [z for z in sizes if any(r["size"] == z and r["opt"] == "adamw"
                                     for r in cache.runs.values())]
  report(cache, present, steps, command, info)
  print((_common.RESULTS_DIR / "quality.md").read_text())


if __name__ == "__main__":
  main()
