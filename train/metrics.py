"""Metrics: one JSON object per line in `metrics.jsonl`, and a loss-curve PNG.

Paths may be local or remote (`gs://...`, through `etils.epath`); remote files cannot be appended
to, so there the whole file is rewritten on each write.
"""

import json
import logging

import matplotlib
from etils import epath

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


class MetricsWriter:
  """Appends rows to `workdir/metrics.jsonl`; on resume drops rows past the restored step."""

  def __init__(self, workdir: str, start_step: int, enabled: bool = True):
    self.path = str(epath.Path(workdir) / "metrics.jsonl")
    self.enabled = enabled
    self._local = "://" not in self.path
    self._rows = []
    if enabled and epath.Path(self.path).exists():
      self._rows = [r for r in read_rows(self.path) if r["step"] <= start_step]
      self._rewrite()

  def _rewrite(self) -> None:
    epath.Path(self.path).write_text("".join(json.dumps(r) + "\n" for r in self._rows))

  def write(self, row: dict) -> None:
    if not self.enabled:
      return
    self._rows.append(row)
    if self._local:
      with open(self.path, "a") as f:
        f.write(json.dumps(row) + "\n")
    else:
      self._rewrite()


def read_rows(path: str) -> list[dict]:
  """The rows of a metrics file; a torn (half-written) or garbled line is dropped with a warning."""
  rows = []
  lines = epath.Path(path).read_text().split("\n")
  for i, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      row = None
    if not isinstance(row, dict) or "step" not in row:
      torn = i == len(lines)  # Nothing after it, not even a newline: a write was cut short.
      logging.warning("%s line %d: dropped %s line %r", path, i,
                      "a half-written last" if torn else "an unreadable", line[:80])
      continue
    rows.append(row)
  return rows


def plot_losses(metrics_path: str, png_path: str) -> str:
  """Train (and eval) loss against step; returns `png_path`."""
  rows = read_rows(metrics_path)
  fig, ax = plt.subplots(figsize=(7, 4))
  train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
  evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
  if train:
    ax.plot(*zip(*train), label="train")
  if evals:
    ax.plot(*zip(*evals), "o-", label="eval")
  ax.set_xlabel("step")
  ax.set_ylabel("loss (nats/token)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  with epath.Path(png_path).open("wb") as f:
    fig.savefig(f, format="png", dpi=120)
  plt.close(fig)
  return png_path
