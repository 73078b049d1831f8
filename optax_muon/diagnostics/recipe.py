"""A layer-aware Newton–Schulz recipe from measured momentum spectra (docs/algorithms.md, "Spectral diagnostics").

The Spectral Scaling Laws of Muon observe that, after burn-in, the quantiles of
the Frobenius-normalized momentum spectrum follow power laws in model size,
``σ_q ∝ M^(−α)``, with steeper exponents in the final layers. Recipe: measure
the stabilized median at two or more small sizes per layer group
(:func:`optax_muon.diagnostics.group_stats` keys such as ``"q/d3"``), fit
``α`` (:func:`fit_spectral_power_law`), extrapolate to the target size, and
give each group the cheapest schedule whose failure threshold lies below its
predicted median (:func:`recommend_ns_schedule`). The result plugs into the
aliases' per-leaf ``ns_schedule``/``ns_steps`` mappings (``{regex: value}``,
``re.search`` on leaf paths, first match wins).
"""

import math
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from optax_muon._src import coefficients as coeffs_lib
from optax_muon.diagnostics import statistics

__all__ = [
    "PowerLaw",
    "NSCandidate",
    "NSRecipe",
    "fit_spectral_power_law",
    "analytic_candidates",
    "candidates_from_rows",
    "recommend_ns_schedule",
    "group_regex",
]

_NORMALIZATION_OVERHEAD = {"frobenius": 0.0, "schatten4": 0.0, "aol": 0.05, "spectral": 0.2}


class PowerLaw(NamedTuple):
  """``value ≈ prefactor · size^(−alpha)``; ``r2`` of the log-log fit."""

  alpha: float
  prefactor: float
  r2: float

  def __call__(self, size: float) -> float:
    return self.prefactor * float(size) ** (-self.alpha)


def _fit(sizes: Sequence[float], values: Sequence[float]) -> PowerLaw:
  x = np.log(np.asarray(sizes, np.float64))
  y = np.log(np.asarray(values, np.float64))
  if x.size < 2 or x.size != y.size:
    raise ValueError(f"need >= 2 (size, value) pairs of equal length, got {x.size}/{y.size}.")
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    raise ValueError("sizes and values must be positive and finite.")
  a = np.stack([np.ones_like(x), x], axis=1)
  (c0, c1), *_ = np.linalg.lstsq(a, y, rcond=None)
  resid = y - (c0 + c1 * x)
  ss = float(np.sum((y - y.mean()) ** 2))
  r2 = 1.0 - float(np.sum(resid**2)) / ss if ss > 0 else 1.0
  return PowerLaw(alpha=float(-c1), prefactor=float(np.exp(c0)), r2=r2)


def fit_spectral_power_law(sizes: Sequence[float], values: Any) -> Any:
  """Least-squares fit of ``σ = A·M^(−α)`` in log-log space.

  Args:
    sizes: model sizes ``M`` (parameters, or any width proxy), one per run.
    values: the measured quantile per size, or ``{group: values}``.

  Returns:
    A :class:`PowerLaw`, or ``{group: PowerLaw}`` for a mapping.

  Examples:
    >>> fit = fit_spectral_power_law([1e6, 4e6, 1.6e7], [0.02, 0.01, 0.005])
    >>> round(fit.alpha, 3), round(fit(6.4e7), 5)
    (0.5, 0.0025)
  """
  if isinstance(values, Mapping):
    return {g: _fit(sizes, v) for g, v in values.items()}
  return _fit(sizes, values)


class NSCandidate(NamedTuple):
  """One Newton–Schulz configuration: failure thresholds ``{level: σ}`` and relative cost.

  Thresholds are in units of the Frobenius-normalized input (``σ/‖X‖_F``, what
  the probes record), i.e. the schedule's own threshold times its ``ν``.
  """

  schedule: str
  normalization: str
  steps: int
  threshold: dict
  relative_cost: float


def analytic_candidates(schedules: Iterable[str] = ("jordan", "polar_express", "nanogpt5"),
                        steps: Iterable[int] = range(3, 9),
                        normalization: str = "frobenius",
                        levels: Sequence[float] = (0.1, 0.5, 0.9)) -> list[NSCandidate]:
  """Candidates from :func:`ns_failure_threshold`; cost ∝ steps (5 steps = 1.0).

  Examples:
    >>> c = analytic_candidates(["jordan"], [5])[0]
    >>> c.schedule, c.steps, f"{c.threshold[0.5]:.2e}", c.relative_cost
    ('jordan', 5, '1.07e-03', 1.0)
  """
  out = []
  for s in schedules:
    nu = coeffs_lib.schedule_input_scale(s)
    for t in steps:
      thr = {float(lv): nu * coeffs_lib.ns_failure_threshold(s, int(t), lv) for lv in levels}
      cost = int(t) / 5.0 + _NORMALIZATION_OVERHEAD.get(normalization, 0.0)
      out.append(NSCandidate(s, normalization, int(t), thr, cost))
  return out


def candidates_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[NSCandidate]:
  """Candidates from measured rows (plain data, e.g. the ``rows`` of a variant benchmark).

  Each row needs ``schedule``, ``steps``, ``threshold`` (``{level: σ}``; ``None`` or
  non-finite entries are levels the row did not reach) and ``relative_cost``;
  ``normalization`` defaults to ``"frobenius"``.

  Raises:
    ValueError: naming the first row that lacks a field or holds a malformed value.

  Examples:
    >>> rows = [{"schedule": "jordan", "steps": 4, "threshold": {"0.5": 3e-3, "0.9": None},
    ...          "relative_cost": 0.8}]
    >>> candidates_from_rows(rows)[0].threshold
    {0.5: 0.003}
  """
  out = []
  for i, row in enumerate(rows):
    try:
      thr = {float(k): float(v) for k, v in dict(row["threshold"]).items()
             if v is not None and math.isfinite(float(v))}
      out.append(NSCandidate(str(row["schedule"]), str(row.get("normalization", "frobenius")),
                             int(row["steps"]), thr, float(row["relative_cost"])))
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"candidate row {i} ({row!r}) needs schedule, steps, threshold "
                       f"{{level: sigma}} and relative_cost: {e!r}") from None
  return out


def group_regex(group: str, n_layers: int | None = None, buckets: int = 4) -> str:
  """A leaf-path regex for a ``"type/d<bucket>"`` group.

  With ``n_layers`` (per-layer ``layers/<i>/...`` paths) the regex lists that
  bucket's layers; without, it matches the type at every depth.

  Examples:
    >>> group_regex("q/d3", n_layers=8)
    '(?:^|/)layers/(?:6|7)/(?:.*/)?q/kernel$'
    >>> group_regex("down/d0")
    '(?:^|/)down/kernel$'
  """
  typ, _, bucket = group.partition("/d")
  if n_layers is None or not bucket:
    return f"(?:^|/){typ}/kernel$"
  layers = [i for i in range(n_layers) if statistics.depth_bucket(i, n_layers, buckets) == int(bucket)]
  return f"(?:^|/)layers/(?:{'|'.join(map(str, layers))})/(?:.*/)?{typ}/kernel$"


class NSRecipe(NamedTuple):
  """Per-leaf Newton–Schulz settings: pass ``ns_schedule``/``ns_steps`` to an alias.

  ``groups`` holds, per layer group, the fit, the predicted median, the chosen
  candidate and its threshold.
  """

  ns_schedule: dict
  ns_steps: dict
  normalization: str
  groups: dict


def recommend_ns_schedule(
    sizes: Sequence[float],
    medians: Mapping[str, Sequence[float]],
    target_size: float,
    *,
    level: float = 0.5,
    margin: float = 1.0,
    normalization: str = "frobenius",
    candidates: Sequence[NSCandidate] | None = None,
    n_layers: int | None = None,
    buckets: int = 4,
    default_schedule: str | None = None,
    default_steps: int | None = None,
) -> NSRecipe:
  """Extrapolates each group's median ``σ`` to ``target_size`` and picks the cheapest NS.

  Args:
    sizes: the measured model sizes (≥ 2).
    medians: ``{group: [stabilized median σ per size]}`` (groups as in
      :func:`group_stats`, e.g. ``"q/d3"``; any other name is used as a regex).
    target_size: the size to configure.
    level: the failure level ``f`` whose threshold must lie below the median.
    margin: require ``threshold · margin ≤ predicted median``.
    normalization: the (global) first-step normalization; candidates of other
      normalizations are ignored.
    candidates: a list of :class:`NSCandidate` (e.g. :func:`candidates_from_rows` of a
      measured table), or ``None`` = :func:`analytic_candidates`.
    n_layers: the target model's layer count, for per-depth regexes (else per type).
    buckets: depth buckets of the group names.
    default_schedule, default_steps: if given, a final catch-all entry ``""``
      for leaves no group matches (else those leaves use the alias default).

  Returns:
    An :class:`NSRecipe`. If no candidate qualifies for a group, the one with the
    lowest threshold (ties: cheapest) is chosen and ``groups[g]["ok"]`` is False.

  Examples:
    >>> rec = recommend_ns_schedule([1e6, 4e6], {"q/d0": [4e-3, 2e-3], "down/d3": [1e-3, 2.5e-4]},
    ...                             1.6e7, n_layers=4)
    >>> rec.groups["q/d0"]["steps"] < rec.groups["down/d3"]["steps"]
    True
  """
  if candidates is None:
    candidates = analytic_candidates(normalization=normalization, levels=(level,))
  pool = [c for c in candidates if c.normalization == normalization and level in c.threshold]
  if not pool:
    raise ValueError(f"no Newton–Schulz candidate with normalization {normalization!r} and a "
                     f"threshold at level {level}.")
  fits = fit_spectral_power_law(sizes, dict(medians))
  groups = {}
  for g in sorted(fits):
    fit = fits[g]
    pred = fit(target_size)
    ok = [c for c in pool if c.threshold[level] * margin <= pred]
    if ok:
      best = min(ok, key=lambda c: (c.relative_cost, c.threshold[level]))
    else:
      best = min(pool, key=lambda c: (c.threshold[level], c.relative_cost))
    groups[g] = {"alpha": fit.alpha, "prefactor": fit.prefactor, "r2": fit.r2,
                 "predicted_median": pred, "schedule": best.schedule, "steps": best.steps,
                 "threshold": best.threshold[level], "relative_cost": best.relative_cost,
                 "ok": bool(ok),
                 "regex": group_regex(g, n_layers, buckets) if "/d" in g else g}
  # One entry per regex; groups sharing one (per-type regexes) keep the strongest.
  sched, steps = {}, {}
  for g, d in sorted(groups.items(), key=lambda kv: kv[1]["threshold"]):
    if d["regex"] not in sched:
      sched[d["regex"]], steps[d["regex"]] = d["schedule"], d["steps"]
  if default_schedule is not None:
    sched[""] = default_schedule
  if default_steps is not None:
    steps[""] = default_steps
  return NSRecipe(ns_schedule=sched, ns_steps=steps, normalization=normalization, groups=groups)

