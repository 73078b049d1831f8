"""Spectra over training: `python -m train.plot_spectra --workdir DIR [--out FILE.png]`.

Reads the `spec/<group>/<stat>` and `max_logit/<layer>` keys that a run with
`--config.diagnostics.every=N` wrote to `DIR/metrics.jsonl` (see
`train/spectral_metrics.py`) and draws, against the step: the momentum-spectrum
quantiles per layer group (median line, q25–q75 band, q10/q90 dotted), the
fraction of σ below the NS failure threshold, the weight spectral norm with its
row-magnitude and row-coherence factors, and the per-layer max attention logit.
"""

import argparse
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from train.metrics import read_rows

_KEY = re.compile(r"^spec/([^/]+/d\d+)/(.+)$")


def series(rows: list[dict]) -> tuple[dict, dict]:
  """`({group: {stat: (steps, values)}}, {layer: (steps, values)})` from metrics rows."""
  groups: dict = {}
  logits: dict = {}
  for r in rows:
    for k, v in r.items():
      m = _KEY.match(k)
      if m:
        s = groups.setdefault(m.group(1), {}).setdefault(m.group(2), ([], []))
      elif k.startswith("max_logit/") and k != "max_logit/all":
        s = logits.setdefault(k.split("/", 1)[1], ([], []))
      else:
        continue
      s[0].append(r["step"])
      s[1].append(v)
  return groups, logits


def plot(workdir: str, out: str | None = None) -> str:
  """Draws the figure for `workdir`'s metrics; returns the PNG path."""
  rows = read_rows(os.path.join(workdir, "metrics.jsonl"))
  groups, logits = series(rows)
  if not groups:
    raise SystemExit(f"no spec/... keys in {workdir}/metrics.jsonl: "
                     "train with --config.diagnostics.every=N")
  out = out or os.path.join(workdir, "spectra.png")
  names = sorted(groups)
  cmap = plt.get_cmap("tab20", max(len(names), 1))
  fig, axes = plt.subplots(2, 3, figsize=(17, 9))
  ax_q, ax_frac, ax_ent, ax_w, ax_rf, ax_l = axes.ravel()
  for i, g in enumerate(names):
    st, c = groups[g], cmap(i)
    if "sigma_q50" in st:
      ax_q.plot(*st["sigma_q50"], color=c, label=g)
      if "sigma_q25" in st and "sigma_q75" in st:
        ax_q.fill_between(st["sigma_q25"][0], st["sigma_q25"][1], st["sigma_q75"][1],
                          color=c, alpha=0.05)
      for q in ("sigma_q10", "sigma_q90"):
        if q in st:
          ax_q.plot(*st[q], color=c, ls=":", lw=0.8)
    if "frac_below" in st:
      ax_frac.plot(*st["frac_below"], color=c, label=g)
    if "svd_entropy" in st:
      ax_ent.plot(*st["svd_entropy"], color=c, label=g)
    if "weight_norm" in st:
      ax_w.plot(*st["weight_norm"], color=c, label=g)
    if "row_magnitude" in st:
      ax_rf.plot(*st["row_magnitude"], color=c, label=g)
    if "row_coherence" in st:
      ax_rf.plot(*st["row_coherence"], color=c, ls="--")
  for layer in sorted(logits, key=lambda s: int(re.sub(r"\D", "", s) or 0)):
    ax_l.plot(*logits[layer], label=layer)
  ax_q.set_yscale("log")
  ax_q.set_title("momentum σ/‖M‖_F: median (band q25–q75, dotted q10/q90)")
  ax_frac.set_title("fraction of σ below the NS failure threshold")
  ax_ent.set_title("SVD entropy of the momentum")
  ax_w.set_title("weight spectral norm ‖W‖₂")
  ax_rf.set_title("row magnitude max r (solid) · row coherence √λ(PCP) (dashed)")
  ax_l.set_title("max attention logit per layer")
  for ax in axes.ravel():
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  ax_q.legend(fontsize=6, ncol=2)
  if logits:
    ax_l.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", default=None, help="PNG path (default DIR/spectra.png).")
  args = parser.parse_args(argv)
  print(plot(args.workdir, args.out))


if __name__ == "__main__":
  main()
