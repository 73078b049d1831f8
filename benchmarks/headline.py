"""The project's headline quality comparison: Muon vs tuned AdamW on the default model.

    python benchmarks/headline.py               # 600 steps, AdamW lr {1e-3, 3e-3, 1e-2}, Muon lr 6e-3
    python benchmarks/headline.py --steps 100   # a quick look
    python benchmarks/headline.py --family      # + bracketed Muon/Muown/Muon++ sweeps, equal AdamW
                                                # leaves, on the default and the fused-QKV model
    python benchmarks/headline.py --family --split-check  # + the fused QKV as one matrix
    python benchmarks/headline.py --family --wd # + weight decay 0-0.4 at Muon's and Muown's best lr
    python benchmarks/headline.py --ns-check    # + Muon with standard vs auto (Gram) Newton–Schulz
    python benchmarks/headline.py --family --magnitude    # + Muown's magnitude lr, bracketed
    python benchmarks/headline.py --family --init-check   # + Muon++ with the fan-in init
    python benchmarks/headline.py --family --muon-variants  # + Muon's AdamW-leaf lr sweep, Polar Express
    python benchmarks/headline.py ... --report-only       # rebuild results/headline*.{json,md} from the cache

Setting: the default config (``cpu192`` preset: 4 layers, d_model 192; batch 16 x 128
bytes, cosine schedule, warmup 40, grad clip 1, weight decay 0.1), one seed, eval every
25 steps on the fixed eval batches: the setting of the "figures to beat"
(optax.contrib.muon reached tuned AdamW's final eval loss in 0.42x the steps).
``cpu192_fused`` (``--family`` compares on it too; ``--preset`` makes it the main model): the
same size laid out as GPT-2 (one fused ``[d, 3d]`` QKV kernel, multi-head attention, GPT-2's
normal(0.02) init), its own tuned AdamW lr setting its leaves.

The AdamW leaves (embeddings, head, norms) of every Muon variant are their own axis: in
every comparison of optimizers they run at one peak lr, tuned AdamW's best for the setting
(``adam_lr`` of every run, in the results JSON), unless the table sweeps them.

Measurements, one function each:

- ``adamw_baseline``: AdamW over its lr grid, bracketed; its best final eval is the target.
- ``muon_default``: Muon at ``--muon_lr``, its AdamW leaves at tuned AdamW's lr (and, with
  ``--half``, the same for half the steps with its own schedule); the first step its eval
  curve reaches the target, over the steps.
- ``family`` (``--family``, on each model of ``--family-presets``): Muon, Muown and Muon++
  (``FAMILY_BY_PRESET``) each a factor-2 lr sweep of the
  matrices, bracketed, the AdamW leaves at that model's tuned AdamW lr for all, each with its
  alias's defaults and the init the model calls for (default model: Muon++ from the μP
  init, its lr in spectral units; fused model: every optimizer from the model's own init);
  ``--seed1``: the best lr rerun with seed 1.
- ``split_check`` (``--split-check``, fused model): Muon and Muon++ at their best lr with
  the fused QKV kernel handed over as one ``[d, 3d]`` matrix instead of three ``[d, d]``.
- ``weight_decay`` (``--wd``): Muon and Muown at lr 0.012, leaves 0.012 (``WD_AT``), with
  the matrices' decay in ``WD_GRID`` (AdamW leaves' decay 0.1 throughout).
- ``magnitude`` (``--magnitude``): Muown's magnitude lr as a multiple of its lr, bracketed.
- ``init_check`` (``--init-check``): Muon++ at lrs 0.02 and 0.04 with the fan-in init.
- ``muon_variants`` (``--muon-variants``): Muon at lr ``MUON_VARIANTS_LR`` with its AdamW
  leaves at ``MUON_ADAM_LRS`` (the leaves' own bracketed sweep), and with Polar Express.
- ``leaves_sweep`` (``--leaves-sweep``): Muon++ at its lr with its AdamW leaves' lr swept,
  bracketed (``LEAVES_SWEEP``): what ``SPECTRAL_ADAM_LR_RATIO`` and the trainer's default
  for its leaves rest on.
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
DEFAULT_PRESET = "cpu192"
# --family: first lr grid per optimizer (factor 2, extended until bracketed).
FAMILY = {"muon": (6e-3, 1.2e-2),
          "muown": (6e-3, 1.2e-2),
          "muon_plus_plus": (1e-2, 2e-2, 4e-2)}
# The optimizers compared per preset, at equal AdamW leaves.
FAMILY_BY_PRESET = {"cpu192": ("muon", "muon_plus_plus", "muown"),
                    "cpu192_fused": ("muon", "muon_plus_plus", "muown")}
FUSED_PRESET = "cpu192_fused"
FAMILY_ADAMW_LRS = (1e-3, 3e-3, 1e-2)  # AdamW's first grid on a model other than --preset
# The model fields each optimizer's runs set, per preset: the init. The default model gives
# Muon++ the μP init it calls for; the fused model keeps its own init for every optimizer.
MODEL_FIELDS = {"cpu192": {"muon_plus_plus": {"model.mup_init": True}},
                "cpu192_fused": {"muon_plus_plus": {"model.mup_init": False}}}
MAX_EXTEND = 4
WD_GRID = (0.0, 0.05, 0.1, 0.2, 0.4)
WD_DEFAULT = {"muon": 0.1, "muown": 0.0}  # the alias default, whose run the sweep already has
WD_AT = 0.012  # --wd: lr and AdamW leaves' lr of Muon and Muown (their best, leaves at the lr)
MUOWN_AT = 0.012  # --magnitude: Muown's lr and leaves' lr
INIT_AT = (0.02, 0.04)  # --init-check: Muon++'s lrs (leaves at the lr)
MUON_VARIANTS_LR = 0.012  # --muon-variants: Muon's lr
MUON_ADAM_LRS = (0.003, 0.012, 0.024, 0.048)  # --muon-variants: its AdamW leaves' lr
# --leaves-sweep: Muon++ at this lr (its best at equal leaves), its AdamW leaves' lr swept from
# this grid (extended by factors of 2 until bracketed).
LEAVES_SWEEP = {"muon_plus_plus": (0.02, (0.003, 0.01, 0.02))}
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
  preset: str = DEFAULT_PRESET

  def spec(self, optimizer: str, lr: float, adam_ratio: float = 1.0, seed: int = 0,
           steps: int | None = None, adam_lr: float | None = None, **fields) -> dict:
    """A run's spec; the AdamW leaves at ``adam_lr`` (default: ``adam_ratio`` × ``lr``)."""
    adam = _sweep.grid_value(lr * adam_ratio if adam_lr is None else adam_lr)
    model = {} if self.preset == DEFAULT_PRESET else {"model.preset": self.preset}
    return {"optimizer": optimizer, "lr": lr, "adam_lr": adam,
            "steps": self.steps if steps is None else steps, "batch": self.batch, "seed": seed,
            **model, **fields}

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
    preset = lambda r: r["spec"].get("model.preset", DEFAULT_PRESET)
    return [(k, r) for k, r in self.cache.runs.items()
            if r["spec"]["steps"] == self.steps and r["spec"]["batch"] == self.batch
            and preset(r) == self.preset]

  def fields(self, optimizer: str) -> dict:
    """The model fields of ``optimizer``'s runs in this preset (``MODEL_FIELDS``)."""
    return dict(MODEL_FIELDS.get(self.preset, {}).get(optimizer, {}))


# ----------------------------------------------------------------------------- measurements


def adamw_baseline(s: Setting, grid) -> dict:
  """AdamW's grid, extended by factors of 2 until bracketed; its best is the target."""
  losses = _sweep.bracket(lambda lr: s.loss("adamw", lr), grid, max_extend=MAX_EXTEND)
  lr, target = best_of(losses)
  return {"lr": lr, "key": s.run("adamw", lr)[0], "target": target,
          "bracketed": bracketed(losses), "sweep": losses}


def muon_default(s: Setting, lr: float, adam_lr: float, half: bool) -> dict:
  """Muon at one lr, its leaves at ``adam_lr``: its key and record, and (``half``) the
  half-length run's."""
  out = {"full": s.run("muon", lr, adam_lr=adam_lr)}
  if half:
    out["half"] = s.run("muon", lr, adam_lr=adam_lr, steps=s.steps // 2)
  return out


def family(s: Setting, adam_lr: float, seed1: bool) -> dict:
  """Per optimizer of ``FAMILY_BY_PRESET``, its AdamW leaves at ``adam_lr``: ``{"sweep":
  {lr: loss}, "fields": model fields, "best_lr", "adam_lr", "seed1": loss or None}``."""
  out = {}
  for name in FAMILY_BY_PRESET[s.preset]:
    grid = FAMILY[name]
    fields = s.fields(name)
    sweep = _sweep.bracket(lambda lr, n=name, f=fields: s.loss(n, lr, adam_lr=adam_lr, **f),
                           grid, max_extend=MAX_EXTEND)
    best_lr, _ = best_of(sweep)
    out[name] = {"sweep": sweep, "fields": fields, "best_lr": best_lr, "adam_lr": adam_lr,
                 "seed1": (s.loss(name, best_lr, seed=1, adam_lr=adam_lr, **fields)
                           if seed1 else None)}
  return out


def split_check(s: Setting, fam: dict) -> dict:
  """Muon and Muon++ at their best lr with the fused QKV as one matrix:
  ``{name: (lr, loss with three [d, d] matrices, loss with one [d, 3d])}``."""
  out = {}
  for name in ("muon", "muon_plus_plus"):
    f = fam[name]
    out[name] = (f["best_lr"], f["sweep"][f["best_lr"]],
                 s.loss(name, f["best_lr"], adam_lr=f["adam_lr"],
                        **{**f["fields"], "optimizer.split_fused_qkv": False}))
  return out


def weight_decay(s: Setting) -> dict:
  """Muon and Muown at lr and leaves ``WD_AT``, over ``WD_GRID`` (leaves' decay at 0.1)."""
  out = {}
  for name, default_wd in WD_DEFAULT.items():
    out[name] = (WD_AT, s.spec(name, WD_AT)["adam_lr"],
                 {wd: s.loss(name, WD_AT) if wd == default_wd else
                  s.loss(name, WD_AT, wd=wd, adam_wd=0.1) for wd in WD_GRID})
  return out


def magnitude(s: Setting) -> dict:
  """Muown's magnitude lr (× its lr; 1 = the alias default) at ``MUOWN_AT``, bracketed."""
  loss_at = lambda r: (s.loss("muown", MUOWN_AT) if r == 1 else
                       s.loss("muown", MUOWN_AT, **{"lr_ratios.magnitude_learning_rate": r}))
  return _sweep.bracket(loss_at, (0.5, 1.0, 2.0), max_extend=MAX_EXTEND)


def init_check(s: Setting) -> dict:
  """Muon++ at ``INIT_AT``: ``{lr: (final eval with the μP init, with fan-in)}``."""
  return {lr: (s.loss("muon_plus_plus", lr, **{"model.mup_init": True}),
               s.loss("muon_plus_plus", lr, **{"model.mup_init": False})) for lr in INIT_AT}


def muon_variants(s: Setting) -> dict:
  """Muon at ``MUON_VARIANTS_LR``: label -> (key, record), its AdamW leaves' lr sweep first."""
  lr = MUON_VARIANTS_LR
  out = {f"AdamW leaves at {a:g}": s.run("muon", lr, adam_lr=a) for a in MUON_ADAM_LRS}
  out["Polar Express coefficients (leaves at the lr)"] = s.run(
      "muon", lr, **{"options.ns_schedule": "polar_express"})
  return out


def leaves_sweep(s: Setting) -> dict:
  """Per optimizer in ``LEAVES_SWEEP``: ``(lr, {adam_lr: final eval})``, bracketed."""
  out = {}
  for name, (lr, grid) in LEAVES_SWEEP.items():
    fields = s.fields(name)
    out[name] = (lr, _sweep.bracket(lambda a, n=name, f=fields: s.loss(n, lr, adam_lr=a, **f),
                                    grid, max_extend=MAX_EXTEND))
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
           init: dict, variants: dict, ns: dict, split: dict, leaves: dict
           ) -> tuple[dict, str]:
  """The results JSON summary and the markdown report."""
  target = base["target"]
  muon_key, muon_rec = muon["full"]
  reach = first_step_reaching(muon_rec["eval_curve"], target)
  ratio = None if reach is None else reach / s.steps
  runs = s.in_setting()
  summary = {"steps": s.steps, "batch": s.batch, "preset": s.preset, "tuned_adamw": base["key"],
             "adamw_lr": base["lr"], "adamw_bracketed": base["bracketed"],
             "adamw_sweep": {f"{lr:g}": v for lr, v in base["sweep"].items()},
             "adamw_final_eval": target,
             "muon": muon_key, "muon_adam_lr": muon_rec["spec"]["adam_lr"],
             "muon_final_eval": final_eval(muon_rec),
             "muon_steps_to_adamw_final": reach, "steps_ratio": ratio,
             "runs": {k: {"spec": r["spec"], "final_eval": final_eval(r)} for k, r in runs}}
  rows = [[k, final_eval(r)] for k, r in runs]
  model = ("cpu192 preset (4 layers, d_model 192)" if s.preset == DEFAULT_PRESET else
           f"{s.preset} preset (cpu192's size with one fused [d, 3d] QKV kernel, 6 heads "
           "without GQA, GPT-2's init: normal(0.02), output projections 0.02/sqrt(2·layers))")
  notes = [f"{model}, {s.steps} steps, batch {s.batch} x 128 "
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
                 f"{MUOWN_AT:g}, leaves {MUOWN_AT:g}; 1 is the alias's default): "
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
    muon_leaves = {r["spec"]["adam_lr"]: final_eval(r) for label, (k, r) in variants.items()
                   if label.startswith("AdamW leaves")}
    summary["muon_leaves_sweep"] = {"lr": MUON_VARIANTS_LR, "bracketed": bracketed(muon_leaves),
                                    "best_adam_lr": best_of(muon_leaves)[0],
                                    "sweep": {f"{a:g}": v for a, v in muon_leaves.items()}}
    notes.append(f"Muon at lr {MUON_VARIANTS_LR:g} (`--muon-variants`; its AdamW leaves' lr "
                 f"swept, {'bracketed' if bracketed(muon_leaves) else 'NOT bracketed'}, best "
                 f"{best_of(muon_leaves)[0]:g}; final eval, steps ratio to tuned AdamW's final): "
                 + "; ".join(f"{label}: {d['final_eval']:.4f}, {_fmt_ratio(d['steps_ratio'])}"
                             for label, d in described.items()) + ".")
  for name, (lr, sweep) in leaves.items():
    summary.setdefault("leaves_sweep", {})[name] = {
        "lr": lr, "sweep": {f"{a:g}": v for a, v in sweep.items()},
        "best_adam_lr": best_of(sweep)[0], "bracketed": bracketed(sweep)}
    notes.append(f"{name} at lr {lr:g} (`--leaves-sweep`), its AdamW leaves' lr swept "
                 f"({'bracketed' if bracketed(sweep) else 'NOT bracketed'}; best "
                 f"{best_of(sweep)[0]:g}), final eval: "
                 + ", ".join(f"{a:g}: {v:.4f}" for a, v in sweep.items()) + ".")
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
  md += (_family_section(fam, summary) + _split_section(split, summary)
         + _wd_section(wd, summary))
  return {"machine": info, "summary": summary}, md


def _family_section(fams: dict, summary: dict) -> str:
  """``fams``: preset -> (setting, tuned AdamW, family)."""
  rows, verdicts = [], []
  for preset, (s, base, fam) in fams.items():
    summary.setdefault("family_adamw", {})[preset] = {
        "lr": base["lr"], "bracketed": base["bracketed"], "final_eval": base["target"],
        "sweep": {f"{lr:g}": v for lr, v in base["sweep"].items()}}
    for name, f in fam.items():
      sweep, best_lr, adam_lr = f["sweep"], f["best_lr"], f["adam_lr"]
      best, second = sweep[best_lr], f["seed1"]
      lo, hi = plateau(sweep)
      ratio = _ratio(s.run(name, best_lr, adam_lr=adam_lr, **f["fields"])[1], base["target"],
                     s.steps)
      summary.setdefault("family", {}).setdefault(preset, {})[name] = {
          "sweep": {f"{lr:g}": loss for lr, loss in sweep.items()}, "best_lr": best_lr,
          "sweep_adam_lr": {f"{lr:g}": s.spec(name, lr, adam_lr=adam_lr)["adam_lr"]
                            for lr in sweep},
          "adam_lr": adam_lr, "fields": f["fields"], "best_final_eval": best,
          "best_final_eval_seed1": second,
          "best_final_eval_mean": None if second is None else (best + second) / 2,
          "plateau": [lo, hi], "bracketed": bracketed(sweep), "steps_ratio_at_best": ratio}
      rows.append([name, preset, ", ".join(f"{lr:g}: {loss:.3f}" for lr, loss in sweep.items()),
                   f"{best_lr:g}", f"{adam_lr:g}",
                   f"{best:.4f}" + ("" if second is None else f" / {second:.4f}"),
                   f"{lo:g} – {hi:g} ({hi / lo:g}x)", "yes" if bracketed(sweep) else "NO",
                   _fmt_ratio(ratio)])
    rows.append(["adamw (all leaves)", preset,
                 ", ".join(f"{lr:g}: {v:.3f}" for lr, v in base["sweep"].items()),
                 f"{base['lr']:g}", f"{base['lr']:g}", f"{base['target']:.4f}",
                 "-", "yes" if base["bracketed"] else "NO", "1.00"])
    if "muon" in fam and "muon_plus_plus" in fam:
      a = fam["muon_plus_plus"]["sweep"][fam["muon_plus_plus"]["best_lr"]]
      b = fam["muon"]["sweep"][fam["muon"]["best_lr"]]
      summary.setdefault("muon_plus_plus_minus_muon", {})[preset] = a - b
      verdicts.append(f"- {preset}, AdamW leaves at {base['lr']:g} for both: Muon++'s best final "
                      f"eval {a:.4f}, Muon's {b:.4f}: Muon++ {a - b:+.4f} "
                      f"({'within' if a <= b + 0.01 else 'NOT within'} 0.01 of Muon).")
  if not rows:
    return ""
  return ("\n\n## The Muon family at equal AdamW leaves (`--family`)\n\n"
          "Each optimizer with its alias's defaults (weight decay: Muon 0.1; Muown and Muon++ 0 "
          "on matrices, 0.1 on the AdamW leaves), its AdamW leaves (embeddings, head, norms) at "
          "tuned AdamW's lr for the model, for every optimizer. cpu192: the default model, "
          "Muon++ from the μP init (its lr in spectral units), Muon and Muown from the fan-in "
          f"init. {FUSED_PRESET}: the same size laid out as GPT-2 (one fused [d, 3d] QKV kernel, "
          "handed to the optimizers as three [d, d] matrices; GPT-2's init for every optimizer). "
          "Seed 0; plateau: lrs within 0.02 nats of the best; steps ratio: first step reaching "
          "that model's tuned AdamW final eval, over the run length, at the best lr.\n\n"
          + _common.md_table(["optimizer", "model", "sweep (lr: final eval)", "best lr",
                              "AdamW leaves lr", "final eval", "plateau", "bracketed",
                              "steps ratio"], rows)
          + "\n" + "\n".join(verdicts) + "\n")


def _split_section(split: dict, summary: dict) -> str:
  if not split:
    return ""
  rows = []
  for name, (lr, three, one) in split.items():
    summary.setdefault("split_check", {})[name] = {"lr": lr, "three_matrices": three,
                                                   "one_matrix": one}
    rows.append([name, f"{lr:g}", f"{three:.4f}", f"{one:.4f}", f"{one - three:+.4f}"])
  return ("\n\n## The fused QKV: three matrices or one (`--split-check`)\n\n"
          "Each optimizer at its best lr above (leaves as above), with the `[d, 3d]` QKV kernel "
          "split into its three `[d, d]` matrices (`FusedDimensionNumbers`, the trainer's "
          "default) or handed over as one matrix (the library's default rule: Muon++ then scales "
          "it by sqrt(3) and orthogonalizes q, k and v together).\n\n"
          + _common.md_table(["optimizer", "lr", "three [d, d]", "one [d, 3d]", "difference"],
                             rows))


def _wd_section(wd: dict, summary: dict) -> str:
  rows = []
  for name, (lr, adam_lr, by_wd) in wd.items():
    spread = max(by_wd.values()) - min(by_wd.values())
    summary.setdefault("weight_decay", {})[name] = {
        "lr": lr, "adam_lr": adam_lr, "final_eval": {f"{w:g}": v for w, v in by_wd.items()},
        "wd_spread": spread}
    rows.append([name, f"{lr:g}", *[f"{by_wd[w]:.4f}" for w in WD_GRID], f"{spread:.4f}"])
  if not rows:
    return ""
  return ("\n\n## Weight-decay sensitivity on the default model (`--wd`)\n\n"
          f"Both at lr {WD_AT:g} with their AdamW leaves at {WD_AT:g} (their best lr when each "
          "one's leaves ran at its lr; not rerun at tuned AdamW's leaves lr), seed 0, weight "
          "decay on the hidden matrices (the AdamW leaves' decay 0.1 throughout); wd_spread = "
          "max - min final eval.\n\n"
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
  p.add_argument("--preset", default=DEFAULT_PRESET,
                 help="model preset (cpu192_fused: GPT-2's fused QKV and init)")
  p.add_argument("--family-presets", default=",".join(FAMILY_BY_PRESET),
                 help="with --family: the models compared (each at its own tuned AdamW's leaves)")
  p.add_argument("--seed1", action="store_true",
                 help="with --family: rerun each optimizer's best lr with seed 1")
  p.add_argument("--split-check", action="store_true",
                 help="with --family on a fused-QKV preset: Muon and Muon++ with the QKV kernel "
                      "as one matrix")
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
                 help="Muon at lr 0.012 with its AdamW leaves' lr swept, and with Polar Express "
                      "coefficients")
  p.add_argument("--leaves-sweep", action="store_true",
                 help="Muon++ at its lr with its AdamW leaves' lr swept (LEAVES_SWEEP), bracketed")
  p.add_argument("--cache", default=str(CACHE), help="the run cache (JSON)")
  p.add_argument("--report-only", action="store_true",
                 help="train nothing: rebuild the results from the cached runs")
  args = p.parse_args(argv)
  args.argv = list(sys.argv[1:] if argv is None else argv)
  return args


def main(argv=None) -> None:
  args = parse_args(argv)
  s = Setting(args.steps, args.batch or DEFAULT_BATCH, _sweep.RunCache(args.cache),
              args.workdir, args.report_only, args.preset)
  out_name = ("headline" + ("" if args.preset == DEFAULT_PRESET else f"_{args.preset}")
              + ("" if args.steps == 600 else f"_steps{args.steps}")
              + ("" if args.batch is None else f"_batch{args.batch}"))
  base = adamw_baseline(s, [float(lr) for lr in args.adamw_lrs.split(",")])
  muon = muon_default(s, args.muon_lr, base["lr"], args.half)
  fam = {}  # preset -> (setting, tuned AdamW, family)
  for preset in (args.family_presets.split(",") if args.family else []):
    sp = s if preset == s.preset else dataclasses.replace(s, preset=preset)
    bp = base if preset == s.preset else adamw_baseline(sp, FAMILY_ADAMW_LRS)
    fam[preset] = (sp, bp, family(sp, bp["lr"], args.seed1))
  split = (split_check(fam[FUSED_PRESET][0], fam[FUSED_PRESET][2])
           if FUSED_PRESET in fam and args.split_check else {})
  wd = weight_decay(s) if args.wd else {}
  mag = magnitude(s) if args.magnitude else {}
  init = init_check(s) if args.init_check else {}
  variants = muon_variants(s) if args.muon_variants else {}
  ns = ns_check(s, args.muon_lr) if args.ns_check else {}
  leaves = leaves_sweep(s) if args.leaves_sweep else {}
  args.info = _common.machine_info()
  payload, md = report(s, args, base, muon, fam, wd, mag, init, variants, ns, split, leaves)
  _common.write_json(f"{out_name}.json", payload)
  _common.write_text(f"{out_name}.md", md)
  print(md)


if __name__ == "__main__":
  main()
