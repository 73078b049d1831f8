"""optax_muon: Muon, Muon++ and Muown for JAX/Optax.

Composable transforms (``newton_schulz``, ``spectral_scale``, ``row_norm_ell_inf``,
``decoupled_weight_decay``, ``qk_clip``) and the aliases built from them
(``muon``, ``muon_plus_plus``, ``muown``).
"""

from optax_muon._src.coefficients import NORMALIZATION_SCALE
from optax_muon._src.coefficients import SCHEDULES
from optax_muon._src.coefficients import ns_coefficients
from optax_muon._src.coefficients import ns_failure_threshold
from optax_muon._src.coefficients import ns_scalar_map
from optax_muon._src.coefficients import polar_express_coefficients
from optax_muon._src.dimension_numbers import MuonDimensionNumbers
from optax_muon._src.dimension_numbers import resolve_dimension_numbers
from optax_muon._src.labels import default_matrix_rule
from optax_muon._src.momentum import MOMENTUM_FORMS
from optax_muon._src.momentum import muon_momentum
from optax_muon._src.muon import muon
from optax_muon._src.muon_plus_plus import muon_plus_plus
from optax_muon._src.muown import muown
from optax_muon._src.newton_schulz import NORMALIZATIONS
from optax_muon._src.newton_schulz import newton_schulz
from optax_muon._src.newton_schulz import orthogonalize
from optax_muon._src.nonfinite import skip_nonfinite
from optax_muon._src.partition import partition
from optax_muon._src.qk_clip import QKClipSpec
from optax_muon._src.qk_clip import qk_clip
from optax_muon._src.row_norm import row_norm_ell_inf
from optax_muon._src.sharding import init_sharded
from optax_muon._src.sharding import state_shardings
from optax_muon._src.spectral_decay import spectral_weight_decay
from optax_muon._src.spectral_scale import SCALE_CONVENTIONS
from optax_muon._src.spectral_scale import spectral_scale
from optax_muon._src.weight_decay import decoupled_weight_decay
from optax_muon import diagnostics  # the public submodule

__version__ = "0.1.0"

__all__ = [
    "MOMENTUM_FORMS",
    "MuonDimensionNumbers",
    "NORMALIZATIONS",
    "NORMALIZATION_SCALE",
    "QKClipSpec",
    "SCALE_CONVENTIONS",
    "SCHEDULES",
    "decoupled_weight_decay",
    "diagnostics",
    "default_matrix_rule",
    "muon",
    "muon_momentum",
    "muon_plus_plus",
    "muown",
    "newton_schulz",
    "ns_coefficients",
    "ns_failure_threshold",
    "ns_scalar_map",
    "orthogonalize",
    "partition",
    "polar_express_coefficients",
    "qk_clip",
    "resolve_dimension_numbers",
    "init_sharded",
    "row_norm_ell_inf",
    "skip_nonfinite",
    "spectral_scale",
    "spectral_weight_decay",
    "state_shardings",
]
