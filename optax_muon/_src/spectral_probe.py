"""Probes that record spectral diagnostics from inside the optimizer chain.

Inserted into an alias's matrix chain, a probe passes the updates through
unchanged and every ``every`` steps (``(count + 1) % every == 0``, so the
numbers are fresh at 1-based step multiples of ``every``) records per-matrix
statistics into its own state, under ``jax.lax.cond`` so the heavy part (SVD,
``eigvalsh``) runs only on those steps and only on the matrices selected by
``which``:

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

from __future__ import annotations

import math
import re
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_muon._src import coefficients as coeffs_lib
from optax_muon._src import diagnostics as diag_lib
from optax_muon._src import dimension_numbers as dn
from optax_muon._src import power_iteration as pi
from optax_muon._src import spectral_scale as scale_lib

__all__ = [
    "DiagnosticsConfig",
    "MatrixStats",
    "SpectralProbeState",
    "as_config",
    "spectral_probe",
    "update_probe",
    "read",
    "before_ns",
    "after_ns",
]

_SPECTRUM_FIELDS = tuple(f"sigma_q{int(round(q * 100)):02d}" for q in diag_lib.QUANTILES) + (
    "sigma_1", "sigma_ratio_12", "spike_share", "stable_rank", "frac_below",
    "descent_retained", "svd_entropy")
_WEIGHT_FIELDS = ("weight_norm", "row_magnitude", "row_coherence")
_UPDATE_FIELDS = ("ortho_error", "ortho_error_rms", "update_rms", "update_rms_ratio")


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
  """Recorded statistics of one parameter: dicts of ``[B]`` float32 (or None)."""

  spectrum: Any  # NS-input spectrum (spectral_probe), keys _SPECTRUM_FIELDS.
  weight: Any  # weight norm and row factors (spectral_probe), keys _WEIGHT_FIELDS.
  update: Any  # orthogonality error and update RMS (update_probe), keys _UPDATE_FIELDS.


class SpectralProbeState(NamedTuple):
  count: jax.Array  # shape=(), dtype=int32: updates seen.
  recorded_step: jax.Array  # shape=(), dtype=int32: 1-based step of the last recording (0 = none).
  stats: Any  # tree like params: MatrixStats per probed matrix, None elsewhere.
  right_vectors: Any  # tree like params: [B, fan_out] float32 power-iteration vectors, or None.


def _per_leaf(value: Any, path: str, default: Any) -> Any:
  """A ``{regex: value}`` mapping resolved for ``path`` (first match), else the value."""
  if isinstance(value, Mapping):
    for pat, v in value.items():
      if re.search(pat, path):
        return v
    return default
  return default if value is None else value


def _zeros(fields, batch):
  return {k: jnp.zeros((batch,), jnp.float32) for k in fields}


def _selected(cfg, path, lay):
  return lay is not None and (cfg.which is None or re.search(cfg.which, path) is not None)


def spectral_probe(diagnostics: Any, *, schedule: Any = "jordan", steps: Any = 5,
                   default_schedule: coeffs_lib.Schedule = "jordan", default_steps: int = 5,
                   dimension_numbers: dn.DimensionNumbersSpec = None,
                   momentum: bool | None = None, weights: bool = True,
                   ) -> optax.GradientTransformation:
  """Records the NS-input spectrum and weight statistics; updates pass unchanged.

  Args:
    diagnostics: a :class:`DiagnosticsConfig` (or an int ``every``).
    schedule, steps: the Newton–Schulz schedule and step count that follow
      (each may be a ``{regex: value}`` mapping resolved per leaf path, unmatched
      leaves using ``default_schedule``/``default_steps``); they set the failure
      threshold and scalar map of ``frac_below`` and ``descent_retained``.
    dimension_numbers: which leaves are matrices (default: rank >= 2, last two axes).
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
  record_spectrum = cfg.momentum if momentum is None else momentum
  record_weight = weights and cfg.weight_norm != "none"

  def init_fn(params):
    treedef, entries = dn.matrix_leaves(dimension_numbers, params)
    stats, vecs = [], []
    for path, _, lay in entries:
      if not _selected(cfg, path, lay):
        stats.append(None)
        vecs.append(None)
        continue
      stats.append(MatrixStats(
          spectrum=_zeros(_SPECTRUM_FIELDS, lay.batch) if record_spectrum else None,
          weight=_zeros(_WEIGHT_FIELDS, lay.batch) if record_weight else None,
          update=None))
      vecs.append(pi.init_right_vectors(lay.batch, lay.fan_out)
                  if record_weight and cfg.weight_norm == "power" else None)
    return SpectralProbeState(jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32),
                              treedef.unflatten(stats), treedef.unflatten(vecs))

  def update_fn(updates, state, params=None):
    treedef, entries = dn.matrix_leaves(dimension_numbers, updates)
    old_stats = treedef.flatten_up_to(state.stats)
    old_vecs = treedef.flatten_up_to(state.right_vectors)
    ws = treedef.flatten_up_to(params) if params is not None else [None] * len(entries)
    sel = [i for i, (path, _, lay) in enumerate(entries) if _selected(cfg, path, lay)]

    def compute(_):
      new_stats, new_vecs = list(old_stats), list(old_vecs)
      for i in sel:
        path, u, lay = entries[i]
        spec = wst = None
        if record_spectrum:
          spec = diag_lib.momentum_spectrum(
              dn.to_matrices(u, lay), schedule=_per_leaf(schedule, path, default_schedule),
              steps=_per_leaf(steps, path, default_steps), level=cfg.level,
              method=cfg.method)
          spec = {k: spec[k].astype(jnp.float32) for k in _SPECTRUM_FIELDS}
        if record_weight:
          if ws[i] is None:
            wst = old_stats[i].weight
          else:
            wm = dn.to_matrices(ws[i], lay)
            norm, v = diag_lib.weight_spectral_norm(
                wm, old_vecs[i], iters=cfg.power_iterations, exact=cfg.weight_norm == "svd")
            if old_vecs[i] is not None:
              new_vecs[i] = v
            rf = diag_lib.row_factors(wm, spectral_norm=norm)
            wst = {"weight_norm": norm, "row_magnitude": rf["row_magnitude"],
                   "row_coherence": rf["row_coherence"]}
        new_stats[i] = MatrixStats(spectrum=spec, weight=wst, update=None)
      return new_stats, new_vecs

    def keep(_):
      return list(old_stats), list(old_vecs)

    due = (state.count + 1) % cfg.every == 0
    new_stats, new_vecs = jax.lax.cond(due, compute, keep, None)
    recorded = jnp.where(due, state.count + 1, state.recorded_step).astype(jnp.int32)
    new_state = SpectralProbeState(optax.safe_increment(state.count), recorded,
                                   treedef.unflatten(new_stats), treedef.unflatten(new_vecs))
    return updates, new_state

  return optax.GradientTransformation(init_fn, update_fn)


def update_probe(diagnostics: Any, *, convention: str = "moonlight", rms: float = 0.2,
                 exact: bool = False, dimension_numbers: dn.DimensionNumbersSpec = None,
                 ) -> optax.GradientTransformation:
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
  if not isinstance(rms, (int, float)):
    rms = float(rms)

  def init_fn(params):
    treedef, entries = dn.matrix_leaves(dimension_numbers, params)
    stats = [MatrixStats(None, None, _zeros(_UPDATE_FIELDS, lay.batch))
             if _selected(cfg, path, lay) else None for path, _, lay in entries]
    return SpectralProbeState(jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32),
                              treedef.unflatten(stats), None)

  def update_fn(updates, state, params=None):
    del params
    treedef, entries = dn.matrix_leaves(dimension_numbers, updates)
    old_stats = treedef.flatten_up_to(state.stats)
    sel = [i for i, (path, _, lay) in enumerate(entries) if _selected(cfg, path, lay)]

    def compute(_):
      new_stats = list(old_stats)
      for i in sel:
        _, u, lay = entries[i]
        om = dn.to_matrices(u, lay).astype(jnp.float32)
        err = diag_lib.orthogonality_error(om)
        factor = scale_lib.scale_factor(convention, lay.fan_in, lay.fan_out, rms)
        rms_o = jnp.sqrt(jnp.mean(jnp.square(om), axis=(1, 2)))
        measured = factor * rms_o
        if exact:
          measured = measured / jnp.maximum(err["sigma_max"], 1e-30)
        target = factor / math.sqrt(max(lay.fan_in, lay.fan_out))
        new_stats[i] = MatrixStats(None, None, {
            "ortho_error": err["ortho_error"], "ortho_error_rms": err["ortho_error_rms"],
            "update_rms": measured, "update_rms_ratio": measured / target})
      return new_stats

    due = (state.count + 1) % cfg.every == 0
    new_stats = jax.lax.cond(due, compute, lambda _: list(old_stats), None)
    recorded = jnp.where(due, state.count + 1, state.recorded_step).astype(jnp.int32)
    return updates, SpectralProbeState(optax.safe_increment(state.count), recorded,
                                       treedef.unflatten(new_stats), None)

  return optax.GradientTransformation(init_fn, update_fn)


def before_ns(diagnostics: Any, *, schedule: Any, steps: Any, default_schedule: Any,
              default_steps: int, dimension_numbers: Any, weights: bool = True) -> tuple:
  """The probes an alias inserts before ``newton_schulz`` (``()`` when off)."""
  cfg = as_config(diagnostics)
  if cfg is None or not (cfg.momentum or (weights and cfg.weight_norm != "none")):
    return ()
  return (spectral_probe(cfg, schedule=schedule, steps=steps, default_schedule=default_schedule,
                         default_steps=default_steps, dimension_numbers=dimension_numbers,
                         weights=weights),)


def after_ns(diagnostics: Any, *, convention: str, rms: Any = 0.2, exact: bool = False,
             dimension_numbers: Any) -> tuple:
  """The probes an alias inserts right after ``newton_schulz`` (``()`` when off)."""
  cfg = as_config(diagnostics)
  if cfg is None or not cfg.update:
    return ()
  return (update_probe(cfg, convention=convention, rms=rms, exact=exact,
                       dimension_numbers=dimension_numbers),)


def weight_probe(diagnostics: Any, *, dimension_numbers: Any) -> tuple:
  """A weights-only probe (Muown's outer chain, where ``params`` are the real ``W``)."""
  cfg = as_config(diagnostics)
  if cfg is None or cfg.weight_norm == "none":
    return ()
  return (spectral_probe(cfg, dimension_numbers=dimension_numbers, momentum=False),)


def _is_probe_state(x):
  return isinstance(x, SpectralProbeState)


def _is_stats(x):
  return isinstance(x, MatrixStats)


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
    flat, _ = jax.tree_util.tree_flatten_with_path(probe.stats, is_leaf=_is_stats)
    for path, st in flat:
      if not _is_stats(st):
        continue
      d = out.setdefault(dn.path_to_str(path), {})
      for part in st:
        if part is not None:
          d.update(part)
  if steps:
    out["__step__"] = {"step": steps[0] if len(steps) == 1 else
                       jnp.max(jnp.stack([jnp.asarray(s) for s in steps]))}
  return dict(sorted(out.items()))
