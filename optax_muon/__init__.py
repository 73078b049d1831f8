"""optax_muon: Muon, Muon++, Muown and NorMuon for JAX/Optax.

Composable transforms (``scale_by_muon``, ``newton_schulz``, ``spectral_scale``,
``row_norm_ell_inf``, ``decoupled_weight_decay``, ``qk_clip``, ...), one
per-matrix primitive (``matrix_partition``, ``per_matrix``) and the aliases
built from them (``muon``, ``muon_plus_plus``, ``muown``, ``normuon``). Two public
submodules: ``optax_muon.matrices`` (the matrix plans and stacks under the
per-matrix primitive) and ``optax_muon.diagnostics`` (spectral statistics, probes
and a Newton–Schulz recipe). The math, in this project's own words:
``docs/algorithms.md``.
"""

from optax_muon._src.coefficients import NORMALIZATION_SCALE
from optax_muon._src.coefficients import SCHEDULES
from optax_muon._src.coefficients import ns_coefficients
from optax_muon._src.coefficients import ns_failure_threshold
from optax_muon._src.coefficients import ns_scalar_map
from optax_muon._src.coefficients import ns_spectral_norm_range
from optax_muon._src.coefficients import polar_express_coefficients
from optax_muon._src.describe import describe
from optax_muon._src.dimension_numbers import MuonDimensionNumbers
from optax_muon._src.dimension_numbers import default_matrix_rule
from optax_muon._src.dimension_numbers import path_to_str
from optax_muon._src.dimension_numbers import resolve_dimension_numbers
from optax_muon._src.fused import FusedDimensionNumbers
from optax_muon._src.layouts import conv_dimension_numbers
from optax_muon._src.layouts import dimension_numbers_for
from optax_muon._src.matrices import matrix_partition
from optax_muon._src.matrices import per_matrix
from optax_muon._src.momentum import MOMENTUM_FORMS
from optax_muon._src.momentum import MomentumState
from optax_muon._src.momentum import muon_momentum
from optax_muon._src.muon import muon
from optax_muon._src.muon_plus_plus import muon_plus_plus
from optax_muon._src.muown import muown
from optax_muon._src.neuron_norm import normalize_neurons
from optax_muon._src.newton_schulz import NORMALIZATIONS
from optax_muon._src.newton_schulz import newton_schulz
from optax_muon._src.newton_schulz import orthogonalize
from optax_muon._src.nonfinite import skip_nonfinite
from optax_muon._src.normuon import normuon
from optax_muon._src.nonfinite import skipped_steps
from optax_muon._src.path_kinds import path_family
from optax_muon._src.path_kinds import path_kind
from optax_muon._src.power_iteration import top_singular_triplet
from optax_muon._src.qk_clip import QKClipSpec
from optax_muon._src.qk_clip import qk_clip
from optax_muon._src.row_norm import row_norm_ell_inf
from optax_muon._src.scale_by_muon import scale_by_muon
from optax_muon._src.state_sharding import init_sharded
from optax_muon._src.state_sharding import state_shardings
from optax_muon._src.spectral_decay import spectral_weight_decay
from optax_muon._src.spectral_scale import SCALE_CONVENTIONS
from optax_muon._src.spectral_scale import spectral_scale
from optax_muon._src.weight_decay import decoupled_weight_decay
from optax_muon import diagnostics
from optax_muon import matrices

__version__ = "0.2.0"

__all__ = [
    "MOMENTUM_FORMS",
    "MomentumState",
    "FusedDimensionNumbers",
    "MuonDimensionNumbers",
    "NORMALIZATIONS",
    "NORMALIZATION_SCALE",
    "QKClipSpec",
    "SCALE_CONVENTIONS",
    "SCHEDULES",
    "conv_dimension_numbers",
    "decoupled_weight_decay",
    "describe",
    "dimension_numbers_for",
    "default_matrix_rule",
    "diagnostics",
    "init_sharded",
    "matrices",
    "matrix_partition",
    "muon",
    "muon_momentum",
    "muon_plus_plus",
    "muown",
    "normalize_neurons",
    "normuon",
    "newton_schulz",
    "ns_coefficients",
    "ns_failure_threshold",
    "ns_scalar_map",
    "ns_spectral_norm_range",
    "orthogonalize",
    "path_family",
    "path_kind",
    "path_to_str",
    "per_matrix",
    "polar_express_coefficients",
    "qk_clip",
    "resolve_dimension_numbers",
    "row_norm_ell_inf",
    "scale_by_muon",
    "skip_nonfinite",
    "skipped_steps",
    "spectral_scale",
    "spectral_weight_decay",
    "state_shardings",
    "top_singular_triplet",
]
