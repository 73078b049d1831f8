"""Pilot sweeps behind issue 12's fixes: which change closes which gap (2 widths, short runs).

    python benchmarks/transfer_pilots.py --variants mpp_r1,mpp --widths 32,128
    python benchmarks/transfer_pilots.py --report-only

Each variant is an optimizer of ``benchmarks/transfer.py`` with some options changed
(same model, data, schedule, bracketing and caching; seed 0 only: one seed per
point, so differences under ~0.01 nats are noise). Results:
``results/transfer_pilots.{md,json}``, runs cached in ``results/transfer_pilots.runs.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402
import transfer  # noqa: E402

# name -> (base optimizer of transfer.SPEC, changes to its spec, what it tests)
VARIANTS = {
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
    "mpp_fanin_r1": ("muon_plus_plus", {"mup_init": False, "lr_ratios": {"adam_learning_rate": 1.0}},
                     "Muon++ before, as a new user runs it: fan-in init, leaves at the lr"),
    "muown": ("muown", {}, "Muown as in transfer.py (wd 0)"),
    "muown_wd01": ("muown", {"wd": 0.1}, "Muown, wd 0.1 (our trainer's old default)"),
    "muown_mag03": ("muown", {"lr_ratios": {"magnitude_learning_rate": 0.3}},
                    "Muown, magnitude lr 0.3x"),
    "muown_mag3": ("muown", {"lr_ratios": {"magnitude_learning_rate": 3.0}},
                   "Muown, magnitude lr 3x"),
}


def register(name):
  """Adds variant `name` to transfer.SPEC / PRIOR / LABEL (a copy of its base's spec)."""
  base, changes, label = VARIANTS[name]
  spec = {**transfer.SPEC[base], "options": dict(transfer.SPEC[base]["options"]),
          "lr_ratios": dict(transfer.SPEC[base].get("lr_ratios", {}))}
  for k, v in changes.items():
    if k in ("options", "lr_ratios"):
      spec[k].update(v)
    else:
      spec[k] = v
  transfer.SPEC[name] = spec
  transfer.PRIOR.setdefault(name, transfer.PRIOR[base])
  transfer.LABEL[name] = label


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--widths", default="32,128")
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--grid-points", type=int, default=3)
  p.add_argument("--layers", type=int, default=2)
  p.add_argument("--seq", type=int, default=64)
  p.add_argument("--tag", default="", help="results/transfer_pilots<tag>.*: another setting's cache")
  p.add_argument("--out-dir", default=str(_common.RESULTS_DIR))
  p.add_argument("--report-only", action="store_true")
  args = p.parse_args(argv)
  names = [v for v in args.variants.split(",") if v]
  for name in VARIANTS:
    register(name)
  st_args = argparse.Namespace(widths=args.widths, layers=args.layers, seq=args.seq, batch=16,
                               steps=args.steps,
                               eval_steps=8, eval_every=100, long_steps=0, long_width=0,
                               wd_width=0, max_extend=8, grid_points=args.grid_points,
                               wd_grid="0.1")
  st = transfer.settings(st_args)
  cache = transfer.Cache(os.path.join(args.out_dir, f"transfer_pilots{args.tag}.runs.json"))
  if not args.report_only:
    for name in names:
      center = transfer.PRIOR[name]
      for width in sorted(st["widths"]):
        prev = transfer.best_lr(cache, st, name, width)  # resume: start where it stood
        center = transfer.sweep(cache, st, name, width, prev or center)
  present = [n for n in VARIANTS if any(r["opt"] == n for r in cache.runs.values())]
  out = transfer.summarize(cache, st, present)
  rows = []
  for name in present:
    res = out["optimizers"][name]
    for w in out["widths"]:
      if w in res["best_lr"]:
        pl = res["plateau"][w]
        rows.append([name, VARIANTS[name][2], w, f"{res['best_lr'][w]:g}",
                     " / ".join(f"{x:.4f}" for x in res["best_loss_seeds"][w]),
                     f"{pl[0]:g}–{pl[1]:g}", "yes" if res["bracketed"][w] else "NO",
                     ", ".join(f"{k}: {v:.3f}" for k, v in res["sweep"][w].items())])
  info = _common.machine_info()
  text = _common.md_header(
      "Issue 12 pilots: what closes Muon++'s gap, what gives Muown its edge", info,
      "python benchmarks/transfer_pilots.py" + "".join(
          f" {a}" for a in (sys.argv[1:] if argv is None else argv)),
      [f"Same setup as transfer.py: {st['layers']} layers, d_ff 3·d, {st['steps']} steps of "
       f"{st['batch']}x{st['seq']} bytes, cosine, warmup 10%; factor-2 lr grids extended until "
       "bracketed; final eval loss of seed 0 and seed 1 at the best lr."])
  text += "\n" + _common.md_table(["variant", "what", "d_model", "best lr", "final eval (seeds)",
                                   "plateau (0.02)", "bracketed", "sweep lr: loss"], rows)
  with open(os.path.join(args.out_dir, f"transfer_pilots{args.tag}.md"), "w") as f:
    f.write(text)
  with open(os.path.join(args.out_dir, f"transfer_pilots{args.tag}.json"), "w") as f:
    json.dump({"machine": info, **out, "variants": {k: VARIANTS[k][2] for k in present}}, f,
              indent=1, default=lambda x: None if isinstance(x, float) and math.isnan(x) else x)
  print(text)


if __name__ == "__main__":
  main()
