"""The project's headline quality comparison: Muon vs tuned AdamW on the default model.

    python benchmarks/headline.py               # 600 steps, AdamW lr {1e-3, 3e-3, 1e-2}, Muon lr 6e-3
    python benchmarks/headline.py --steps 100   # a quick look
    python benchmarks/headline.py --family      # + bracketed Muon/Muown/Muon++ sweeps (~1 h more)
    python benchmarks/headline.py --family --wd # + weight decay 0-0.4 at Muon's and Muown's best lr
    python benchmarks/headline.py --ns-check    # + Muon with standard vs auto (Gram) Newton–Schulz
    python benchmarks/headline.py --family --magnitude    # + Muown's magnitude lr, bracketed
    python benchmarks/headline.py --family --init-check   # + Muon++ with the fan-in init
    python benchmarks/headline.py --family --muon-variants  # + Muon with other AdamW-leaf lrs, Polar Express
    python benchmarks/headline.py ... --report-only       # rebuild results/headline*.{json,md} from the cache

Setting: the default config (``cpu192`` preset: 4 layers, d_model 192; batch 16 x 128
bytes, cosine schedule, warmup 40, grad clip 1, weight decay 0.1), one seed, eval every
25 steps on the fixed eval batches: the setting of the "figures to beat"
(optax.contrib.muon reached tuned AdamW's final eval loss in 0.42x the steps).

Measurements, one function each:

- ``adamw_baseline``: AdamW over its lr grid, bracketed; its best final eval is the target.
- ``muon_default``: Muon at ``--muon_lr`` (and, with ``--half``, the same for half the steps
  with its own schedule); the first step its eval curve reaches the target, over the steps.
- ``family`` (``--family``): Muon, Muown and Muon++ each a factor-2 lr sweep, bracketed,
  best lr rerun with seed 1, each with its alias's defaults and the init it calls for
  (Muon++: ``model.mup_init``, lr in spectral units).
- ``weight_decay`` (``--wd``): Muon and Muown at their best lr with the matrices' decay in
  ``WD_GRID`` (AdamW leaves at 0.1 throughout); ``wd_spread`` = max − min final eval.
- ``magnitude`` (``--magnitude``): Muown's magnitude lr as a multiple of its lr, bracketed.
- ``init_check`` (``--init-check``): Muon++ at its two best lrs with the fan-in init.
- ``muon_variants`` (``--muon-variants``): Muon at its best lr with its AdamW leaves at
  ``MUON_ADAM_RATIOS`` × its lr, and with Polar Express coefficients.
- ``ns_check`` (``--ns-check``): Muon with ``ns_method="standard"`` and ``"auto"``.

``--batch B`` (e.g. ``--batch 64 --steps 300``): the same with B rows per step (results in
``headline[_stepsS]_batchB.*``). Runs are cached in ``benchmarks/runs/headline.json``
(``_sweep.RunCache``); a rerun only fills gaps. Every run records the AdamW leaves' lr
(``adam_lr``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common  # noqa: E402
import _sweep  # noqa: E402
from _sweep import best_of, bracketed, final_eval, first_step_reaching, plateau  # noqa: E402

CACHE = _sweep.RUNS_DIR / "headline.json"
# --family: first lr grid per optimizer (factor 2, extended until bracketed) and the model
# fields its runs set (the init it calls for).
FAMILY = {"muon": ((6e-3, 1.2e-2, 2.4e-2), {}),
          "muown": ((6e-3, 1.2e-2, 2.4e-2), {}),
          "muon_plus_plus": ((2e-2, 4e-2, 8e-2), {"model.mup_init": True})}
MAX_EXTEND = 3
WD_GRID = (0.0, 0.05, 0.1, 0.2, 0.4)
WD_DEFAULT = {"muon": 0.1, "muown": 0.0}  # the alias default, whose run the sweep already has
MUON_ADAM_RATIOS = (0.25, 2.0, 4.0)  # --muon-variants: the AdamW leaves' lr, x Muon's
DEFAULT_BATCH = 16


def train(spec: dict, workdir: str) -> dict:
  """Trains one run with the trainer; returns its record (eval curve, train loss, metrics)."""
  from train import trainer

  config = _sweep.trainer_config(spec)
  config.eval_every = 25
  config.log_every = 25
  config.checkpoint_every = spec["steps"]
  trainer.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  if not rows or rows[-1]["step"] < spec["steps"]:  # e.g. stopped by SIGTERM: never cache it
    raise SystemExit(f"{workdir}: the run stopped before step {spec['steps']}; rerun to resume")
  return {"eval_curve": [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r],
          "train_loss": [(r["step"], r["loss"]) for r in rows if "loss" in r],
          "diverged": False, "metrics": rows}


@dataclasses.dataclass
class Setting:
  """One report's steps, batch and cache; ``run`` returns a run's record, training it if
  needed (never with ``--report-only``)."""

  steps: int
  batch: int
  cache: _sweep.RunCache
  workdir: str
  report_only: bool = False

  def spec(self, optimizer: str, lr: float, adam_ratio: float = 1.0, seed: int = 0,
           steps: int | None = None, **fields) -> dict:
    return {"optimizer": optimizer, "lr": lr, "adam_lr": _sweep.grid_value(lr * adam_ratio),
            "steps": self.steps if steps is None else steps, "batch": self.batch, "seed": seed,
            **fields}

  def run(self, *args, **kwargs) -> tuple[str, dict]:
    spec = self.spec(*args, **kwargs)
    key = _sweep.run_key(spec)

    def train_it(s):
      if self.report_only:
        raise SystemExit(f"--report-only: run {key} is not in {self.cache.path}")
      return train(s, os.path.join(self.workdir, key.replace("/", "_")))

    return key, self.cache.ensure(spec, train_it)

  def loss(self, *args, **kwargs) -> float:
    return final_eval(self.run(*args, **kwargs)[1])

  def in_setting(self) -> list[tuple[str, dict]]:
    return [(k, r) for k, r in self.cache.runs.items()
            if r["spec"]["steps"] == self.steps and r["spec"]["batch"] == self.batch]


# ----------------------------------------------------------------------------- measurements


def adamw_baseline(s: Setting, grid) -> dict:
  """AdamW's grid, extended by factors of 2 until bracketed; its best is the target."""
  losses = _sweep.bracket(lambda lr: s.loss("adamw", lr), grid, max_extend=MAX_EXTEND)
  lr, target = best_of(losses)
  return {"lr": lr, "key": s.run("adamw", lr)[0], "target": target,
          "bracketed": bracketed(losses), "sweep": losses}


def muon_default(s: Setting, lr: float, adam_ratio: float, half: bool) -> dict:
  """Muon at one lr: its key and record, and (``half``) the half-length run's."""
  ratio = adam_ratio or 1.0
  out = {"full": s.run("muon", lr, ratio)}
  if half:
    out["half"] = s.run("muon", lr, ratio, steps=s.steps // 2)
  return out


def family(s: Setting) -> dict:
  """Per optimizer: ``{"sweep": {lr: loss}, "fields": model fields, "seed1": loss}``."""
  out = {}
  for name, (grid, fields) in FAMILY.items():
    sweep = _sweep.bracket(lambda lr, n=name, f=fields: s.loss(n, lr, **f), grid,
                           max_extend=MAX_EXTEND)
    best_lr, _ = best_of(sweep)
    out[name] = {"sweep": sweep, "fields": fields, "best_lr": best_lr,
                 "seed1": s.loss(name, best_lr, seed=1, **fields)}
  return out


def weight_decay(s: Setting, fam: dict) -> dict:
  """Muon and Muown at their best lr, over ``WD_GRID`` (AdamW leaves' decay at 0.1)."""
  out = {}
  for name, default_wd in WD_DEFAULT.items():
    lr, fields = fam[name]["best_lr"], fam[name]["fields"]
    out[name] = (lr, {wd: fam[name]["sweep"][lr] if wd == default_wd else
                      s.loss(name, lr, wd=wd, adam_wd=0.1, **fields) for wd in WD_GRID})
  return out


def magnitude(s: Setting, fam: dict) -> dict:
  """Muown's magnitude lr (× its lr; 1 = the alias default) at its best lr, bracketed."""
  lr = fam["muown"]["best_lr"]
  loss_at = lambda r: (fam["muown"]["sweep"][lr] if r == 1 else
                       s.loss("muown", lr, **{"lr_ratios.magnitude_learning_rate": r}))
  return _sweep.bracket(loss_at, (0.5, 1.0, 2.0), max_extend=MAX_EXTEND)


def init_check(s: Setting, fam: dict) -> dict:
  """Muon++ at its two best lrs: ``{lr: (final eval with the μP init, with fan-in)}``."""
  sweep = fam["muon_plus_plus"]["sweep"]
  two_best = sorted(sorted(sweep, key=sweep.get)[:2])
  return {lr: (sweep[lr], s.loss("muon_plus_plus", lr, **{"model.mup_init": False}))
          for lr in two_best}


def muon_variants(s: Setting, fam: dict) -> dict:
  """Muon at its best lr: label -> (key, record), the alias itself first."""
  lr = fam["muon"]["best_lr"]
  out = {"as the alias (AdamW leaves at 1x, Jordan)": s.run("muon", lr)}
  out.update({f"AdamW leaves at {r:g}x": s.run("muon", lr, r) for r in MUON_ADAM_RATIOS})
  out["Polar Express coefficients"] = s.run("muon", lr,
                                            **{"options.ns_schedule": "polar_express"})
  return out


def ns_check(s: Setting, lr: float) -> dict:
  """Muon at ``lr`` with the standard and the ``auto`` Newton–Schulz: method -> record."""
  return {m: s.run("muon", lr, **{"options.ns_method": m})[1] for m in ("standard", "auto")}


# ----------------------------------------------------------------------------- report


def _ratio(rec: dict, target: float, steps: int) -> float | None:
  reach = first_step_reaching(rec["eval_curve"], target)
  return None if reach is None else reach / steps


def _fmt_ratio(r: float | None) -> str:
  return "-" if r is None else f"{r:.2f}"


def report(s: Setting, args, base: dict, muon: dict, fam: dict, wd: dict, mag: dict,
           init: dict, variants: dict, ns: dict) -> tuple[dict, str]:
  """The results JSON summary and the markdown report."""
  target = base["target"]
  muon_key, muon_rec = muon["full"]
  reach = first_step_reaching(muon_rec["eval_curve"], target)
  ratio = None if reach is None else reach / s.steps
  runs = s.in_setting()
  summary = {"steps": s.steps, "batch": s.batch, "tuned_adamw": base["key"],
             "adamw_bracketed": base["bracketed"], "adamw_final_eval": target,
             "muon": muon_key, "muon_final_eval": final_eval(muon_rec),
             "muon_steps_to_adamw_final": reach, "steps_ratio": ratio,
             "runs": {k: {"spec": r["spec"], "final_eval": final_eval(r)} for k, r in runs}}
  rows = [[k, final_eval(r)] for k, r in runs]
  notes = [f"cpu192 preset (4 layers, d_model 192), {s.steps} steps, batch {s.batch} x 128 "
           "bytes, default config otherwise; one seed; eval every 25 steps. Run keys name every "
           "setting that differs, `adam_lr` the AdamW leaves' peak lr.",
           f"Tuned AdamW = {base['key']}: final eval {target:.3f} (its lr sweep "
           f"{'bracketed' if base['bracketed'] else 'NOT bracketed'}). Muon ({muon_key}) final "
           f"eval {summary['muon_final_eval']:.3f}; reaches AdamW's final eval at step "
           f"{'never' if reach is None else f'{reach:.0f}'} = {_fmt_ratio(ratio)}x the steps."]
  if s.steps == 600 and s.batch == DEFAULT_BATCH:
    notes.append("Reference (figures to beat, optax.contrib.muon, same setting): 0.42x the "
                 "steps, final 1.31 vs AdamW 1.72.")
  if mag:
    summary["muown_magnitude_ratio"] = {f"{r:g}": v for r, v in mag.items()}
    notes.append("Muown's magnitude lr (`--magnitude`, multiples of its lr "
                 f"{fam['muown']['best_lr']:g}; 1 is the alias's default): "
                 + ", ".join(f"{r:g}x: {v:.4f}" for r, v in mag.items())
                 + f"; best {best_of(mag)[0]:g}x" + ("" if bracketed(mag) else " (NOT bracketed)")
                 + ".")
  if init:
    summary["muon_plus_plus_init"] = {f"{lr:g}": {"mup_init": a, "fan_in_init": b}
                                      for lr, (a, b) in init.items()}
    notes.append("Muon++ init (`--init-check`), final eval with the μP init / the fan-in init: "
                 + ", ".join(f"lr {lr:g}: {a:.4f} / {b:.4f}" for lr, (a, b) in init.items()) + ".")
  if variants:
    described = {label: {"run": k, "adam_lr": r["spec"]["adam_lr"], "final_eval": final_eval(r),
                         "steps_ratio": _ratio(r, target, s.steps)}
                 for label, (k, r) in variants.items()}
    summary["muon_variants"] = described
    notes.append(f"Muon variants at its best lr {fam['muon']['best_lr']:g} (`--muon-variants`; "
                 "final eval, steps ratio to tuned AdamW's final): "
                 + "; ".join(f"{label}: {d['final_eval']:.4f}, {_fmt_ratio(d['steps_ratio'])}"
                             for label, d in described.items()) + ".")
  if ns:
    evals = {m: dict(r["eval_curve"]) for m, r in ns.items()}
    diff = max(abs(evals["auto"][k] - evals["standard"][k]) for k in evals["standard"])
    summary["ns_check"] = {"final_eval": {m: final_eval(r) for m, r in ns.items()},
                           "max_abs_eval_difference": diff}
    notes.append(f"Newton–Schulz method (`--ns-check`, Muon lr {args.muon_lr:g}): final eval "
                 f"{final_eval(ns['standard']):.4f} with the standard iteration, "
                 f"{final_eval(ns['auto']):.4f} with `auto` (Gram on the 1:4 matrices, the "
                 f"default); their eval curves differ by at most {diff:.1e}.")
  if "half" in muon:
    half_key, half_rec = muon["half"]
    h = final_eval(half_rec)
    summary["muon_half_run"], summary["muon_half_run_final_eval"] = half_key, h
    if half_key not in dict(runs):
      rows.append([half_key, h])
    notes.append(f"Compute view (Moonlight's 2x claim: each run fully scheduled): Muon trained "
                 f"for {s.steps // 2} steps with its own schedule ({half_key}) ends at {h:.3f} vs "
                 f"tuned AdamW's {target:.3f} at {s.steps}: "
                 f"{'reaches' if h <= target else 'does not reach'} it in 0.5x the steps.")
  title = "Headline: Muon vs tuned AdamW on the default model" + (
      "" if s.batch == DEFAULT_BATCH else f", batch {s.batch}")
  command = "python benchmarks/headline.py" + "".join(
      f" {a}" for a in args.argv if a != "--report-only")
  info = args.info
  md = (_common.md_header(title, info, command, notes)
        + "\n" + _common.md_table(["run", "final eval loss"], rows))
  md += _family_section(s, fam, summary, target) + _wd_section(wd, summary)
  return {"machine": info, "summary": summary}, md


def _family_section(s: Setting, fam: dict, summary: dict, target: float) -> str:
  rows = []
  for name, f in fam.items():
    sweep, best_lr = f["sweep"], f["best_lr"]
    best, second = sweep[best_lr], f["seed1"]
    lo, hi = plateau(sweep)
    ratio = _ratio(s.run(name, best_lr, **f["fields"])[1], target, s.steps)
    summary.setdefault("family", {})[name] = {
        "sweep": {f"{lr:g}": loss for lr, loss in sweep.items()}, "best_lr": best_lr,
        "adam_lr": s.spec(name, best_lr)["adam_lr"], "best_final_eval": best,
        "best_final_eval_seed1": second, "best_final_eval_mean": (best + second) / 2,
        "plateau": [lo, hi], "bracketed": bracketed(sweep), "steps_ratio_at_best": ratio}
    rows.append([name, ", ".join(f"{lr:g}: {loss:.3f}" for lr, loss in sweep.items()),
                 f"{best_lr:g}", f"{best:.4f} / {second:.4f}", f"{(best + second) / 2:.4f}",
                 f"{lo:g} – {hi:g} ({hi / lo:g}x)", "yes" if bracketed(sweep) else "NO",
                 _fmt_ratio(ratio)])
  if not rows:
    return ""
  return ("\n\n## The Muon family on the default model (`--family`)\n\n"
          "Each optimizer with its alias's defaults (weight decay: Muon 0.1; Muown and Muon++ 0 "
          "on matrices, 0.1 on the AdamW leaves; the AdamW leaves at the optimizer's lr) and the "
          "init it calls for (Muon++: μP init, lr in spectral units). Sweep with seed 0; the best "
          "lr rerun with seed 1. Plateau: lrs within 0.02 nats of the seed-0 best. Steps ratio: "
          "first step reaching tuned AdamW's final eval, over the run length, at the best lr "
          "(seed 0).\n\n"
          + _common.md_table(["optimizer", "sweep (lr: final eval)", "best lr",
                              "final eval (seeds 0 / 1)", "mean", "plateau", "bracketed",
                              "steps ratio"], rows))


def _wd_section(wd: dict, summary: dict) -> str:
  rows = []
  for name, (lr, by_wd) in wd.items():
    spread = max(by_wd.values()) - min(by_wd.values())
    summary.setdefault("weight_decay", {})[name] = {
        "lr": lr, "final_eval": {f"{w:g}": v for w, v in by_wd.items()}, "wd_spread": spread}
    rows.append([name, f"{lr:g}", *[f"{by_wd[w]:.4f}" for w in WD_GRID], f"{spread:.4f}"])
  if not rows:
    return ""
  return ("\n\n## Weight-decay sensitivity on the default model (`--wd`)\n\n"
          "At each optimizer's best lr (seed 0), weight decay on the hidden matrices (the "
          "AdamW leaves at 0.1 throughout); wd_spread = max - min final eval.\n\n"
          + _common.md_table(["optimizer", "lr", *[f"wd {w:g}" for w in WD_GRID], "wd_spread"],
                             rows))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--steps", type=int, default=600)
  p.add_argument("--adamw_lrs", default="1e-3,3e-3,1e-2")
  p.add_argument("--muon_lr", type=float, default=6e-3)
  p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "optax_muon_headline"))
  p.add_argument("--batch", type=int, default=None,
                 help=f"rows per step (default: the default config's {DEFAULT_BATCH})")
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
  p.add_argument("--cache", default=str(CACHE), help="the run cache (JSON)")
  p.add_argument("--report-only", action="store_true",
                 help="train nothing: rebuild the results from the cached runs")
  args = p.parse_args(argv)
  args.argv = list(sys.argv[1:] if argv is None else argv)
  return args


def main(argv=None) -> None:
  args = parse_args(argv)
  s = Setting(args.steps, args.batch or DEFAULT_BATCH, _sweep.RunCache(args.cache),
              args.workdir, args.report_only)
  out_name = ("headline" + ("" if args.steps == 600 else f"_steps{args.steps}")
              + ("" if args.batch is None else f"_batch{args.batch}"))
  base = adamw_baseline(s, [float(lr) for lr in args.adamw_lrs.split(",")])
  muon = muon_default(s, args.muon_lr, args.muon_adam_ratio, args.half)
  fam = family(s) if args.family else {}
  wd = weight_decay(s, fam) if fam and args.wd else {}
  mag = magnitude(s, fam) if fam and args.magnitude else {}
  init = init_check(s, fam) if fam and args.init_check else {}
  variants = muon_variants(s, fam) if fam and args.muon_variants else {}
  ns = ns_check(s, args.muon_lr) if args.ns_check else {}
  args.info = _common.machine_info()
  payload, md = report(s, args, base, muon, fam, wd, mag, init, variants, ns)
  _common.write_json(f"{out_name}.json", payload)
  _common.write_text(f"{out_name}.md", md)
  print(md)


if __name__ == "__main__":
  main()
