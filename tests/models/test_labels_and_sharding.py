"""Optimizer labels (Muon dimension numbers, QK-clip specs) and logical sharding rules."""

import jax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P
from optax.contrib import MuonDimensionNumbers

import models


def abstract(cfg: models.ModelConfig) -> nnx.State:
  with nnx.use_eager_sharding(False):
    return nnx.state(nnx.eval_shape(lambda: models.Transformer(cfg, rngs=nnx.Rngs(0))))


def is_dn(x) -> bool:
  return isinstance(x, MuonDimensionNumbers)


@pytest.mark.parametrize("scan", [False, True])
def test_dimension_numbers_route_hidden_matrices_to_muon(scan):
  cfg = models.get_config("tiny", n_layers=2, scan_layers=scan)
  params = nnx.to_pure_dict(abstract(cfg))
  dn = models.dimension_numbers(params)
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
  dn = models.dimension_numbers(abstract(models.get_config("tiny", n_layers=1)))
  leaves = jax.tree.leaves(dn, is_leaf=is_dn)
  assert sum(map(is_dn, leaves)) == 7


def test_qk_clip_specs():
  om = pytest.importorskip("optax_muon")
  if not hasattr(om, "QKClipSpec"):
    pytest.skip("optax_muon.QKClipSpec not available yet")
  cfg = models.get_config("tiny", n_layers=2)
  specs = models.qk_clip_specs(nnx.to_pure_dict(abstract(cfg)), cfg)
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
    models.qk_clip_specs(nnx.to_pure_dict(abstract(cfg)), cfg)


def _mesh(data, fsdp, tensor):
  return jax.make_mesh((data, fsdp, tensor), models.MESH_AXES,
                       axis_types=(jax.sharding.AxisType.Auto,) * 3,
                       devices=jax.devices()[:data * fsdp * tensor])


def test_logical_rules_and_divisibility_fallback():
  mesh = _mesh(1, 2, 4)
  assert models.logical_to_spec(("embed", "heads"), (128, 128), mesh) == P("fsdp", "tensor")
  assert models.logical_to_spec(("layers", "embed", "mlp"), (4, 128, 384), mesh) == P(
      None, "fsdp", "tensor")
  # 6 heads * 32 = 192 columns: divisible by 4; 2 kv heads * 1 = 2 columns: not.
  assert models.logical_to_spec(("embed", "kv"), (128, 2), mesh) == P("fsdp", None)
  assert models.logical_to_spec(("head_dim",), (32,), mesh) == P(None)


def test_param_shardings_cover_every_param():
  cfg = models.get_config("tiny", n_layers=2, scan_layers=True)
  state = abstract(cfg)
  params = nnx.to_pure_dict(state)
  names = models.logical_names(state)
  for path, leaf_names in jax.tree_util.tree_leaves_with_path(
      names, is_leaf=lambda x: isinstance(x, tuple)):
    assert None not in leaf_names, path  # Every weight carries a logical name per axis.
  assert set(jax.tree.leaves(names)) <= set(models.LOGICAL_RULES)
  shardings = models.param_shardings(params, names, _mesh(2, 2, 2))
  assert jax.tree.structure(shardings) == jax.tree.structure(params)
  assert shardings["layers"]["attn"]["q"]["kernel"].spec == P(None, "fsdp", "tensor")
  assert shardings["embed"]["embedding"].spec == P("tensor", "fsdp")
