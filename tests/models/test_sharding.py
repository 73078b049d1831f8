"""Logical sharding rules of the model."""

import jax
from flax import nnx
from jax.sharding import PartitionSpec as P

import models


def abstract(cfg: models.ModelConfig) -> nnx.State:
  with nnx.use_eager_sharding(False):
    return nnx.state(nnx.eval_shape(lambda: models.Transformer(cfg, rngs=nnx.Rngs(0))))


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
