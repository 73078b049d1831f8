"""The one sweep harness of the training benchmarks: run cache, run keys, lr bracketing.

``headline.py`` and ``transfer.py`` describe every training run by a *spec*: a flat
dict of plain values (``optimizer``, ``lr``, ``adam_lr``, ``steps``, ``seed``, ...).
:func:`run_key` turns a spec into the run's one cache key, :class:`RunCache` keeps
finished runs (one JSON file per report under ``benchmarks/runs/``, never committed),
:func:`bracket` extends an lr grid until its best has a worse neighbour on both sides,
and :func:`first_step_reaching` reads the step at which an eval curve reaches a loss.

Every spec carries ``adam_lr``: the peak learning rate of the leaves a Muon-family
optimizer hands to AdamW (embeddings, head, norms; for AdamW itself, its own lr). The
results files record it for every run, so that comparisons can say what the AdamW
leaves ran at.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import pathlib
from typing import Any, Callable, Iterable, Iterator, Mapping

RUNS_DIR = pathlib.Path(__file__).resolve().parent / "runs"
# Fields that lead a key, in this order; every other field follows sorted by name.
KEY_ORDER = ("opt", "optimizer", "kind", "width", "lr", "adam_lr", "steps", "batch", "seed", "wd")
PLATEAU = 0.02  # nats: the plateau of an lr sweep is every lr within this of the best


def _fmt(v: Any) -> str:
  if isinstance(v, bool) or v is None:
    return str(v)
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v)


def grid_value(x: float) -> float:
  """Rounds to 4 significant digits, so that factor-2 grids reached two ways share keys."""
  return float(f"{x:.4g}")


def run_key(spec: Mapping[str, Any]) -> str:
  """The cache key of a run: ``k=v`` joined by ``/``, ``KEY_ORDER`` first, ``None`` left out.

  >>> run_key({"optimizer": "muon", "lr": 0.012, "adam_lr": 0.012, "steps": 600, "seed": 0})
  'optimizer=muon/lr=0.012/adam_lr=0.012/steps=600/seed=0'
  """
  if spec.get("adam_lr") is None:
    raise ValueError(f"a run spec records the AdamW leaves' lr (adam_lr): {dict(spec)}")
  for k, v in spec.items():
    if isinstance(v, (dict, list, tuple)):
      raise TypeError(f"run spec field {k!r} must be a plain value, got {type(v).__name__}")
  names = [k for k in KEY_ORDER if k in spec] + sorted(k for k in spec if k not in KEY_ORDER)
  return "/".join(f"{k}={_fmt(spec[k])}" for k in names if spec[k] is not None)


class RunCache:
  """Finished runs of one report, in one JSON file: ``{key: {"spec": ..., **record}}``.

  Several processes may share the file (e.g. ``transfer.py --part long`` beside
  ``--part sweep``): each save takes an exclusive lock on ``PATH.lock``, re-reads the
  file and merges its runs into it.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self.runs: dict[str, dict] = {}
    self.refresh()

  @contextlib.contextmanager
  def _locked(self) -> Iterator[None]:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{self.path}.lock", "w") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      yield

  def refresh(self) -> None:
    """Adds the runs other processes have saved since."""
    if self.path.exists():
      self.runs = {**json.loads(self.path.read_text()), **self.runs}

  def get(self, spec: Mapping[str, Any]) -> dict | None:
    return self.runs.get(run_key(spec))

  def put(self, spec: Mapping[str, Any], record: Mapping[str, Any]) -> dict:
    """Stores a finished run (its spec inside the record) and saves the file."""
    rec = {"spec": dict(spec), **record}
    self.runs[run_key(spec)] = rec
    with self._locked():
      self.refresh()
      tmp = self.path.with_name(self.path.name + ".tmp")
      tmp.write_text(json.dumps(self.runs))
      os.replace(tmp, self.path)
    return rec

  def ensure(self, spec: Mapping[str, Any], train: Callable[[dict], Mapping[str, Any]],
             verbose: bool = True) -> dict:
    """The cached record of ``spec``, or ``train(spec)``'s, stored first."""
    rec = self.get(spec)
    if rec is None:
      if verbose:
        print(f"running {run_key(spec)}", flush=True)
      rec = self.put(spec, train(dict(spec)))
    return rec

  def find(self, **fields: Any) -> list[dict]:
    """Records whose spec has every given field at the given value (absent = ``None``)."""
    return [r for r in self.runs.values()
            if all(r["spec"].get(k) == v for k, v in fields.items())]


# ----------------------------------------------------------------------------- lr sweeps


def bracketed(losses: Mapping[float, float]) -> bool:
  """Whether the best of ≥ 3 points has a worse (or diverged) neighbour on both sides."""
  if len(losses) < 3:
    return False
  xs = sorted(losses)
  i = min(range(len(xs)), key=lambda j: losses[xs[j]])
  return 0 < i < len(xs) - 1


def best_of(losses: Mapping[float, float]) -> tuple[float, float]:
  x = min(losses, key=lambda k: losses[k])
  return x, losses[x]


def plateau(losses: Mapping[float, float], tol: float = PLATEAU) -> list[float]:
  """The lowest and highest x whose loss is within ``tol`` of the best."""
  _, l_best = best_of(losses)
  good = [x for x, l in losses.items() if l <= l_best + tol]
  return [min(good), max(good)]


def bracket(loss_at: Callable[[float], float], grid: Iterable[float], factor: float = 2.0,
            max_extend: int = 3) -> dict[float, float]:
  """``{x: loss_at(x)}`` over ``grid``, extended by ``factor`` beyond the edge the best sits
  on (at most ``max_extend`` times) until the best has a worse neighbour on both sides.

  >>> sorted(bracket(lambda x: (math.log2(x) - 3) ** 2, [1.0, 2.0]))
  [1.0, 2.0, 4.0, 8.0, 16.0]
  """
  losses = {x: loss_at(x) for x in grid}
  for _ in range(max_extend):
    if bracketed(losses):
      break
    x, _ = best_of(losses)
    nxt = grid_value(max(losses) * factor if x == max(losses) else min(losses) / factor)
    losses[nxt] = loss_at(nxt)
  return dict(sorted(losses.items()))


def first_step_reaching(curve: Iterable[tuple[int, float]], target: float) -> float | None:
  """The first step at which the eval curve ``[(step, loss)]`` reaches ``target`` (linear
  interpolation between evaluations); ``None`` if it never does.

  >>> first_step_reaching([(0, 3.0), (10, 2.0), (20, 1.0)], 1.5)
  15.0
  """
  curve = list(curve)
  for (s0, l0), (s1, l1) in zip(curve, curve[1:]):
    if l1 <= target:
      return s0 + (s1 - s0) * (l0 - target) / (l0 - l1) if l0 > target else float(s0)
  return float(curve[0][0]) if curve and curve[0][1] <= target else None


def final_eval(record: Mapping[str, Any]) -> float:
  """The run's last eval loss (``inf`` if it diverged)."""
  curve = record.get("eval_curve") or []
  if record.get("diverged") or not curve or not math.isfinite(curve[-1][1]):
    return math.inf
  return float(curve[-1][1])


# ----------------------------------------------------------------------------- configs


def trainer_config(spec: Mapping[str, Any], config=None):
  """The trainer config of a spec: ``config`` (default: ``train.configs.default``) with
  ``optimizer``, ``lr``, ``adam_lr``, ``steps``, ``seed`` and the optional ``batch``,
  ``wd`` (the matrices' decay), ``adam_wd`` and dotted ``model.X`` / ``optimizer.X`` /
  ``options.X`` / ``lr_ratios.X`` fields set. ``adam_lr`` is the trainer's ``optimizer.adam_learning_rate``
  (the AdamW leaves' peak, on the same schedule), set for every Muon variant."""
  if config is None:
    from train.configs import default

    config = default.get_config()
  c = config
  c.optimizer.name = spec["optimizer"]
  c.optimizer.learning_rate = spec["lr"]
  c.train_steps = spec["steps"]
  c.seed = spec.get("seed", 0)
  if spec.get("batch") is not None:
    c.batch_size = spec["batch"]
  if spec.get("wd") is not None:
    c.optimizer.weight_decay = spec["wd"]
  if spec.get("adam_wd") is not None:
    c.optimizer.options.adam_weight_decay = spec["adam_wd"]
  if spec["optimizer"] == "adamw":
    if not math.isclose(spec["adam_lr"], spec["lr"], rel_tol=1e-6):
      raise ValueError(f"AdamW has no separate leaves: adam_lr must equal lr in {dict(spec)}")
  else:
    c.optimizer.adam_learning_rate = float(spec["adam_lr"])
  for k, v in spec.items():
    section, _, name = k.partition(".")
    if name and section in ("model", "optimizer", "options", "lr_ratios"):
      setattr({"model": c.model, "optimizer": c.optimizer}.get(section) or c.optimizer[section],
              name, v)
  return c
