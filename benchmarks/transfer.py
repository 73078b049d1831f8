"""Learning-rate transfer across width, weight-decay sensitivity and long-horizon spectra.

    python benchmarks/transfer.py                  # the whole benchmark (~2 h on 2 CPU cores)
    # the same in two processes sharing the cache (small models leave a core idle):
    python benchmarks/transfer.py --part sweep,wd --optimizers adamw,muon,muon_mup &
    python benchmarks/transfer.py --part sweep,wd --optimizers muon_plus_plus,muown \
      && python benchmarks/transfer.py --part long; wait
    python benchmarks/transfer.py --report-only
    python benchmarks/transfer.py --part sweep     # only the lr sweeps (+ second seeds)
    python benchmarks/transfer.py --report-only    # rebuild results/transfer.{json,md} + plots
    python benchmarks/transfer.py --quick --out-dir /tmp/t   # smoke test: every code path, tiny
    python benchmarks/transfer.py --leaves own     # each optimizer's leaves at its own lr (the old protocol)
    python benchmarks/transfer.py --pilots         # variants of Muon++ and Muown (PILOTS), 2 widths
    python benchmarks/transfer.py --pilots --report-only   # rebuild results/transfer_pilots.*

Five optimizers, each with the initialization it calls for, on the repo's NNX
transformer (byte-level LM on the stdlib source; fixed depth, sequence, batch and
steps; only the width changes):

==================  =====================================================  ============
name                optimizer                                              init
==================  =====================================================  ============
``adamw``           AdamW (betas 0.9/0.95), decay on matrices              fan-in normal
``muon``            ``muon``: Moonlight scale (update RMS 0.2, AdamW lr)   fan-in normal
``muon_mup``        ``muon(scale="mup")``: ‖ΔW‖₂ = lr·sqrt(out/in)         μP (orthogonal)
``muon_plus_plus``  ``muon_plus_plus``: μP step, ‖W‖₂ ≤ R·sqrt(out/in)     μP (orthogonal)
``muown``           ``muown``: Muon on directions, Adam on neuron norms    fan-in normal
==================  =====================================================  ============

Protocol (each part resumable: finished runs are cached in ``benchmarks/runs/transfer.json``
(``_sweep.RunCache``) and skipped on a rerun, so the script can be interrupted and
restarted at any point; every run records its AdamW leaves' lr, ``adam_lr``). The AdamW
leaves (embeddings, head, norms) of every optimizer run at AdamW's best lr at that width
(swept first), so the tables compare the matrix optimizers only:

1. ``sweep``: per optimizer and width, a factor-2 lr grid started around the best
   lr of the previous (narrower) width (or a prior for the first) and extended
   until the best lr has a worse neighbour on both sides (a diverged run counts
   as worse); then the best lr again with seed 1. Per optimizer and width:
   best lr, best final eval loss (mean of the 2 seeds), plateau = lowest and
   highest grid lr whose seed-0 loss is within ``PLATEAU`` nats of the seed-0 best.
2. ``wd``: at the middle width, each optimizer at its best lr with weight decay
   in ``WD_GRID`` (the matrices' decay; AdamW leaves keep theirs; the optimizer's
   default decay is its sweep run); ``wd_spread`` = max - min final eval loss.
3. ``long``: ``LONG_STEPS`` steps at the smallest width for Muon (wd 0 and 0.1),
   Muon++ and Muown at their best lr, logging the train loss, max ‖W‖₂ /
   sqrt(fan_out/fan_in) over hidden matrices (exact SVD), the update's spectral
   norm ‖ΔW‖₂ / sqrt(fan_out/fan_in), the spread (max/min) of per-neuron norms
   and Muon++'s ‖W‖₂ / bound, at steps 1, 2, 5, 10, 25 and every ``LONG_EVERY``.

``--pilots``: the variants in ``PILOTS`` (an optimizer above with some options changed:
the AdamW leaves' lr ratio, the scale, the weight radius, the init, Muown's magnitude lr),
swept the same way at widths 32 and 128, seed 0 and 1 at the best lr; runs cached in
``benchmarks/runs/transfer_pilots.json``, results in ``results/transfer_pilots.{md,json}``.

Every run uses the trainer's library pieces through their functions (config ->
``trainer.model_config``, ``train.optimizer.make_optimizer``,
``train.state.init_state``, ``train.step.jit_steps``, ``train.data.pipeline``); the
loop here only adds evaluation at fixed steps and exact spectral measurements.

Default widths d_model 16, 32, 64, 128 (8×), 2 layers, 300 steps of 16×64 bytes:
what fits in about 2 hours on 2 CPU cores. Larger on a GPU: ``--widths
128,256,512,1024 --steps 2000 --batch 64 --seq 256 --layers 4`` (the lr grids extend themselves; ~40x the flops of the default;
the results file records every setting). Keep ``--long-width`` small: the exact
SVDs of the long-horizon runs run on the host.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import _common  # noqa: E402
import _sweep  # noqa: E402
from _sweep import best_of, bracketed, plateau, PLATEAU  # noqa: E402

OPTS = ("adamw", "muon", "muon_mup", "muon_plus_plus", "muown")
LABEL = {"adamw": "AdamW", "muon": "Muon (moonlight)", "muon_mup": "Muon (μP scale)",
         "muon_plus_plus": "Muon++", "muown": "Muown"}
# name -> trainer optimizer name, alias options, μP init, default weight decay.
SPEC = {
    "adamw": dict(name="adamw", options={}, mup_init=False, wd=0.1),
    "muon": dict(name="muon", options={"adam_weight_decay": 0.1}, mup_init=False, wd=0.1),
    "muon_mup": dict(name="muon", options={"scale": "mup", "adam_weight_decay": 0.1},
                     mup_init=True, wd=0.1),
    "muon_plus_plus": dict(name="muon_plus_plus", options={}, mup_init=True, wd=0.0),
    "muown": dict(name="muown", options={}, mup_init=False, wd=0.0),
}
# First-width lr grids (factor 2); later widths start around the previous width's best.
PRIOR = {"adamw": 3.2e-2, "muon": 6.4e-2, "muon_mup": 8e-2, "muon_plus_plus": 8e-2,
         "muown": 6.4e-2}
# --pilots: name -> (base optimizer of SPEC, changes to its spec, what it tests).
PILOTS = {
    "adamw": ("adamw", {}, "AdamW"),
    "muon": ("muon", {}, "Muon, moonlight scale, wd 0.1"),
    "muon_mup": ("muon_mup", {}, "Muon, μP scale + μP init, wd 0.1"),
    "mpp_r1": ("muon_plus_plus", {"lr_ratios": {"adam_learning_rate": 1.0}},
               "Muon++ before: AdamW leaves at the Muon++ lr (ratio 1)"),
    "mpp": ("muon_plus_plus", {}, "Muon++ as in transfer.py (alias defaults)"),
    "mpp_r03": ("muon_plus_plus", {"lr_ratios": {"adam_learning_rate": 0.3}},
                "Muon++, AdamW leaves at 0.3x lr"),
    "mpp_r03_jordan": ("muon_plus_plus", {"lr_ratios": {"adam_learning_rate": 0.3},
                                          "options": {"scale": "jordan"}},
                       "Muon++, leaves 0.3x, scale sqrt(max(1, out/in))"),
    "mpp_r03_R8": ("muon_plus_plus", {"lr_ratios": {"adam_learning_rate": 0.3},
                                      "options": {"weight_radius": 8.0}},
                   "Muon++, leaves 0.3x, radius 8"),
    "mpp_r03_R2": ("muon_plus_plus", {"lr_ratios": {"adam_learning_rate": 0.3},
                                      "options": {"weight_radius": 2.0}},
                   "Muon++, leaves 0.3x, radius 2"),
    "mpp_r03_noR": ("muon_plus_plus", {"lr_ratios": {"adam_learning_rate": 0.3},
                                       "options": {"weight_radius": None}},
                    "Muon++, leaves 0.3x, no bound (no decay)"),
    "mpp_r03_fanin": ("muon_plus_plus", {"lr_ratios": {"adam_learning_rate": 0.3},
                                         "mup_init": False},
                      "Muon++, leaves 0.3x, fan-in normal init"),
    "mpp_jordan": ("muon_plus_plus", {"options": {"scale": "jordan"}},
                   "Muon++, scale sqrt(max(1, out/in))"),
    "mpp_R8": ("muon_plus_plus", {"options": {"weight_radius": 8.0}}, "Muon++, radius 8"),
    "mpp_noR": ("muon_plus_plus", {"options": {"weight_radius": None}},
                "Muon++, no bound (no decay at all)"),
    "mpp_fanin": ("muon_plus_plus", {"mup_init": False}, "Muon++, fan-in normal init"),
    "mpp_fanin_r1": ("muon_plus_plus", {"mup_init": False,
                                        "lr_ratios": {"adam_learning_rate": 1.0}},
                     "Muon++ before, as a new user runs it: fan-in init, leaves at the lr"),
    "muown": ("muown", {}, "Muown as in transfer.py (wd 0)"),
    "muown_wd01": ("muown", {"wd": 0.1}, "Muown, wd 0.1 (our trainer's old default)"),
    "muown_mag03": ("muown", {"lr_ratios": {"magnitude_learning_rate": 0.3}},
                    "Muown, magnitude lr 0.3x"),
    "muown_mag3": ("muown", {"lr_ratios": {"magnitude_learning_rate": 3.0}},
                   "Muown, magnitude lr 3x"),
}
WD_GRID = (0.0, 0.05, 0.1, 0.2, 0.4)
LONG_RUNS = (("muon", 0.0), ("muon", 0.1), ("muon_plus_plus", None), ("muown", None))
LONG_EVERY = 50


def spec_of(opt: str, st: dict) -> dict:
  """The spec of ``opt``: ``SPEC[opt]``, or in a ``--pilots`` setting a ``PILOTS``
  variant's (its base's spec with the variant's changes)."""
  if not st.get("pilots"):
    return SPEC[opt]
  base, changes, _ = PILOTS[opt]
  spec = {**SPEC[base], "options": dict(SPEC[base]["options"]),
          "lr_ratios": dict(SPEC[base].get("lr_ratios", {}))}
  for k, v in changes.items():
    if k in ("options", "lr_ratios"):
      spec[k].update(v)
    else:
      spec[k] = v
  return spec


def label_of(opt: str, st: dict) -> str:
  return PILOTS[opt][2] if st.get("pilots") else LABEL[opt]


def prior_of(opt: str, st: dict) -> float:
  return PRIOR[PILOTS[opt][0] if st.get("pilots") else opt]


def settings(args) -> dict:
  out = {"widths": [int(w) for w in args.widths.split(",")], "layers": args.layers,
         "heads": 4, "kv_heads": 2, "ff_ratio": 3, "seq": args.seq, "batch": args.batch,
         "steps": args.steps, "warmup_frac": 0.1, "schedule": "cosine",
         "final_lr_fraction": 0.1, "grad_clip": 1.0, "eval_steps": args.eval_steps,
         "eval_every": args.eval_every, "long_steps": args.long_steps,
         "max_extend": args.max_extend, "grid_points": args.grid_points,
         "wd_grid": [float(x) for x in args.wd_grid.split(",")],
         "long_width": args.long_width or int(args.widths.split(",")[0]),
         "wd_width": args.wd_width or sorted(int(w) for w in args.widths.split(","))[
             (len(args.widths.split(",")) - 1) // 2]}
  if getattr(args, "pilots", False):
    out["pilots"] = True
  if getattr(args, "leaves", "own") == "adamw":
    out["leaves"] = "adamw"
  return out


def run_spec(st: dict, opt: str, width: int, lr: float, seed: int, wd: float | None = None,
             steps: int | None = None, kind: str = "sweep") -> dict:
  """The run's ``_sweep`` spec (its cache key): ``adam_lr`` is the AdamW leaves' peak lr."""
  ratio = spec_of(opt, st).get("lr_ratios", {}).get("adam_learning_rate", 1.0)
  adam_lr = _sweep.grid_value(lr * ratio)
  if leaves_of(st, opt):
    if width not in st.get("leaves_lr", {}):
      raise ValueError(f"--leaves adamw: AdamW has no sweep at d_model {width} yet: sweep it first")
    adam_lr = st["leaves_lr"][width]
  return {"opt": opt, "kind": kind, "width": width, "lr": lr, "adam_lr": adam_lr, "seed": seed,
          "wd": wd, "steps": st["steps"] if steps is None else steps,
          "leaves": leaves_of(st, opt)}


def make_config(st: dict, run: dict):
  """The trainer config of one run (``run``: a ``run_spec``)."""
  from train.configs import default

  spec = spec_of(run["opt"], st)
  c = default.get_config()
  c.batch_size, c.seq_len, c.eval_steps = st["batch"], st["seq"], st["eval_steps"]
  c.model.preset = "tiny"
  width = run["width"]
  c.model.d_model, c.model.n_layers = width, st["layers"]
  c.model.n_heads, c.model.n_kv_heads = st["heads"], st["kv_heads"]
  c.model.d_ff, c.model.max_len = st["ff_ratio"] * width, st["seq"]
  c.model.mup_init = spec["mup_init"]
  c.optimizer.warmup_steps = max(int(run["steps"] * st["warmup_frac"]), 1)
  c.optimizer.schedule = st["schedule"]
  c.optimizer.final_lr_fraction = st["final_lr_fraction"]
  c.optimizer.grad_clip = st["grad_clip"]
  fields = {"optimizer": spec["name"], "lr": run["lr"], "adam_lr": run["adam_lr"],
            "steps": run["steps"], "seed": run["seed"],
            "wd": spec["wd"] if run["wd"] is None else run["wd"]}
  fields.update({f"options.{k}": v for k, v in spec["options"].items()})
  fields.update({f"lr_ratios.{k}": float(v) for k, v in spec.get("lr_ratios", {}).items()
                 if k != "adam_learning_rate"})
  return _sweep.trainer_config(fields, c)


_DATA = {}


def _data(config):
  """(builder, eval batches) for this sequence length and batch size, built once."""
  from train.data import pipeline

  key = (config.seq_len, config.batch_size, config.eval_steps)
  if key not in _DATA:
    builder = pipeline.prepare(config)
    _DATA[key] = (builder, pipeline.eval_batches(config, builder))
  return _DATA[key]


def _hidden(params):
  """[(name, [B, fan_in, fan_out] float64)] of the hidden (Muon) matrices of a host param tree."""
  import jax
  from optax.contrib import MuonDimensionNumbers
  from train import labels

  dims = jax.tree.leaves(labels.dimension_numbers(params),
                         is_leaf=lambda x: x is None or isinstance(x, MuonDimensionNumbers))
  out = []
  for (path, x), dn in zip(jax.tree_util.tree_leaves_with_path(params), dims):
    if dn is not None:
      a = np.asarray(x, np.float64)
      out.append((jax.tree_util.keystr(path), a.reshape(-1, *a.shape[-2:])))
  return out


def spectra(before, after, radius=None) -> dict:
  """Exact-SVD statistics of the hidden matrices after a step (and of the step itself)."""
  w_ratio, du_ratio, spread, bound = [], [], [], []
  prev = dict(_hidden(before)) if before is not None else {}
  for name, w in _hidden(after):
    s = math.sqrt(w.shape[2] / w.shape[1])
    for b in range(w.shape[0]):
      sig = np.linalg.norm(w[b], 2)
      w_ratio.append(sig / s)
      if radius:
        bound.append(sig / (radius * s))
      norms = np.linalg.norm(w[b], axis=0)
      spread.append(float(norms.max() / max(norms.min(), 1e-12)))
      if name in prev:
        du_ratio.append(np.linalg.norm(w[b] - prev[name][b], 2) / s)
  out = {"w_spec_max": float(max(w_ratio)), "w_spec_mean": float(np.mean(w_ratio)),
         "neuron_spread_max": float(max(spread)), "neuron_spread_mean": float(np.mean(spread))}
  if du_ratio:
    out["update_spec_max"] = float(max(du_ratio))
    out["update_spec_mean"] = float(np.mean(du_ratio))
  if bound:
    out["bound_ratio_max"] = float(max(bound))
  return out


def train(st: dict, run: dict, log_steps=()) -> dict:
  """Trains one run (a ``run_spec``) with the trainer's pieces; returns its record."""
  import jax
  import models
  from train import mesh as mesh_lib
  from train import optimizer as optimizer_lib
  from train import trainer
  from train.data import pipeline
  from train.state import init_state
  from train.step import jit_steps

  steps, seed = run["steps"], run["seed"]
  config = make_config(st, run)
  t0, c0 = time.perf_counter(), time.process_time()
  builder, eval_host = _data(config)
  model_cfg = trainer.model_config(config.model)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])  # one device, as measured
  tx, _ = optimizer_lib.make_optimizer(config.optimizer, model_cfg, steps)
  graphdef, state, shardings = init_state(model_cfg, tx, mesh, seed)
  batch_sharding = models.sharding.batch_sharding(mesh)
  train_fn, eval_fn = jit_steps(graphdef, tx, False, shardings, batch_sharding)
  eval_data = [pipeline.to_global(b, batch_sharding) for b in eval_host]
  data_iter = iter(pipeline.train_dataset(config, builder))
  radius = None
  if spec_of(run["opt"], st)["name"] == "muon_plus_plus":
    import inspect
    import optax_muon as om
    radius = config.optimizer.options.get(
        "weight_radius", inspect.signature(om.muon_plus_plus).parameters["weight_radius"].default)

  def evaluate():
    return float(np.mean([float(eval_fn(state.params, b)["loss"]) for b in eval_data]))

  curve, losses, spec_rows, diverged = [], [], [], False
  log_steps = set(log_steps)
  with jax.set_mesh(mesh):
    for step in range(1, steps + 1):
      batch = pipeline.to_global(next(data_iter), batch_sharding)
      before = jax.device_get(state.params) if step in log_steps else None
      state, metrics = train_fn(state, batch)
      if step % 10 == 0 or step in log_steps or step == steps:
        loss = float(metrics["loss"])
        losses.append((step, loss))
        if not math.isfinite(loss):
          diverged = True
          break
      if step in log_steps:
        spec_rows.append({"step": step, "loss": float(metrics["loss"]),
                          **spectra(before, jax.device_get(state.params), radius)})
      if step % st["eval_every"] == 0 or step == steps:
        curve.append((step, evaluate()))
        if not math.isfinite(curve[-1][1]):
          diverged = True
          break
  final = curve[-1][1] if curve and not diverged else math.inf
  return {"final_eval": final, "diverged": diverged, "eval_curve": curve,
          "train_loss": losses, "spectra": spec_rows, "seconds": time.perf_counter() - t0,
          "cpu_seconds": time.process_time() - c0}


def train_one(cache, st, opt, width, lr, seed, wd=None, steps=None, kind="sweep",
              log_steps=(), verbose=True):
  """The record of one run, trained first unless cached."""
  run = run_spec(st, opt, width, lr, seed, wd, steps, kind)
  rec = cache.get(run)
  if rec is None:
    rec = cache.put(run, train(st, run, log_steps))
    if verbose:
      print(f"[transfer] {_sweep.run_key(run)}: final eval {rec['final_eval']:.4f} "
            f"({rec['seconds']:.0f}s)", flush=True)
  return rec


# ----------------------------------------------------------------------------- analysis


def leaves_of(st: dict, opt: str) -> str | None:
  """The spec's ``leaves`` field: ``"adamw"`` where the leaves are held at AdamW's best
  (``--leaves adamw``; AdamW's own runs are shared by both modes), else None."""
  held = st.get("leaves") == "adamw" and spec_of(opt, st)["name"] != "adamw"
  return "adamw" if held else None


def sweep_runs(cache, st, opt, width, seed=0):
  """{lr: final eval} of the seed's sweep runs (in this leaves mode)."""
  return {r["spec"]["lr"]: r["final_eval"]
          for r in cache.find(kind="sweep", opt=opt, width=width, seed=seed, steps=st["steps"],
                              wd=None, leaves=leaves_of(st, opt))}


def hold_leaves(cache, st) -> None:
  """``--leaves adamw``: ``st["leaves_lr"][width]`` = AdamW's best lr at that width."""
  if st.get("leaves") == "adamw":
    st["leaves_lr"] = {w: lr for w in st["widths"]
                       if (lr := best_lr(cache, st, "adamw", w)) is not None}


def sweep(cache, st, opt, width, center, verbose=True):
  """lrs center·2^j (3 points by default: center/2, center, 2·center) and every lr already
  run at this width, extended by factors of 2 until bracketed (``_sweep.bracket``); then
  the best lr again with seed 1. Returns the best lr."""
  k = st["grid_points"] // 2
  grid = {_sweep.grid_value(center * 2.0 ** j) for j in range(-k, st["grid_points"] - k)}
  grid |= set(sweep_runs(cache, st, opt, width))
  loss_at = lambda lr: train_one(cache, st, opt, width, lr, 0, verbose=verbose)["final_eval"]
  lr_best, _ = best_of(_sweep.bracket(loss_at, sorted(grid), max_extend=st["max_extend"]))
  train_one(cache, st, opt, width, lr_best, 1, verbose=verbose)
  return lr_best


def run_sweeps(cache, st, opts, verbose=True):
  """Width-major (every optimizer at the narrowest width first), so that an interrupted
  run leaves complete comparisons at the widths it finished."""
  for width in sorted(st["widths"]):
    for opt in opts:
      narrower = [w for w in sorted(st["widths"]) if w < width]
      center = best_lr(cache, st, opt, narrower[-1]) if narrower else None
      sweep(cache, st, opt, width, center or prior_of(opt, st), verbose=verbose)
      if opt == "adamw":
        hold_leaves(cache, st)


def best_lr(cache, st, opt, width):
  losses = sweep_runs(cache, st, opt, width)
  return best_of(losses)[0] if losses else None


def run_wd(cache, st, opts, verbose=True):
  width = st["wd_width"]
  for opt in opts:
    lr = best_lr(cache, st, opt, width)
    if lr is None:
      continue
    for wd in st["wd_grid"]:
      if wd != spec_of(opt, st)["wd"]:  # the default is the sweep's own run at that lr
        train_one(cache, st, opt, width, lr, 0, wd=wd, kind="wd", verbose=verbose)


def long_log_steps(steps):
  return sorted({1, 2, 5, 10, 25, *range(LONG_EVERY, steps + 1, LONG_EVERY), steps})


def run_long(cache, st, verbose=True):
  width, steps = st["long_width"], st["long_steps"]
  for opt, wd in LONG_RUNS:
    cache.refresh()
    lr = best_lr(cache, st, opt, width)
    if lr is None:
      continue
    train_one(cache, st, opt, width, lr, 0, wd=wd, steps=steps, kind="long",
              log_steps=long_log_steps(steps), verbose=verbose)


def summarize(cache, st, opts) -> dict:
  """The results JSON: per optimizer and width, best lr / loss / plateau / the AdamW leaves'
  lr at the best lr; wd_spread; long runs."""
  out = {"widths": [str(w) for w in sorted(st["widths"])], "settings": st,
         "plateau_tol": PLATEAU, "wd_grid": st["wd_grid"], "optimizers": {}, "long": {}}
  for opt in opts:
    spec = spec_of(opt, st)
    res = {"best_lr": {}, "adam_lr": {}, "best_loss": {}, "best_loss_seeds": {}, "plateau": {},
           "sweep": {}, "wd_losses": {}, "wd_spread": None,
           "init": "mup" if spec["mup_init"] else "fan_in", "options": spec["options"],
           "default_wd": spec["wd"]}
    for width in sorted(st["widths"]):
      losses = sweep_runs(cache, st, opt, width)
      if not losses:
        continue
      w = str(width)
      lr_b, _ = best_of(losses)
      seeds = [losses[lr_b]] + [l for l in [sweep_runs(cache, st, opt, width, 1)
                                             .get(lr_b)] if l is not None]
      res["best_lr"][w] = lr_b
      res["adam_lr"][w] = run_spec(st, opt, width, lr_b, 0)["adam_lr"]
      res["best_loss"][w] = float(np.mean(seeds))
      res["best_loss_seeds"][w] = seeds
      res["plateau"][w] = plateau(losses)
      res["sweep"][w] = {f"{lr:g}": losses[lr] for lr in sorted(losses)}
      res.setdefault("bracketed", {})[w] = bracketed(losses)
    wds = {r["spec"]["wd"]: r["final_eval"]
           for r in cache.find(kind="wd", opt=opt, width=st["wd_width"], steps=st["steps"],
                               leaves=leaves_of(st, opt))
           if r["spec"]["wd"] in st["wd_grid"]}
    lr_wd = best_lr(cache, st, opt, st["wd_width"])
    if wds and lr_wd is not None and spec["wd"] in st["wd_grid"]:
      wds[spec["wd"]] = sweep_runs(cache, st, opt, st["wd_width"])[lr_wd]
    if wds:
      res["wd_losses"] = {f"{k:g}": v for k, v in sorted(wds.items())}
      finite = [v for v in wds.values() if math.isfinite(v)]
      res["wd_spread"] = float(max(finite) - min(finite)) if finite else None
      res["wd_lr"] = lr_wd
    out["optimizers"][opt] = res
  for r in cache.find(kind="long", width=st["long_width"], steps=st["long_steps"]):
    if r["spec"].get("leaves") != leaves_of(st, r["spec"]["opt"]):
      continue
    run = r["spec"]
    name = f"{run['opt']}" + (f"_wd{run['wd']:g}" if run["wd"] is not None else "")
    out["long"][name] = {"lr": run["lr"], "adam_lr": run["adam_lr"], "wd": run["wd"],
                         "final_eval": r["final_eval"], "spectra": r["spectra"],
                         "eval_curve": r["eval_curve"]}
  out["claims"] = claims(out)
  return out


def _move(best_lrs: dict) -> float | None:
  """max/min of the best lr across widths (1 = no move; 2 = one grid step)."""
  v = list(best_lrs.values())
  return max(v) / min(v) if len(v) >= 2 else None


def claims(out) -> list[str]:
  """The goals of the width-transfer study, checked on these numbers (met / not met)."""
  o = out["optimizers"]
  lines = []
  widths = out["widths"]
  span = f"{widths[0]}→{widths[-1]}" if widths else ""
  moves = {k: _move(v["best_lr"]) for k, v in o.items()}
  if moves.get("muon_plus_plus"):
    m = moves["muon_plus_plus"]
    other = ", ".join(f"{label_of(k, out['settings'])} {v:.0f}x" for k, v in moves.items()
                      if k != "muon_plus_plus" and v is not None)
    lines.append(f"Muon++ best lr moves by {m:.0f}x across d_model {span} (goal <= 2x): "
                 f"{'met' if m <= 2 + 1e-9 else 'NOT met'}; " + other + ".")
  for name, goal in (("muon_plus_plus", 0.01), ("muown", 0.0)):
    if name in o and "muon" in o:
      parts, ok = [], True
      for w in widths:
        a, b = o[name]["best_loss"].get(w), o["muon"]["best_loss"].get(w)
        if a is None or b is None:
          continue
        parts.append(f"d{w} {a:.3f} vs {b:.3f}")
        ok &= a <= b + goal
      lines.append(f"{label_of(name, out['settings'])} best loss vs Muon's (goal <= Muon{' + 0.01' if goal else ''}): "
                   + ", ".join(parts) + f": {'met' if ok else 'NOT met'}.")
  if "muown" in o and "muon" in o:
    parts, ok = [], True
    for w in widths:
      pa, pb = o["muown"]["plateau"].get(w), o["muon"]["plateau"].get(w)
      if pa and pb:
        ra, rb = pa[1] / pa[0], pb[1] / pb[0]
        parts.append(f"d{w} {ra:.0f}x vs {rb:.0f}x")
        ok &= ra >= rb
    lines.append("Muown plateau width (hi/lo lr within 0.02 nats) vs Muon's: " + ", ".join(parts)
                 + f": {'met' if ok else 'NOT met'}.")
    sa, sb = o["muown"].get("wd_spread"), o["muon"].get("wd_spread")
    if sa is not None and sb is not None:
      lines.append(f"wd_spread Muown {sa:.3f} vs Muon {sb:.3f} (goal <= half): "
                   f"{'met' if sa <= sb / 2 else 'NOT met'}.")
  mpp = out["long"].get("muon_plus_plus")
  if mpp and mpp["spectra"]:
    worst = max(r.get("bound_ratio_max", 0) for r in mpp["spectra"])
    first = mpp["spectra"][0].get("bound_ratio_max", 0)
    lines.append(f"Muon++ long run: max ‖W‖₂/bound over logged steps {worst:.3f} (step 1: "
                 f"{first:.3f}; goal <= 1.03): {'met' if worst <= 1.03 else 'NOT met'}.")
  return lines


# ----------------------------------------------------------------------------- report


def plots(out, out_dir):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  opts = list(out["optimizers"])
  fig, axes = plt.subplots(1, len(opts), figsize=(4 * len(opts), 3.6), squeeze=False,
                           sharey=True)
  cmap = plt.get_cmap("viridis")
  widths = out["widths"]
  for ax, opt in zip(axes[0], opts):
    res = out["optimizers"][opt]
    for j, w in enumerate(widths):
      sw = res["sweep"].get(w)
      if not sw:
        continue
      lrs = [float(k) for k in sw]
      ls = [min(v, 10.0) for v in sw.values()]
      ax.plot(lrs, ls, "o-", ms=3, color=cmap(j / max(len(widths) - 1, 1)), label=f"d={w}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlapping labels
    ax.set_title(label_of(opt, out["settings"]))
    ax.set_xlabel("learning rate")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("final eval loss (nats/byte)")
  finite = [v for r in out["optimizers"].values() for sw in r["sweep"].values()
            for v in sw.values() if math.isfinite(v)]
  if finite:
    axes[0][0].set_ylim(min(finite) - 0.05, min(min(finite) + 1.0, max(finite) + 0.05))
  axes[0][-1].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, f"{report_name(out['settings'])}.png"), dpi=110)
  plt.close(fig)
  if out["long"]:
    keys = [("loss", "train loss"), ("w_spec_max", "max ‖W‖₂ / sqrt(out/in)"),
            ("update_spec_max", "max ‖ΔW‖₂ / sqrt(out/in)"),
            ("neuron_spread_max", "max/min per-neuron norm (max over matrices)")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for name, rec in out["long"].items():
      rows = rec["spectra"]
      for ax, (k, title) in zip(axes[0], keys):
        xs = [r["step"] for r in rows if k in r]
        ax.plot(xs, [r[k] for r in rows if k in r], "-", lw=1.2, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("step")
    axes[0][1].set_yscale("log")
    axes[0][2].set_yscale("log")
    axes[0][3].set_yscale("log")
    mpp = out["long"].get("muon_plus_plus")
    if mpp and mpp["spectra"] and "bound_ratio_max" in mpp["spectra"][0]:
      r0 = mpp["spectra"][0]
      bound = r0["w_spec_max"] / r0["bound_ratio_max"]
      axes[0][1].axhline(bound, color="k", ls=":", lw=1, label="Muon++ bound")
    axes[0][1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f"{report_name(out['settings'])}_long.png"), dpi=110)
    plt.close(fig)


def report_name(st: dict) -> str:
  """``transfer`` (the AdamW leaves held at AdamW's best), or ``transfer_own_leaves`` (each
  optimizer's leaves at its own lr, ``--leaves own``: not a comparison of the matrices)."""
  return "transfer" if st.get("leaves") == "adamw" else "transfer_own_leaves"


def report(out, out_dir, command, info):
  st = out["settings"]
  fname = report_name(st)
  notes = [
      f"Model: the repo's transformer, {st['layers']} layers, {st['heads']} heads "
      f"({st['kv_heads']} KV), d_ff = {st['ff_ratio']}·d_model, widths d_model = "
      f"{', '.join(out['widths'])}; {st['steps']} steps of {st['batch']}x{st['seq']} bytes, "
      f"{st['schedule']} schedule (warmup {st['warmup_frac']:.0%}, final lr "
      f"{st['final_lr_fraction']}x), grad clip {st['grad_clip']}; eval on {st['eval_steps']} "
      "fixed batches.",
      "Learning rates: AdamW, Muon (moonlight) and Muown in AdamW units; Muon (μP scale) and "
      "Muon++ in spectral units (‖ΔW‖₂ = lr·sqrt(fan_out/fan_in)). Factor-2 grids, "
      "extended until the best has a worse neighbour on both sides; best lr rerun with seed 1.",
      f"Plateau: lowest and highest lr whose seed-0 loss is within {PLATEAU} nats of the "
      "seed-0 best. wd_spread: max - min final eval loss over weight decay "
      f"{st['wd_grid']} at d_model {st['wd_width']} and the optimizer's best lr there.",
  ]
  if st.get("leaves") == "adamw":
    notes.append("AdamW leaves (embeddings, head, norms) of every Muon variant held at AdamW's "
                 "best lr at each width: " + ", ".join(
                     f"d{w}: {lr:g}" for w, lr in sorted(st.get("leaves_lr", {}).items())) + ".")
  else:
    notes.append("AdamW leaves (embeddings, head, norms) of each Muon variant at its own lr: "
                 "these tables compare the leaves' lrs as much as the matrix optimizers "
                 "(the default, `--leaves adamw`, holds them at AdamW's best: transfer.md).")
  text = _common.md_header("Learning-rate transfer across width", info, command, notes)
  text += "\n## Claims, checked on these runs\n\n" + "\n".join(f"- {c}" for c in out["claims"])
  text += "\n\n## Best lr, best loss (mean of 2 seeds) and plateau per width\n\n"
  rows = []
  for opt, res in out["optimizers"].items():
    for w in out["widths"]:
      if w not in res["best_lr"]:
        continue
      seeds = res["best_loss_seeds"][w]
      p = res["plateau"][w]
      rows.append([label_of(opt, st), w, f"{res['best_lr'][w]:g}", f"{res['adam_lr'][w]:g}",
                   " / ".join(f"{s:.4f}" for s in seeds),
                   f"{res['best_loss'][w]:.4f}", f"{p[0]:g} – {p[1]:g}",
                   f"{p[1] / p[0]:.0f}x", "yes" if res["bracketed"][w] else "NO"])
  text += _common.md_table(["optimizer", "d_model", "best lr", "AdamW leaves lr",
                            "final eval (seeds)", "mean",
                            "plateau lr", "plateau width", "bracketed"], rows)
  text += f"\n![loss vs lr per width]({fname}.png)\n"
  text += "\n## Weight-decay sensitivity\n\n"
  rows = []
  for opt, res in out["optimizers"].items():
    if res["wd_losses"]:
      wl = res["wd_losses"]
      rows.append([label_of(opt, st), f"{res.get('wd_lr', float('nan')):g}",
                   *[f"{wl.get(f'{wd:g}', float('nan')):.4f}" for wd in st["wd_grid"]],
                   f"{res['wd_spread']:.4f}" if res["wd_spread"] is not None else "n/a"])
  text += _common.md_table(
      ["optimizer", "lr", *[f"wd {wd:g}" for wd in st["wd_grid"]], "wd_spread"], rows)
  if out["long"]:
    text += (f"\n## Long horizon ({st['long_steps']} steps, d_model {st['long_width']})\n\n"
             "Exact SVD of every hidden matrix at the logged steps (1, 2, 5, 10, 25, then every "
             f"{LONG_EVERY}); ‖·‖₂ in units of sqrt(fan_out/fan_in).\n\n")
    rows = []
    for name, rec in out["long"].items():
      sp = rec["spectra"]
      if not sp:
        continue
      rows.append([name, f"{rec['lr']:g}", f"{rec['final_eval']:.4f}",
                   f"{sp[0]['w_spec_max']:.2f}", f"{sp[-1]['w_spec_max']:.2f}",
                   f"{max(r['w_spec_max'] for r in sp):.2f}",
                   f"{sp[-1].get('update_spec_max', float('nan')):.2e}",
                   f"{sp[-1]['neuron_spread_max']:.1f}",
                   f"{max(r.get('bound_ratio_max', float('nan')) for r in sp):.3f}"
                   if "bound_ratio_max" in sp[0] else "-"])
    text += _common.md_table(["run", "lr", "final eval", "‖W‖₂ step 1", "‖W‖₂ last",
                              "‖W‖₂ max", "‖ΔW‖₂ last", "neuron spread last",
                              "max ‖W‖₂/bound"], rows)
    text += f"\n![long horizon]({fname}_long.png)\n"
  text += "\n## Every sweep (seed 0, final eval loss)\n\n"
  rows = []
  for opt, res in out["optimizers"].items():
    for w, sw in res["sweep"].items():
      rows.append([label_of(opt, st), w, ", ".join(f"{k}: {v:.3f}" for k, v in sw.items())])
  text += _common.md_table(["optimizer", "d_model", "lr: loss"], rows)
  with open(os.path.join(out_dir, f"{fname}.md"), "w") as f:
    f.write(text)
  with open(os.path.join(out_dir, f"{fname}.json"), "w") as f:
    json.dump({"machine": info, "command": command, **out}, f, indent=1)


def pilot_report(out, out_dir, command, info):
  """results/transfer_pilots.{md,json}: one row per variant and width."""
  st = out["settings"]
  rows = []
  for name, res in out["optimizers"].items():
    for w in out["widths"]:
      if w in res["best_lr"]:
        pl = res["plateau"][w]
        rows.append([name, PILOTS[name][2], w, f"{res['best_lr'][w]:g}", f"{res['adam_lr'][w]:g}",
                     " / ".join(f"{x:.4f}" for x in res["best_loss_seeds"][w]),
                     f"{pl[0]:g}–{pl[1]:g}", "yes" if res["bracketed"][w] else "NO",
                     ", ".join(f"{k}: {v:.3f}" for k, v in res["sweep"][w].items())])
  text = _common.md_header(
      "Pilots: what closes Muon++'s gap, what gives Muown its edge", info, command,
      [f"Same setup as transfer.py: {st['layers']} layers, d_ff 3·d, {st['steps']} steps of "
       f"{st['batch']}x{st['seq']} bytes, cosine, warmup 10%; factor-2 lr grids extended until "
       "bracketed; final eval loss of seed 0 and seed 1 at the best lr. AdamW leaves lr: their "
       "peak lr at the best lr."])
  text += "\n" + _common.md_table(["variant", "what", "d_model", "best lr", "AdamW leaves lr",
                                   "final eval (seeds)", "plateau (0.02)", "bracketed",
                                   "sweep lr: loss"], rows)
  with open(os.path.join(out_dir, "transfer_pilots.md"), "w") as f:
    f.write(text)
  with open(os.path.join(out_dir, "transfer_pilots.json"), "w") as f:
    json.dump({"machine": info, **out, "variants": {k: PILOTS[k][2] for k in out["optimizers"]}},
              f, indent=1, default=lambda x: None if isinstance(x, float) and math.isnan(x) else x)
  print(text)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--widths", default=None, help="default 16,32,64,128 (--pilots: 32,128)")
  p.add_argument("--layers", type=int, default=2)
  p.add_argument("--seq", type=int, default=64)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--eval-steps", type=int, default=None, help="default 32 (--pilots: 8)")
  p.add_argument("--eval-every", type=int, default=100)
  p.add_argument("--long-steps", type=int, default=3000)
  p.add_argument("--long-width", type=int, default=0, help="default: the smallest width")
  p.add_argument("--wd-width", type=int, default=0, help="default: the middle width")
  p.add_argument("--optimizers", default=None,
                 help=f"default {','.join(OPTS)} (--pilots: every variant in PILOTS)")
  p.add_argument("--wd-grid", default=",".join(f"{w:g}" for w in WD_GRID))
  p.add_argument("--max-extend", type=int, default=8, help="most grid extensions per sweep")
  p.add_argument("--grid-points", type=int, default=3, help="initial lr grid points per sweep")
  p.add_argument("--part", default="sweep,wd,long", help="any of sweep, wd, long")
  p.add_argument("--leaves", choices=("own", "adamw"), default="adamw",
                 help="the AdamW leaves' lr: held at AdamW's best at each width for every "
                      "optimizer (adamw, results transfer.*), or each optimizer's own lr (own, "
                      "results transfer_own_leaves.*: the protocol before the leaves were "
                      "held, kept to reproduce it)")
  p.add_argument("--pilots", action="store_true",
                 help="sweep the PILOTS variants (lr sweeps only) into results/transfer_pilots.*")
  p.add_argument("--out-dir", default=str(_common.RESULTS_DIR))
  p.add_argument("--runs-dir", default=None,
                 help="where the run cache lives (default benchmarks/runs; --quick: --out-dir)")
  p.add_argument("--quick", action="store_true",
                 help="smoke test: 1 layer, widths 16,32, 8 steps, one lr, 12-step long runs")
  p.add_argument("--report-only", action="store_true",
                 help="train nothing: rebuild the results and plots from the cached runs")
  args = p.parse_args(argv)
  if args.widths is None:
    args.widths = "32,128" if args.pilots else "16,32,64,128"
  if args.eval_steps is None:
    args.eval_steps = 8 if args.pilots else 32
  if args.optimizers is None:
    args.optimizers = ",".join(PILOTS if args.pilots else OPTS)
  if args.pilots:  # variants that set their own leaves' lr ratio
    args.part, args.long_steps, args.wd_grid, args.leaves = "sweep", 0, "0.1", "own"
  if args.quick:  # every code path once, as few compiles as possible
    args.widths, args.steps, args.eval_every, args.eval_steps = "16,32", 8, 4, 1
    args.long_steps, args.batch, args.seq, args.layers = 12, 4, 32, 1
    args.max_extend, args.grid_points, args.wd_grid = 0, 1, "0,0.1"
  if args.runs_dir is None:
    args.runs_dir = args.out_dir if args.quick else str(_sweep.RUNS_DIR)
  return args


def main(argv=None):
  args = parse_args(argv)
  st = settings(args)
  opts = [o for o in args.optimizers.split(",") if o]
  os.makedirs(args.out_dir, exist_ok=True)
  name = "transfer_pilots" if args.pilots else "transfer"
  cache = _sweep.RunCache(os.path.join(args.runs_dir, f"{name}.json"))
  command = "python benchmarks/transfer.py" + "".join(
      f" {a}" for a in (sys.argv[1:] if argv is None else argv))
  info = _common.machine_info()
  parts = args.part.split(",")
  hold_leaves(cache, st)
  if not args.report_only:
    if "sweep" in parts:
      run_sweeps(cache, st, opts)
    if "wd" in parts:
      run_wd(cache, st, opts)
    if "long" in parts:
      run_long(cache, st)
  if args.pilots:
    present = [o for o in opts if cache.find(opt=o)]
    pilot_report(summarize(cache, st, present), args.out_dir, command, info)
    return
  out = summarize(cache, st, opts)
  report(out, args.out_dir, command, info)
  plots(out, args.out_dir)
  print("\n".join(out["claims"]))


if __name__ == "__main__":
  main()
