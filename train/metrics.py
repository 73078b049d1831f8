"""Metrics: one JSON object per line in `metrics.jsonl`, and a loss-curve PNG."""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


class MetricsWriter:
  """Appends rows to `workdir/metrics.jsonl`; on resume drops rows past the restored step."""

  def __init__(self, workdir: str, start_step: int, enabled: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = enabled
    if enabled and os.path.exists(self.path):
      rows = [r for r in read_rows(self.path) if r["step"] <= start_step]
      with open(self.path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)

  def write(self, row: dict) -> None:
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_rows(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


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
  ax.set_ylabel("loss (nats/byte)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(png_path, dpi=120)
  plt.close(fig)
  return png_path
