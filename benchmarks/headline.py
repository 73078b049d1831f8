"""The project's headline quality comparison: Muon vs tuned AdamW on the default model.

    python benchmarks/headline.py               # 600 steps, AdamW lr {1e-3, 3e-3, 1e-2}, Muon lr 6e-3
    python benchmarks/headline.py --steps 100   # a quick look
    python benchmarks/headline.py --family      # + bracketed Muon/Muown/Muon++ sweeps (~1 h more)
    python benchmarks/headline.py --family --wd # + weight decay 0-0.4 at Muon's and Muown's best lr
    python benchmarks/headline.py --ns-check    # + Muon with standard vs auto (Gram) Newton–Schulz
    python benchmarks/headline.py --family --magnitude    # + Muown's magnitude lr, bracketed
    python benchmarks/headline.py --family --init-check   # + Muon++ with the fan-in init
    python benchmarks/headline.py --family --muon-variants  # + Muon with other AdamW-leaf lrs, Polar Express

The setting of the "figures to beat" (4-layer d_model 192 byte-level LM on the
stdlib source, 600 steps; optax.contrib.muon reached tuned AdamW's final eval
loss in 0.42x the steps and ended at 1.31 vs 1.72): the default config
(``cpu192`` preset, batch 16 x 128, cosine schedule, warmup 40, grad clip 1,
weight decay 0.1), one seed, eval every 25 steps on the fixed eval batches.
AdamW is tuned over its lr grid (best final eval wins); Muon runs at the default
config's lr (AdamW-like, since its update RMS is matched to 0.2).
Reported: each run's final eval loss, and the first step at which Muon's eval
curve (linearly interpolated) reaches tuned AdamW's final eval loss, as a
fraction of the run length. Finished runs are cached in
``results/headline.runs.json``; a rerun only fills gaps.

``--family``: Muon, Muown and Muon++ each get a factor-2 lr sweep on the same
model, extended until the best has a worse neighbour on both sides (the best
then rerun with a second seed), each with its alias's defaults and the init it
calls for (Muon++: ``model.mup_init``, lr in spectral units). Reported per optimizer: best lr, final eval, the plateau (lrs
within 0.02 nats of the best) and the steps ratio to tuned AdamW's final loss.
This is the default model at 600 steps, larger and longer than the width
sweeps of ``transfer.py``. ``--wd``: Muon and Muown at their best lr with the
matrices' weight decay in ``WD_GRID`` (AdamW leaves at 0.1 throughout, as in
``transfer.py``); ``wd_spread`` = max − min final eval over that grid.
``--muon-variants`` (with ``--family``): Muon at its best lr with its AdamW leaves at
``MUON_ADAM_RATIOS`` × its lr and with Polar Express coefficients instead of Jordan's;
reported: each run's final eval and steps ratio (the levers left for the 0.5× goal).
``--batch B`` (e.g. ``--batch 64 --steps 300``): the same comparison with B rows per
step instead of 16 (runs keyed ``.../batch=B``; results in ``headline[_stepsS]_batchB.*``):
whether Muon's lead over AdamW grows with the batch, as its large-batch results suggest.
``--ns-check``: Muon at the default lr twice more, with ``ns_method="standard"``
(optax's iteration on every matrix) and ``"auto"`` (the default: Gram
Newton–Schulz on the 1:4 MLP matrices); reported: both final evals and the
largest difference of their eval curves. (Runs cached before the default became
``"auto"`` used the standard iteration; this check says how much that matters.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # noqa: E402
from transfer import best_of, bracketed, plateau  # noqa: E402
from train import trainer  # noqa: E402
from train.configs import default  # noqa: E402

RUNS_FILE = os.path.join(_common.RESULTS_DIR, "headline.runs.json")
# --family: first lr grid per optimizer (factor 2, extended until bracketed) and the
# model options its runs use (the init it calls for).
FAMILY = {"muon": ((6e-3, 1.2e-2, 2.4e-2), {}),
          "muown": ((6e-3, 1.2e-2, 2.4e-2), {}),
          "muon_plus_plus": ((2e-2, 4e-2, 8e-2), {"mup_init": True})}
MAX_EXTEND = 3
WD_GRID = (0.0, 0.05, 0.1, 0.2, 0.4)
WD_DEFAULT = {"muon": 0.1, "muown": 0.0}  # the alias default, whose run the sweep already has
MUON_ADAM_RATIOS = (0.25, 2.0, 4.0)  # --muon-variants: the AdamW leaves' lr, x Muon's


def run(name: str, lr: float, steps: int, workdir: str, adam_ratio: float = 0.0,
        model: dict | None = None, seed: int = 0,
        weight_decay: float | None = None, options: dict | None = None,
        lr_ratios: dict | None = None, batch: int | None = None) -> list[dict]:
  """Trains one run; returns its metrics rows (step, loss, eval_loss when evaluated).

  ``adam_ratio > 0``: Muon's AdamW leaves (embeddings, head, norms) at that multiple of lr.
  ``model``: overrides of ``config.model`` (e.g. ``{"mup_init": True}``).
  ``weight_decay``: the matrices' decay (None: the optimizer's default); the AdamW
  leaves then keep 0.1, every alias's default for them.
  ``options``: further keyword arguments of the alias (``config.optimizer.options``).
  ``lr_ratios``: learning-rate arguments of the alias as multiples of the schedule
  (``config.optimizer.lr_ratios``, e.g. ``{"magnitude_learning_rate": 2.0}``).
  ``batch``: rows per step (None: the default config's 16).
  """
  config = default.get_config()
  config.seed = seed
  if batch is not None:
    config.batch_size = batch
  for k, v in (model or {}).items():
    setattr(config.model, k, v)
  config.optimizer.name = name
  config.optimizer.learning_rate = lr
  if weight_decay is not None:
    config.optimizer.weight_decay = weight_decay
    config.optimizer.options.adam_weight_decay = 0.1
  if adam_ratio > 0:
    config.optimizer.lr_ratios.adam_learning_rate = adam_ratio
  for k, v in (options or {}).items():
    setattr(config.optimizer.options, k, v)
  for k, v in (lr_ratios or {}).items():
    setattr(config.optimizer.lr_ratios, k, v)
  config.train_steps = steps
  config.eval_every = 25
  config.log_every = 25
  config.checkpoint_every = steps
  trainer.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  if not rows or rows[-1]["step"] < steps:  # e.g. stopped by SIGTERM: never cache a partial run
    raise SystemExit(f"{workdir}: the run stopped before step {steps}; rerun to resume it")
  return rows


def bracket(loss_at, grid) -> dict:
  """``{x: loss_at(x)}`` over ``grid``, extended by factors of 2 on the side of the best
  (at most ``MAX_EXTEND`` times) until the best has a worse neighbour on both sides; sorted."""
  losses = {x: loss_at(x) for x in grid}
  for _ in range(MAX_EXTEND):
    if bracketed(losses):
      break
    x = best_of(losses)[0]
    x = float(f"{(x * 2 if x == max(losses) else x / 2):.4g}")
    losses[x] = loss_at(x)
  return dict(sorted(losses.items()))


def family_best_lr(family: dict, name: str) -> float:
  """The best lr of ``name``'s family sweep (seed 0)."""
  return best_of({lr: loss for lr, (_, loss) in family[name].items()})[0]


def first_step_below(rows: list[dict], target: float) -> float | None:
  """Linear interpolation of the first step whose eval loss reaches ``target``."""
  evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
  for (s0, l0), (s1, l1) in zip(evals, evals[1:]):
    if l1 <= target:
      return s0 + (s1 - s0) * (l0 - target) / (l0 - l1) if l0 > target else s0
  return float(evals[0][0]) if evals and evals[0][1] <= target else None


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--steps", type=int, default=600)
  p.add_argument("--adamw_lrs", default="1e-3,3e-3,1e-2")
  p.add_argument("--muon_lr", type=float, default=6e-3)
  p.add_argument("--workdir", default="/tmp/optax_muon_headline")
  p.add_argument("--batch", type=int, default=None,
                 help="rows per step (default: the default config's 16); keyed /batch=B")
  p.add_argument("--muon_adam_ratio", type=float, default=0.0,
                 help="Muon's AdamW leaves at this multiple of muon_lr (0: the same lr)")
  p.add_argument("--half", action="store_true",
                 help="also train Muon for steps/2 with its own schedule (compute-efficiency view)")
  p.add_argument("--family", action="store_true",
                 help="also sweep Muon, Muown and Muon++ (bracketed) on the same model")
  p.add_argument("--wd", action="store_true",
                 help="with --family: weight-decay sensitivity of Muon and Muown at their best lr")
  p.add_argument("--ns-check", action="store_true",
                 help="Muon with ns_method standard vs auto (Gram) at the default lr")
  p.add_argument("--magnitude", action="store_true",
                 help="with --family: Muown's magnitude lr (x its lr), bracketed, at its best lr")
  p.add_argument("--init-check", action="store_true",
                 help="with --family: Muon++ with the fan-in init at its two best lrs")
  p.add_argument("--muon-variants", action="store_true",
                 help="with --family: Muon at its best lr with other AdamW-leaf lrs and with "
                      "Polar Express coefficients")
  args = p.parse_args()

  cache = json.load(open(RUNS_FILE)) if os.path.exists(RUNS_FILE) else {}
  batch_tag = "" if args.batch is None else f"/batch={args.batch}"
  out_name = ("headline" + ("" if args.steps == 600 else f"_steps{args.steps}")
              + ("" if args.batch is None else f"_batch{args.batch}"))

  def in_setting(key):
    """A run at this report's steps and batch."""
    return re.search(rf"/steps={args.steps}{re.escape(batch_tag)}(/|$)", key) is not None and (
        args.batch is not None or "/batch=" not in key)

  def ensure(name, lr, steps, adam_ratio=0.0, model=None, suffix="", seed=0, wd=None,
             options=None, lr_ratios=None):
    key = (f"{name}/lr={lr:g}/steps={steps}{batch_tag}" + suffix
           + (f"/seed={seed}" if seed else "") + ("" if wd is None else f"/wd={wd:g}"))
    if key not in cache:
      print(f"running {key}", flush=True)
      cache[key] = run(name, lr, steps, os.path.join(args.workdir, key.replace("/", "_")),
                       adam_ratio, model, seed, wd, options, lr_ratios, args.batch)
      _common.write_json(os.path.basename(RUNS_FILE), cache)
    return key

  final = lambda rows: [r["eval_loss"] for r in rows if "eval_loss" in r][-1]
  # AdamW's grid, extended by factors of 2 until its best has a worse neighbour on both sides.
  bracket(lambda lr: final(cache[ensure("adamw", lr, args.steps)]),
          [float(lr) for lr in args.adamw_lrs.split(",")])
  suffix = f"/adam_ratio={args.muon_adam_ratio:g}" if args.muon_adam_ratio else ""
  muon_keys = {steps: ensure("muon", args.muon_lr, steps, args.muon_adam_ratio, suffix=suffix)
               for steps in ((args.steps, args.steps // 2) if args.half else (args.steps,))}

  family, seeds = {}, {}  # seeds: the second-seed rerun of each family optimizer's best lr
  wd_runs = {}  # name -> (lr, {weight decay: final eval})
  magnitude_runs = {}  # Muown's magnitude lr ratio -> final eval, at Muown's best lr
  init_runs = {}  # Muon++ lr -> (final eval with the μP init, with the fan-in init)
  variant_runs = {}  # Muon at its best lr: variant label -> cache key
  if args.family:
    for name, (grid, model) in FAMILY.items():
      tag = "".join(f"/{k}" if v is True else f"/{k}={v}" for k, v in model.items())
      keys = {}

      def loss_at(lr, name=name, model=model, tag=tag):
        keys[lr] = ensure(name, lr, args.steps, model=model, suffix=tag)
        return final(cache[keys[lr]])

      family[name] = {lr: (keys[lr], loss) for lr, loss in bracket(loss_at, grid).items()}
      best_lr = family_best_lr(family, name)
      seeds[name] = ensure(name, best_lr, args.steps, model=model, suffix=tag, seed=1)
      if args.wd and name in WD_DEFAULT:
        wd_runs[name] = (best_lr, {
            wd: final(cache[family[name][best_lr][0] if wd == WD_DEFAULT[name] else
                            ensure(name, best_lr, args.steps, model=model, suffix=tag, wd=wd)])
            for wd in WD_GRID})
      if args.magnitude and name == "muown":
        ratio_key = lambda r: (family[name][best_lr][0] if r == 1 else ensure(
            name, best_lr, args.steps, model=model, suffix=tag + f"/magnitude_ratio={r:g}",
            lr_ratios={"magnitude_learning_rate": r}))
        magnitude_runs = bracket(lambda r: final(cache[ratio_key(r)]), (0.5, 1.0, 2.0))
      if args.init_check and name == "muon_plus_plus":
        two_best = sorted(family[name], key=lambda lr: family[name][lr][1])[:2]
        init_runs = {lr: (family[name][lr][1], final(cache[ensure(
            name, lr, args.steps, model={**model, "mup_init": False},
            suffix="/mup_init=False")])) for lr in sorted(two_best)}
      if args.muon_variants and name == "muon":
        variant_runs = {f"AdamW leaves at {r:g}x": ensure(
            name, best_lr, args.steps, r, suffix=f"/adam_ratio={r:g}") for r in MUON_ADAM_RATIOS}
        variant_runs["Polar Express coefficients"] = ensure(
            name, best_lr, args.steps, suffix="/ns_schedule=polar_express",
            options={"ns_schedule": "polar_express"})
  ns_runs = {m: ensure("muon", args.muon_lr, args.steps, suffix=f"/ns_method={m}",
                       options={"ns_method": m})
             for m in (("standard", "auto") if args.ns_check else ())}
  adamw = {k: v for k, v in cache.items()
           if k.startswith("adamw/") and k.endswith(f"steps={args.steps}{batch_tag}")}
  best_key = min(adamw, key=lambda k: final(adamw[k]))
  target = final(adamw[best_key])
  adamw_bracketed = bracketed({float(k.split("/")[1][3:]): final(v) for k, v in adamw.items()})
  muon_key = muon_keys[args.steps]
  reach = first_step_below(cache[muon_key], target)
  rows = [[k, final(v)] for k, v in cache.items() if in_setting(k)]
  ratio = None if reach is None else reach / args.steps
  summary = {"steps": args.steps, "batch": args.batch or 16, "tuned_adamw": best_key,
             "adamw_bracketed": adamw_bracketed, "adamw_final_eval": target,
             "muon": muon_key, "muon_final_eval": final(cache[muon_key]),
             "muon_steps_to_adamw_final": reach, "steps_ratio": ratio}
  half_key = muon_keys.get(args.steps // 2)
  if half_key is not None:
    summary["muon_half_run"] = half_key
    summary["muon_half_run_final_eval"] = final(cache[half_key])
    rows.append([half_key, final(cache[half_key])])
  notes = [f"cpu192 preset (4 layers, d_model 192), {args.steps} steps, "
           f"batch {args.batch or 16} x 128 bytes, "
           "default config otherwise; one seed; eval every 25 steps.",
           f"Tuned AdamW = {best_key}: final eval {target:.3f} (its lr sweep "
           f"{'bracketed' if adamw_bracketed else 'NOT bracketed'}). Muon ({muon_key}) final eval "
           f"{summary['muon_final_eval']:.3f}; reaches AdamW's final eval at step "
           f"{'never' if reach is None else f'{reach:.0f}'}"
           f" = {'-' if ratio is None else f'{ratio:.2f}'}x the steps."]
  if args.steps == 600 and args.batch is None:
    notes.append("Reference (figures to beat, optax.contrib.muon, same setting): 0.42x the "
                 "steps, final 1.31 vs AdamW 1.72.")
  family_rows = []
  for name, runs in family.items():
    losses = {lr: loss for lr, (_, loss) in runs.items()}
    best_lr, best = best_of(losses)
    lo, hi = plateau(losses)
    reach_best = first_step_below(cache[runs[best_lr][0]], target)
    second = final(cache[seeds[name]])
    summary.setdefault("family", {})[name] = {
        "sweep": {f"{lr:g}": loss for lr, loss in losses.items()}, "best_lr": best_lr,
        "best_final_eval": best, "best_final_eval_seed1": second,
        "best_final_eval_mean": (best + second) / 2, "plateau": [lo, hi],
        "bracketed": bracketed(losses),
        "steps_ratio_at_best": None if reach_best is None else reach_best / args.steps}
    family_rows.append([name, ", ".join(f"{lr:g}: {loss:.3f}" for lr, loss in losses.items()),
                        f"{best_lr:g}", f"{best:.4f} / {second:.4f}", f"{(best + second) / 2:.4f}",
                        f"{lo:g} – {hi:g} ({hi / lo:g}x)",
                        "yes" if bracketed(losses) else "NO",
                        "-" if reach_best is None else f"{reach_best / args.steps:.2f}"])
  wd_rows = []
  for name, (lr, by_wd) in wd_runs.items():
    spread = max(by_wd.values()) - min(by_wd.values())
    summary.setdefault("weight_decay", {})[name] = {
        "lr": lr, "final_eval": {f"{wd:g}": v for wd, v in by_wd.items()}, "wd_spread": spread}
    wd_rows.append([name, f"{lr:g}", *[f"{by_wd[wd]:.4f}" for wd in WD_GRID], f"{spread:.4f}"])
  if magnitude_runs:
    summary["muown_magnitude_ratio"] = {f"{r:g}": v for r, v in magnitude_runs.items()}
    best_r = best_of(magnitude_runs)[0]
    notes.append("Muown's magnitude lr (`--magnitude`, multiples of its lr "
                 f"{family_best_lr(family, 'muown'):g}; 1 is the alias's default): "
                 + ", ".join(f"{r:g}x: {v:.4f}" for r, v in magnitude_runs.items())
                 + f"; best {best_r:g}x" + ("" if bracketed(magnitude_runs) else " (NOT bracketed)")
                 + ".")
  if init_runs:
    summary["muon_plus_plus_init"] = {f"{lr:g}": {"mup_init": a, "fan_in_init": b}
                                      for lr, (a, b) in init_runs.items()}
    notes.append("Muon++ init (`--init-check`), final eval with the μP init / the fan-in init: "
                 + ", ".join(f"lr {lr:g}: {a:.4f} / {b:.4f}" for lr, (a, b) in init_runs.items())
                 + ".")
  if variant_runs:
    base_key = family["muon"][family_best_lr(family, "muon")][0]
    described = {}
    for label, key in {"as the alias (AdamW leaves at 1x, Jordan)": base_key,
                       **variant_runs}.items():
      reach_v = first_step_below(cache[key], target)
      described[label] = {"run": key, "final_eval": final(cache[key]),
                          "steps_ratio": None if reach_v is None else reach_v / args.steps}
    summary["muon_variants"] = described
    notes.append(f"Muon variants at its best lr {family_best_lr(family, 'muon'):g} "
                 "(`--muon-variants`; final eval, steps ratio to tuned AdamW's final): "
                 + "; ".join(f"{label}: {d['final_eval']:.4f}, "
                             + ("-" if d["steps_ratio"] is None else f"{d['steps_ratio']:.2f}")
                             for label, d in described.items()) + ".")
  if ns_runs:
    evals = {m: {r["step"]: r["eval_loss"] for r in cache[k] if "eval_loss" in r}
             for m, k in ns_runs.items()}
    diff = max(abs(evals["auto"][s] - evals["standard"][s]) for s in evals["standard"])
    summary["ns_check"] = {"final_eval": {m: final(cache[k]) for m, k in ns_runs.items()},
                           "max_abs_eval_difference": diff}
    notes.append(f"Newton–Schulz method (`--ns-check`, Muon lr {args.muon_lr:g}): final eval "
                 f"{final(cache[ns_runs['standard']]):.4f} with the standard iteration, "
                 f"{final(cache[ns_runs['auto']]):.4f} with `auto` (Gram on the 1:4 matrices, "
                 f"the default); their eval curves differ by at most {diff:.1e}.")
  info = _common.machine_info()
  _common.write_json(f"{out_name}.json", {"machine": info, "summary": summary})
  if "muon_half_run" in summary:
    h = summary["muon_half_run_final_eval"]
    verdict = "reaches" if h <= target else "does not reach"
    notes.append(f"Compute view (Moonlight's 2x claim: each run fully scheduled): Muon trained "
                 f"for {args.steps // 2} steps with its own schedule ({half_key}) ends at "
                 f"{h:.3f} vs tuned AdamW's {target:.3f} at {args.steps}: {verdict} it in 0.5x "
                 "the steps.")
  title = "Headline: Muon vs tuned AdamW on the default model" + (
      "" if args.batch is None else f", batch {args.batch}")
  md = (_common.md_header(title, info,
                          "python benchmarks/headline.py" + "".join(f" {a}" for a in sys.argv[1:]),
                          notes)
        + "\n" + _common.md_table(["run", "final eval loss"], rows))
  if family_rows:
    md += ("\n\n## The Muon family on the default model (`--family`)\n\n"
           "Each optimizer with its alias's defaults (weight decay: Muon 0.1; Muown and Muon++ 0 "
           "on matrices, 0.1 on the AdamW leaves) and the init it calls for (Muon++: μP init, lr "
           "in spectral units). Sweep with seed 0; the best lr rerun with seed 1. Plateau: lrs "
           "within 0.02 nats of the seed-0 best. Steps ratio: first step reaching tuned AdamW's "
           "final eval, over the run length, at the best lr (seed 0).\n\n"
           + _common.md_table(["optimizer", "sweep (lr: final eval)", "best lr",
                               "final eval (seeds 0 / 1)", "mean", "plateau", "bracketed",
                               "steps ratio"], family_rows))
  if wd_rows:
    md += ("\n\n## Weight-decay sensitivity on the default model (`--wd`)\n\n"
           "At each optimizer's best lr (seed 0), weight decay on the hidden matrices (the "
           "AdamW leaves at 0.1 throughout); wd_spread = max - min final eval.\n\n"
           + _common.md_table(["optimizer", "lr", *[f"wd {wd:g}" for wd in WD_GRID],
                               "wd_spread"], wd_rows))
  _common.write_text(f"{out_name}.md", md)
  print(md)


if __name__ == "__main__":
  main()
