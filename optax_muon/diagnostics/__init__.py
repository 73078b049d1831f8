"""Spectral diagnostics and a layer-aware Newton–Schulz recipe (docs/algorithms.md, "Spectral diagnostics").

Three modules: ``statistics`` (per-matrix numbers), ``probes`` (recording them
from inside the optimizer) and ``recipe`` (a per-layer Newton–Schulz configuration).

Statistics (jit-friendly, plain dicts of ``[B]`` arrays): :func:`momentum_spectrum`,
:func:`svd_entropy`, :func:`orthogonality_error`, :func:`weight_spectral_norm`,
:func:`row_factors`, :func:`attention_logit_summary`; grouping by layer type and
depth: :func:`matrix_group`, :func:`group_stats`.

Collection inside the optimizer: the aliases take ``diagnostics=N`` (or a
:class:`DiagnosticsConfig`) and insert :func:`spectral_probe` before and
:func:`update_probe` after Newton–Schulz; :func:`read` extracts
``{path: {stat: [B]}}`` from the optimizer state.

Recipe: :func:`fit_spectral_power_law` and :func:`recommend_ns_schedule`, whose
:class:`NSRecipe` feeds the aliases' per-leaf ``ns_schedule``/``ns_steps``.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from optax_muon import diagnostics
  >>> st = jax.jit(diagnostics.momentum_spectrum)(jnp.eye(8))
  >>> round(float(st["svd_entropy"][0]), 3)
  1.0
"""

from optax_muon._src.coefficients import ns_failure_threshold
from optax_muon._src.coefficients import ns_scalar_map
from optax_muon.diagnostics.statistics import QUANTILES
from optax_muon.diagnostics.statistics import attention_logit_summary
from optax_muon.diagnostics.statistics import depth_bucket
from optax_muon.diagnostics.statistics import group_stats
from optax_muon.diagnostics.statistics import layer_index
from optax_muon.diagnostics.statistics import layer_type
from optax_muon.diagnostics.statistics import matrix_group
from optax_muon.diagnostics.statistics import momentum_spectrum
from optax_muon.diagnostics.statistics import orthogonality_error
from optax_muon.diagnostics.statistics import row_factors
from optax_muon.diagnostics.statistics import singular_values
from optax_muon.diagnostics.statistics import spectrum_stats
from optax_muon.diagnostics.statistics import svd_entropy
from optax_muon.diagnostics.statistics import weight_spectral_norm
from optax_muon.diagnostics.recipe import NSCandidate
from optax_muon.diagnostics.recipe import NSRecipe
from optax_muon.diagnostics.recipe import PowerLaw
from optax_muon.diagnostics.recipe import analytic_candidates
from optax_muon.diagnostics.recipe import candidates_from_rows
from optax_muon.diagnostics.recipe import fit_spectral_power_law
from optax_muon.diagnostics.recipe import group_regex
from optax_muon.diagnostics.recipe import recommend_ns_schedule
from optax_muon.diagnostics.probes import DiagnosticsConfig
from optax_muon.diagnostics.probes import MatrixStats
from optax_muon.diagnostics.probes import SpectralProbeState
from optax_muon.diagnostics.probes import read
from optax_muon.diagnostics.probes import spectral_probe
from optax_muon.diagnostics.probes import update_probe

__all__ = [
    "DiagnosticsConfig",
    "MatrixStats",
    "NSCandidate",
    "NSRecipe",
    "PowerLaw",
    "QUANTILES",
    "SpectralProbeState",
    "analytic_candidates",
    "attention_logit_summary",
    "candidates_from_rows",
    "depth_bucket",
    "fit_spectral_power_law",
    "group_regex",
    "group_stats",
    "layer_index",
    "layer_type",
    "matrix_group",
    "momentum_spectrum",
    "ns_failure_threshold",
    "ns_scalar_map",
    "orthogonality_error",
    "read",
    "recommend_ns_schedule",
    "row_factors",
    "singular_values",
    "spectral_probe",
    "spectrum_stats",
    "svd_entropy",
    "update_probe",
    "weight_spectral_norm",
]
