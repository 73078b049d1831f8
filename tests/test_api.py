"""The public API: its names, and the aliases' written-out, typed, agreeing signatures."""

import ast
import inspect
import pathlib
import typing

import jax
import optax
import pytest

import optax_muon as om
from optax_muon import matrices
from optax_muon._src import alias_parts

ROOT = pathlib.Path(om.__file__).parent
ALIASES = {"muon": om.muon, "muon_plus_plus": om.muon_plus_plus, "muown": om.muown,
           "normuon": om.normuon}
# The shared arguments' defaults, written by hand: Moonlight's recipe, and the documented
# departures of Muon++ (Polar Express; the radius bounds the weights, so no matrix decay)
# and Muown (the paper's zero matrix decay), whose AdamW leaves decay with 0.1.
SHARED_DEFAULTS = {
    "beta": 0.95, "nesterov": True, "mu_dtype": None, "ns_schedule": "jordan", "ns_steps": None,
    "normalization": "frobenius", "compute_dtype": None, "ns_method": "auto",
    "weight_decay": 0.1, "weight_decay_mask": None, "adam_b1": 0.9, "adam_b2": 0.95,
    "adam_eps": 1e-8, "adam_weight_decay": None, "adam_learning_rate": None,
    "dimension_numbers": None, "skip_nonfinite": True, "mesh": None, "diagnostics": None,
}
ALIAS_DEFAULTS = {
    "muon": {},
    "normuon": {},
    "muown": {"weight_decay": 0.0, "adam_weight_decay": 0.1},
    "muon_plus_plus": {"ns_schedule": "polar_express", "weight_decay": 0.0,
                       "adam_weight_decay": 0.1},
}
PUBLIC = {
    "FusedDimensionNumbers", "conv_dimension_numbers", "describe", "dimension_numbers_for",
    "MOMENTUM_FORMS", "MomentumState", "MuonDimensionNumbers", "NORMALIZATIONS",
    "NORMALIZATION_SCALE", "QKClipSpec", "SCALE_CONVENTIONS", "SCHEDULES",
    "decoupled_weight_decay", "default_matrix_rule", "diagnostics", "init_sharded", "matrices",
    "matrix_partition", "muon", "muon_momentum", "muon_plus_plus", "muown", "normalize_neurons",
    "normuon", "newton_schulz", "ns_coefficients", "ns_failure_threshold", "ns_scalar_map",
    "ns_spectral_norm_range", "orthogonalize", "path_family", "path_kind", "path_to_str",
    "per_matrix", "polar_express_coefficients", "qk_clip", "resolve_dimension_numbers",
    "row_norm_ell_inf", "scale_by_muon", "skip_nonfinite", "skipped_steps", "spectral_scale",
    "spectral_weight_decay", "state_shardings", "top_singular_triplet",
}
MATRIX_INTERNALS = ("Group", "MatrixPlan", "MatrixStacks", "Member", "MatrixLayout",
                    "plan_matrices", "stacked_transform", "row_mask", "row_runs", "is_stacks")


def test_the_top_level_exports_exactly_the_public_api():
  assert set(om.__all__) == PUBLIC
  assert len(om.__all__) == len(set(om.__all__))
  for name in om.__all__:
    assert hasattr(om, name), name
  for gone in ("partition", "alias") + MATRIX_INTERNALS:
    assert not hasattr(om, gone), gone


def test_matrix_internals_live_in_the_matrices_submodule():
  for name in MATRIX_INTERNALS + ("matrix_partition", "per_matrix"):
    assert name in matrices.__all__ and hasattr(matrices, name), name
  assert matrices.matrix_partition is om.matrix_partition
  assert matrices.per_matrix is om.per_matrix


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_alias_signature_is_written_out_with_types_and_defaults(name):
  sig = inspect.signature(ALIASES[name])
  # The signature is the function's own: no wrapper, no signature made at run time.
  assert not hasattr(ALIASES[name], "__wrapped__")
  assert not hasattr(ALIASES[name], "__signature__")
  params = list(sig.parameters.values())
  assert params[0].name == "learning_rate"
  assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
  assert params[0].annotation == optax.ScalarOrSchedule
  assert params[0].default is inspect.Parameter.empty
  for p in params[1:]:
    assert p.kind is inspect.Parameter.KEYWORD_ONLY, p
    assert p.annotation is not inspect.Parameter.empty, p
    assert p.default is not inspect.Parameter.empty, p
  assert sig.return_annotation == optax.GradientTransformationExtraArgs


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_shared_arguments_agree_across_the_aliases(name):
  sig = inspect.signature(ALIASES[name])
  hints = typing.get_type_hints(alias_parts.Shared)
  assert set(alias_parts.Shared._fields) == set(SHARED_DEFAULTS)
  expected = {**SHARED_DEFAULTS, **ALIAS_DEFAULTS[name]}
  for field in alias_parts.Shared._fields:
    p = sig.parameters[field]
    assert p.kind is inspect.Parameter.KEYWORD_ONLY, field
    assert p.annotation == hints[field], (field, p.annotation, hints[field])
    assert p.default == expected[field], (field, p.default)
    assert type(p.default) is type(expected[field]), field  # 0.0 is not 0, 1e-8 not "1e-8"
  for field, default in SHARED_DEFAULTS.items():
    assert alias_parts.Shared._field_defaults[field] == default, field


def test_numeric_hyperparameters_are_array_like_and_injectable():
  sig = inspect.signature(om.muon)
  for name in ("beta", "weight_decay", "adam_b1", "adam_b2", "adam_eps", "rms"):
    assert sig.parameters[name].annotation == jax.typing.ArrayLike, name
  # optax.inject_hyperparams reads the written signature: numeric ones become state.
  tx = optax.inject_hyperparams(om.muon)(learning_rate=1e-2, beta=0.9, weight_decay=0.0)
  state = tx.init({"w": jax.numpy.ones((4, 4))})
  assert float(state.hyperparams["beta"]) == pytest.approx(0.9)
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(1e-2)


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_alias_docstring_documents_every_argument(name):
  doc = inspect.getdoc(ALIASES[name])
  assert "@@shared@@" not in doc
  args = doc[doc.index("Args:"):]
  for p in inspect.signature(ALIASES[name]).parameters:
    assert f"\n  {p}:" in args, p


def test_one_default_newton_schulz_method_everywhere():
  for fn, arg in ((om.newton_schulz, "method"), (om.orthogonalize, "method"),
                  (om.scale_by_muon, "ns_method"), *((f, "ns_method") for f in ALIASES.values())):
    assert inspect.signature(fn).parameters[arg].default == "auto", fn


def test_shared_arguments_are_checked_naming_the_argument():
  for name, fn in ALIASES.items():
    for arg, value in (("beta", 1.0), ("adam_b2", -0.1), ("weight_decay", -1.0),
                       ("adam_eps", -1e-8), ("adam_learning_rate", -1.0)):
      with pytest.raises(ValueError, match=arg):
        fn(1e-2, **{arg: value})
    with pytest.raises(ValueError, match="learning_rate"):
      fn(-1.0)
    with pytest.raises(TypeError):
      fn(1e-2, no_such_argument=1)


def test_no_src_module_imports_the_top_level_package():
  for f in sorted((ROOT / "_src").glob("*.py")):
    for node in ast.walk(ast.parse(f.read_text())):
      if isinstance(node, ast.Import):
        assert all(a.name != "optax_muon" for a in node.names), f
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        assert node.module != "optax_muon", (f, [a.name for a in node.names])


def test_the_package_is_typed():
  assert (ROOT / "py.typed").is_file()
