"""The trainer's optimizer labels for the model: Muon dimension numbers and QK-clip specs."""

import jax
import pytest
from flax import nnx
from optax.contrib import MuonDimensionNumbers

import models
from train import labels


def abstract(cfg: models.ModelConfig) -> nnx.State:
  with nnx.use_eager_sharding(False):
    return nnx.state(nnx.eval_shape(lambda: models.Transformer(cfg, rngs=nnx.Rngs(0))))


def is_dn(x) -> bool:
  return isinstance(x, MuonDimensionNumbers)


@pytest.mark.parametrize("scan", [False, True])
def test_dimension_numbers_route_hidden_matrices_to_muon(scan):
  cfg = models.get_config("tiny", n_layers=2, scan_layers=scan)
  params = nnx.to_pure_dict(abstract(cfg))
  dn = labels.dimension_numbers(params)
  assert dn["embed"]["embedding"] is None
  assert dn["lm_head"]["kernel"] is None
  assert dn["final_norm"]["scale"] is None
  layers = dn["layers"] if scan else dn["layers"][0]
  expected = MuonDimensionNumbers(1, 2) if scan else MuonDimensionNumbers(0, 1)
  for name in ("q", "k", "v", "o"):
    assert layers["attn"][name]["kernel"] == expected
  for name in ("gate", "up", "down"):
    assert layers["mlp"][name]["kernel"] == expected
  for norm in (layers["attn_norm"], layers["mlp_norm"], layers["attn"]["q_norm"]):
    assert norm["scale"] is None
  assert (jax.tree.structure(dn, is_leaf=lambda x: x is None or is_dn(x))
          == jax.tree.structure(params))


def test_dimension_numbers_accept_nnx_state():
  dn = labels.dimension_numbers(abstract(models.get_config("tiny", n_layers=1)))
  leaves = jax.tree.leaves(dn, is_leaf=is_dn)
  assert sum(map(is_dn, leaves)) == 7


def test_qk_clip_specs():
  cfg = models.get_config("tiny", n_layers=2)
  specs = labels.qk_clip_specs(nnx.to_pure_dict(abstract(cfg)), cfg)
  q = specs["layers"][1]["attn"]["q"]["kernel"]
  k = specs["layers"][1]["attn"]["k"]["kernel"]
  assert (q.layer, q.role, q.head_axis, q.num_heads, q.shared_keys) == (
      "layers_1", "query", 1, cfg.n_heads, True)
  assert (k.layer, k.role, k.num_heads) == ("layers_1", "key", cfg.n_kv_heads)
  assert specs["layers"][1]["attn"]["v"]["kernel"] is None
  assert specs["embed"]["embedding"] is None


def test_qk_clip_specs_reject_scanned_layers():
  cfg = models.get_config("tiny", n_layers=2, scan_layers=True)
  with pytest.raises(ValueError, match="scan_layers"):
    labels.qk_clip_specs(nnx.to_pure_dict(abstract(cfg)), cfg)


def test_the_model_does_not_import_the_optimizer():
  import pathlib  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(models.__file__).parent
  for f in root.glob("*.py"):
    assert "optax_muon" not in f.read_text(), f



@pytest.mark.parametrize("scan", [False, True])
def test_dimension_numbers_are_the_librarys_default_rule(scan):
  # The trainer has no classifier of its own: its labels are the ones an alias picks when
  # `dimension_numbers` is left unset (the same matrices, grouped the same way).
  import optax_muon as om  # pylint: disable=g-import-not-at-top
  from optax_muon import matrices  # pylint: disable=g-import-not-at-top
  params = nnx.to_pure_dict(abstract(models.get_config("tiny", n_layers=2, scan_layers=scan)))
  ours = matrices.plan_matrices(params, labels.dimension_numbers)
  default = matrices.plan_matrices(params, None, default_rule=om.default_matrix_rule)
  assert ours.layouts == default.layouts
  assert [(g.name, g.rows) for g in ours.groups] == [(g.name, g.rows) for g in default.groups]


def test_the_trainer_keeps_no_kind_list_of_its_own():
  import pathlib  # pylint: disable=g-import-not-at-top
  import train  # pylint: disable=g-import-not-at-top
  for f in pathlib.Path(train.__file__).parent.rglob("*.py"):
    text = f.read_text()
    assert "HIDDEN_KINDS" not in text and "NON_MATRIX_KINDS" not in text, f
