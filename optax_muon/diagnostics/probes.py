"""Probes that record spectral diagnostics from inside the optimizer chain.

Inserted into a Muon chain, a probe passes the updates through unchanged and
every ``every`` steps (``(count + 1) % every == 0``, so the numbers are fresh at
1-based step multiples of ``every``) records per-matrix statistics into its own
state, under ``jax.lax.cond`` so the heavy part (SVD, ``eigvalsh``) runs only on
those steps, once per group of same-shaped matrices, and only on the matrices
selected by ``which``:

* :func:`spectral_probe`, placed right before ``newton_schulz``: the spectrum
  of the NS input (the momentum) and, from ``params``, the weight's spectral
  norm (warm-started power iteration or SVD) with its row-magnitude and
  row-coherence factors.
* :func:`update_probe`, placed right after ``newton_schulz``: the
  orthogonality error of ``O`` and the update RMS after the alias's scale
  convention, against that convention's target.

:func:`read` turns an optimizer state into ``{path: {stat: [B] array}}``.
With ``diagnostics=None`` the aliases insert nothing: the compiled update is
unchanged.
"""

import math
import re
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_muon._src import dimension_numbers as dn
from optax_muon._src import matrices
from optax_muon._src import power_iteration as pi
from optax_muon._src import spectral_scale as scale_lib
from optax_muon.diagnostics import statistics

__all__ = [
    "DiagnosticsConfig",
    "MatrixStats",
    "SpectralProbeState",
    "as_config",
    "read",
    "spectral_probe",
    "update_probe",
]

SPECTRUM_FIELDS = tuple(f"sigma_q{int(round(q * 100)):02d}" for q in statistics.QUANTILES) + (
    "sigma_1", "sigma_ratio_12", "spike_share", "stable_rank", "frac_below",
    "descent_retained", "svd_entropy")
WEIGHT_FIELDS = ("weight_norm", "row_magnitude", "row_coherence")
UPDATE_FIELDS = ("ortho_error", "ortho_error_rms", "update_rms", "update_rms_ratio")


class DiagnosticsConfig(NamedTuple):
  """What the probes record and how often.

  Attributes:
    every: record on steps ``every, 2·every, …`` (1-based).
    which: regex (``re.search`` on ``a/b/c`` leaf paths) selecting matrices;
      ``None`` = all.
    level: ``f`` level of the failure threshold used for ``frac_below``.
    weight_norm: ``"power"`` (warm-started power iteration), ``"svd"`` or ``"none"``.
    power_iterations: power-iteration rounds per recording.
    momentum: record the NS-input spectrum.
    update: record orthogonality error and update RMS.
    method: singular values by ``"svd"`` (accurate) or ``"gram"`` (eigenvalues
      of the short-side Gram: much faster on CPU, ~3e-4·σ₁ resolution).
  """

  every: int = 100
  which: str | None = None
  level: float = 0.5
  weight_norm: str = "power"
  power_iterations: int = 4
  momentum: bool = True
  update: bool = True
  method: str = "svd"


def as_config(diagnostics: Any) -> DiagnosticsConfig | None:
  """``None`` | ``int`` (every) | mapping | :class:`DiagnosticsConfig` -> config or None."""
  if diagnostics is None or diagnostics is False:
    return None
  if isinstance(diagnostics, DiagnosticsConfig):
    cfg = diagnostics
  elif isinstance(diagnostics, bool):
    cfg = DiagnosticsConfig()
  elif isinstance(diagnostics, int):
    cfg = DiagnosticsConfig(every=diagnostics)
  elif isinstance(diagnostics, Mapping):
    cfg = DiagnosticsConfig(**diagnostics)
  else:
    raise TypeError(f"diagnostics must be None, an int, a mapping or DiagnosticsConfig; "
                    f"got {diagnostics!r}.")
  if cfg.every < 1:
    raise ValueError(f"diagnostics.every must be >= 1, got {cfg.every}.")
  if cfg.weight_norm not in ("power", "svd", "none"):
    raise ValueError(f"diagnostics.weight_norm must be 'power', 'svd' or 'none', "
                     f"got {cfg.weight_norm!r}.")
  if cfg.method not in ("svd", "gram"):
    raise ValueError(f"diagnostics.method must be 'svd' or 'gram', got {cfg.method!r}.")
  return cfg


class MatrixStats(NamedTuple):
  """Recorded statistics of one group: dicts of ``[rows]`` float32 (or None)."""

  selected: Any  # [rows] bool: which matrices of the group are probed.
  spectrum: Any  # NS-input spectrum (spectral_probe), keys SPECTRUM_FIELDS.
  weight: Any  # weight norm and row factors (spectral_probe), keys WEIGHT_FIELDS.
  update: Any  # orthogonality error and update RMS (update_probe), keys UPDATE_FIELDS.


class SpectralProbeState(NamedTuple):
  count: jax.Array  # type: ignore[assignment]  # shape=(), dtype=int32: updates seen.
  recorded_step: jax.Array  # shape=(), dtype=int32: 1-based step of the last recording (0 = none).
  stats: Any  # MatrixStacks of MatrixStats (None for groups with nothing probed).
  right_vectors: Any  # MatrixStacks of [rows, fan_out] float32 power-iteration vectors, or None.


def _per_path(value: Any, path: str, default: Any) -> Any:
  """A ``{regex: value}`` mapping resolved for ``path`` (first match), else the value."""
  if isinstance(value, Mapping):
    for pat, v in value.items():
      if re.search(pat, path):
        return v
    return default
  return default if value is None else value


def _hashable(schedule: Any) -> Any:
  return schedule if isinstance(schedule, str) else tuple(
      map(tuple, np.atleast_2d(np.asarray(schedule, float))))


def _zeros(fields, rows):
  return {k: jnp.zeros((rows,), jnp.float32) for k in fields}


def _selection(cfg: DiagnosticsConfig, group: matrices.Group) -> np.ndarray:
  if cfg.which is None:
    return np.ones(group.rows, bool)
  regex = re.compile(cfg.which)
  return matrices.row_mask(group, lambda p: regex.search(p) is not None)


def _scatter(full: dict, rows: np.ndarray, values: dict) -> dict:
  if rows.size == next(iter(full.values())).shape[0]:
    return {k: values[k].astype(jnp.float32) for k in full}
  return {k: full[k].at[rows].set(values[k].astype(jnp.float32)) for k in full}


def _after(done: Any, value: Any) -> Any:
  """``value``, made to depend on ``done`` (a scheduling order, values unchanged).

  The probes' SVDs and ``eigvalsh`` are batched LAPACK kernels that wait on
  XLA:CPU's shared thread pool; two running at once can take every thread and
  deadlock (seen on 2 cores). XLA:CPU drops ``optimization_barrier`` before
  scheduling, so the order is a data dependency: ``+ 0·d``, with ``d`` a
  finite number computed from ``done`` (XLA keeps ``0·x`` for floats, NaN-safe).
  """
  parts = [jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(done)
           if jnp.issubdtype(x.dtype, jnp.floating)]
  if not parts:
    return value
  zero = 0.0 * jnp.nan_to_num(sum(parts), nan=0.0, posinf=0.0, neginf=0.0)
  return jax.tree.map(lambda v: v + zero.astype(v.dtype)
                      if jnp.issubdtype(v.dtype, jnp.floating) else v, value)


def _in_sequence(compute_group, items):
  """``[compute_group(group, *arrays)]`` per ``(group, *arrays)`` item, each group's
  arrays waiting for the previous group's result."""
  out, done = [], None
  for group, *arrays in items:
    if done is not None:
      arrays = _after(done, arrays)
    out.append(compute_group(group, *arrays))
    done = out[-1]
  return out


def _record(cfg, state, compute, keep):
  """Runs ``compute`` on due steps (else ``keep``); returns new stats and the bookkeeping."""
  due = (state.count + 1) % cfg.every == 0
  out = jax.lax.cond(due, compute, keep, None)
  recorded = jnp.where(due, state.count + 1, state.recorded_step).astype(jnp.int32)
  return out, optax.safe_increment(state.count), recorded


def spectral_probe(diagnostics: Any, *, schedule: Any = "jordan", steps: Any = 5,
                   dimension_numbers: dn.DimensionNumbersSpec = None,
                   momentum: bool | None = None, weights: bool = True,
                   ) -> optax.GradientTransformationExtraArgs:
  """Records the NS-input spectrum and weight statistics; updates pass unchanged.

  Args:
    diagnostics: a :class:`DiagnosticsConfig` (or an int ``every``).
    schedule, steps: the Newton–Schulz schedule and step count that follow
      (each may be a ``{regex: value}`` mapping resolved per leaf path); they
      set the failure threshold and scalar map of ``frac_below`` and
      ``descent_retained``.
    dimension_numbers: which leaves are matrices on an ordinary tree (default:
      rank >= 2, last two axes).
    momentum: record the spectrum of the incoming updates (default: the config's).
    weights: record ``‖W‖₂`` and row factors from ``params`` (if given).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from optax_muon import diagnostics
    >>> tx = diagnostics.spectral_probe(1)
    >>> params = {"w": jnp.eye(4)}
    >>> u, state = jax.jit(tx.update)({"w": jnp.eye(4)}, tx.init(params), params)
    >>> st = diagnostics.read(state)["w"]
    >>> round(float(st["sigma_q50"][0]), 3), round(float(st["weight_norm"][0]), 3)
    (0.5, 1.0)
  """
  cfg = as_config(diagnostics)
  assert cfg is not None, "spectral_probe needs a diagnostics configuration, not None"
  record_spectrum = cfg.momentum if momentum is None else momentum
  record_weight = weights and cfg.weight_norm != "none"
  ns_key = lambda path: (_hashable(_per_path(schedule, path, "jordan")),
                         _per_path(steps, path, 5))

  def init_fn(params):
    def stats(g, p):
      sel = _selection(cfg, g)
      if not sel.any():
        return None
      return MatrixStats(
          jnp.asarray(sel), _zeros(SPECTRUM_FIELDS, g.rows) if record_spectrum else None,
          _zeros(WEIGHT_FIELDS, g.rows) if record_weight else None, None)

    vecs = params.map(lambda g, p: pi.start_vectors(g.rows, g.fan_out)
                      if record_weight and cfg.weight_norm == "power" and _selection(cfg, g).any()
                      else None)
    return SpectralProbeState(jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32),
                              params.map(stats), vecs)

  def update_fn(updates, state, params=None, **extra):
    del extra

    def compute_group(g, u, st, vec, w):
      if st is None:
        return st, vec
      sel = np.flatnonzero(_selection(cfg, g))
      spec, wst = st.spectrum, st.weight
      if record_spectrum:
        x = (u if sel.size == g.rows else u[sel]).astype(jnp.float32)
        fro = jnp.sqrt(jnp.sum(jnp.square(x), axis=(1, 2)))
        sigma = statistics.singular_values(x, cfg.method) / jnp.maximum(fro, 1e-30)[:, None]
        paths = np.asarray(g.row_paths())[sel]
        runs: dict[Any, list[int]] = {}
        for i, p in enumerate(paths):
          runs.setdefault(ns_key(p), []).append(i)
        for (sched, nsteps), idx in runs.items():
          idx = np.asarray(idx)
          part = sigma if idx.size == sel.size else sigma[idx]
          stats = statistics.spectrum_stats(part, schedule=sched if isinstance(sched, str)
                                            else np.asarray(sched), steps=nsteps, level=cfg.level)
          spec = _scatter(spec, sel[idx], stats)
      if record_weight and w is not None:
        wm = (w if sel.size == g.rows else w[sel]).astype(jnp.float32)
        old = None if vec is None else (vec if sel.size == g.rows else vec[sel])
        norm, v = statistics.weight_spectral_norm(wm, old, iters=cfg.power_iterations,
                                                  exact=cfg.weight_norm == "svd")
        if vec is not None:
          vec = v if sel.size == g.rows else vec.at[sel].set(v)
        rf = statistics.row_factors(wm, spectral_norm=norm)
        wst = _scatter(wst, sel, {"weight_norm": norm, "row_magnitude": rf["row_magnitude"],
                                  "row_coherence": rf["row_coherence"]})
      return MatrixStats(st.selected, spec, wst, None), vec

    def compute(_):
      ws = (None,) * len(updates) if params is None else params.values
      pairs = _in_sequence(compute_group, [
          (g, u, st, vec, w) for (g, u), st, vec, w in
          zip(updates.items(), state.stats.values, state.right_vectors.values, ws)])
      return (matrices.MatrixStacks(updates.groups, tuple(p[0] for p in pairs)),
              matrices.MatrixStacks(updates.groups, tuple(p[1] for p in pairs)))

    (stats, vecs), count, recorded = _record(
        cfg, state, compute, lambda _: (state.stats, state.right_vectors))
    return _after(stats, updates), SpectralProbeState(count, recorded, stats, vecs)

  return matrices.stacked_transform(init_fn, update_fn, dimension_numbers)


def update_probe(diagnostics: Any, *, convention: str = "moonlight", rms: float = 0.2,
                 exact: bool = False, dimension_numbers: dn.DimensionNumbersSpec = None,
                 ) -> optax.GradientTransformationExtraArgs:
  """Records ``‖OᵀO − I‖`` and the scaled update's RMS vs its target; placed after NS.

  ``update_rms`` is ``RMS(O)`` times the convention's factor (divided by ``‖O‖₂``
  when ``exact``, as ``spectral_scale(exact=True)`` does); its target is the
  value for an exact polar factor of a full-rank matrix (``rms`` for
  ``"moonlight"``); ``update_rms_ratio`` = measured / target.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from optax_muon import diagnostics, orthogonalize
    >>> tx = diagnostics.update_probe(1)
    >>> o = orthogonalize(jax.random.normal(jax.random.key(0), (16, 8)), steps=8,
    ...                   schedule="polar_express")
    >>> _, state = tx.update({"w": o}, tx.init({"w": o}))
    >>> st = diagnostics.read(state)["w"]
    >>> bool(st["ortho_error"][0] < 0.02), round(float(st["update_rms_ratio"][0]), 2)
    (True, 1.0)
  """
  cfg = as_config(diagnostics)

  def init_fn(params):
    def stats(g, p):
      sel = _selection(cfg, g)
      return (MatrixStats(jnp.asarray(sel), None, None, _zeros(UPDATE_FIELDS, g.rows))
              if sel.any() else None)
    return SpectralProbeState(jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32),
                              params.map(stats), None)

  def update_fn(updates, state, params=None, **extra):
    del params, extra

    def compute_group(g, u, st):
      if st is None:
        return st
      sel = np.flatnonzero(_selection(cfg, g))
      om = (u if sel.size == g.rows else u[sel]).astype(jnp.float32)
      err = statistics.orthogonality_error(om)
      factor = scale_lib.scale_factor(convention, g.fan_in, g.fan_out, rms)
      measured = factor * jnp.sqrt(jnp.mean(jnp.square(om), axis=(1, 2)))
      if exact:
        measured = measured / jnp.maximum(err["sigma_max"], 1e-30)
      target = factor / math.sqrt(max(g.fan_in, g.fan_out))
      return MatrixStats(st.selected, None, None, _scatter(st.update, sel, {
          "ortho_error": err["ortho_error"], "ortho_error_rms": err["ortho_error_rms"],
          "update_rms": measured, "update_rms_ratio": measured / target}))

    def compute(_):
      return matrices.MatrixStacks(updates.groups, tuple(_in_sequence(compute_group, [
          (g, u, st) for (g, u), st in zip(updates.items(), state.stats.values)])))

    stats, count, recorded = _record(cfg, state, compute, lambda _: state.stats)
    return _after(stats, updates), SpectralProbeState(count, recorded, stats, None)

  return matrices.stacked_transform(init_fn, update_fn, dimension_numbers)


def before_ns(diagnostics: Any, *, schedule: Any, steps: Any, weights: bool = True) -> tuple:
  """The probes an alias inserts before ``newton_schulz`` (``()`` when off)."""
  cfg = as_config(diagnostics)
  if cfg is None or not (cfg.momentum or (weights and cfg.weight_norm != "none")):
    return ()
  return (spectral_probe(cfg, schedule=schedule, steps=steps, weights=weights),)


def after_ns(diagnostics: Any, *, convention: str, rms: Any = 0.2, exact: bool = False) -> tuple:
  """The probes an alias inserts right after ``newton_schulz`` (``()`` when off)."""
  cfg = as_config(diagnostics)
  if cfg is None or not cfg.update:
    return ()
  return (update_probe(cfg, convention=convention, rms=rms, exact=exact),)


def weight_probe(diagnostics: Any) -> tuple:
  """A weights-only probe (Muown's outer chain, where ``params`` are the real ``W``)."""
  cfg = as_config(diagnostics)
  if cfg is None or cfg.weight_norm == "none":
    return ()
  return (spectral_probe(cfg, momentum=False),)


def _is_probe_state(x):
  return isinstance(x, SpectralProbeState)


def read(opt_state: Any) -> dict[str, dict[str, Any]]:
  """``{param path: {stat: [B] array}}`` from every probe inside ``opt_state``.

  Also gives ``"__step__"``: the 1-based step of the latest recording. Works on
  device arrays (inside or outside ``jit``) and on host copies.

  Examples:
    >>> import jax.numpy as jnp, optax_muon
    >>> from optax_muon import diagnostics
    >>> params = {"layers": {"0": {"attn": {"q": {"kernel": jnp.eye(4)}}}}}
    >>> tx = optax_muon.muon(1e-3, diagnostics=1)
    >>> _, state = tx.update(params, tx.init(params), params)
    >>> sorted(diagnostics.read(state))[:2]
    ['__step__', 'layers/0/attn/q/kernel']
  """
  out: dict[str, dict[str, Any]] = {}
  steps = []
  probes = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_probe_state)
            if _is_probe_state(x)]
  for probe in probes:
    steps.append(probe.recorded_step)
    for g, st in probe.stats.items():
      if st is None:
        continue
      # Inside jit the selection is traced: report every member then.
      selected = (np.ones(g.rows, bool) if isinstance(st.selected, jax.core.Tracer)
                  else np.asarray(st.selected))
      for m in g.members:
        rows = slice(m.start, m.start + m.rows)
        if not selected[rows].any():
          continue
        d = out.setdefault(m.path, {})
        for part in (st.spectrum, st.weight, st.update):
          if part is not None:
            d.update({k: v[rows] for k, v in part.items()})
  if steps:
    out["__step__"] = {"step": steps[0] if len(steps) == 1 else
                       jnp.max(jnp.stack([jnp.asarray(s) for s in steps]))}
  return dict(sorted(out.items()))
