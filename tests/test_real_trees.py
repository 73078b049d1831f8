"""Parameter trees built by Equinox, Haiku, Flax Linen and Flax NNX (jax.eval_shape, no weights).

Next to each tree, a hand-written table of the treatment every leaf should get:
path -> (gets, fan_in, fan_out, matrices), written from the layer definitions (Equinox
``Linear.weight`` is ``[out, in]``, ``Conv.weight`` ``[out, in, *window]``; Haiku and Flax keep
``[in, out]`` and ``[*window, in, out]``), never from our own output. ``describe`` reads the
tree with the dimension numbers the user would pass (``dimension_numbers_for(model)`` where
the framework states a layout, the default rule elsewhere).
"""

import equinox as eqx
import haiku as hk
import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn
from flax import nnx

import optax_muon as om
from optax_muon._src import layouts

KEY = jax.random.key(0)
ADAMW = ("adamw", None, None, None)


def treatment(params, dims=None) -> dict:
  return {r.path: (r.optimizer, r.fan_in, r.fan_out, r.matrices)
          for r in om.describe(params, dims)}


# --- Equinox -------------------------------------------------------------------------------

def eqx_mlp():
  return eqx.filter_eval_shape(lambda: eqx.nn.MLP(64, 10, 256, 2, key=KEY))


EQX_MLP = {
    "layers/0/weight": ("muon", 64, 256, 1),  # Linear(64 -> 256): weight [256, 64]
    "layers/0/bias": ADAMW,
    "layers/1/weight": ("muon", 256, 256, 1),
    "layers/1/bias": ADAMW,
    "layers/2/weight": ("muon", 256, 10, 1),  # the classifier: Muon unless the user says
    "layers/2/bias": ADAMW,
}

EQX_ATTENTION = {  # MultiheadAttention(4 heads, 64): four Linear(64 -> 64, no bias)
    "query_proj/weight": ("muon", 64, 64, 1),
    "key_proj/weight": ("muon", 64, 64, 1),
    "value_proj/weight": ("muon", 64, 64, 1),
    "output_proj/weight": ("muon", 64, 64, 1),
}

EQX_CONV = {  # Conv2d(32 -> 64, 3x3): weight [64, 32, 3, 3], bias [64, 1, 1]
    "weight": ("muon", 32 * 3 * 3, 64, 1),
    "bias": ADAMW,
}


@pytest.mark.parametrize("make,expected", [
    (eqx_mlp, EQX_MLP),
    (lambda: eqx.filter_eval_shape(lambda: eqx.nn.MultiheadAttention(4, 64, key=KEY)),
     EQX_ATTENTION),
    (lambda: eqx.filter_eval_shape(lambda: eqx.nn.Conv2d(32, 64, 3, key=KEY)), EQX_CONV),
])
def test_equinox_trees(make, expected):
  model = make()
  dims = om.dimension_numbers_for(model)
  assert treatment(model, dims) == expected
  for row in om.describe(model, dims):
    if row.optimizer == "muon":  # [out, in, ...]: the output axis is 0, the rest reduce
      assert row.output_axes == (0,) and row.reduction_axes == tuple(range(1, len(row.shape)))
      assert row.why.startswith("equinox ")


def test_equinox_without_the_model_is_read_by_the_default_rule_and_says_so():
  # The array alone cannot tell [out, in] from [in, out]: describe shows which rule decided.
  rows = {r.path: r for r in om.describe(eqx_mlp())}
  assert (rows["layers/0/weight"].fan_in, rows["layers/0/weight"].fan_out) == (256, 64)
  assert rows["layers/0/weight"].why == (
      "default rule: kind other, last two axes [in, out]; NOT the model's layout (in (1,), "
      "out (0,)): pass dimension_numbers_for(model)")
  assert rows["layers/0/bias"].why == "default rule: rank 1"
  params = {"layers": [{"weight": jax.ShapeDtypeStruct((256, 64), jnp.float32)}]}
  assert om.describe(params)[0].why == "default rule: kind other, last two axes [in, out]"


def test_equinox_attention_paths_name_their_kind():
  assert [om.path_kind(f"{n}/weight") for n in ("query_proj", "key_proj", "value_proj",
                                                "output_proj")] == ["q", "k", "v", "o"]


# --- Haiku ---------------------------------------------------------------------------------

class _HaikuBlock(hk.Module):

  def __call__(self, x):
    h = hk.LayerNorm(-1, True, True)(x)
    x = x + hk.MultiHeadAttention(4, 16, w_init=hk.initializers.VarianceScaling(1.0))(h, h, h)
    h = hk.LayerNorm(-1, True, True)(x)
    x = x + hk.Linear(64, name="mlp_down")(jax.nn.gelu(hk.Linear(256, name="mlp_up")(h)))
    return hk.Linear(256, name="lm_head")(x)


HAIKU_TRANSFORMER = {
    "block/layer_norm/scale": ADAMW,
    "block/layer_norm/offset": ADAMW,
    "block/layer_norm_1/scale": ADAMW,
    "block/layer_norm_1/offset": ADAMW,
    "block/multi_head_attention/query/w": ("muon", 64, 64, 1),
    "block/multi_head_attention/query/b": ADAMW,
    "block/multi_head_attention/key/w": ("muon", 64, 64, 1),
    "block/multi_head_attention/key/b": ADAMW,
    "block/multi_head_attention/value/w": ("muon", 64, 64, 1),
    "block/multi_head_attention/value/b": ADAMW,
    "block/multi_head_attention/linear/w": ("muon", 64, 64, 1),
    "block/multi_head_attention/linear/b": ADAMW,
    "block/mlp_up/w": ("muon", 64, 256, 1),
    "block/mlp_up/b": ADAMW,
    "block/mlp_down/w": ("muon", 256, 64, 1),
    "block/mlp_down/b": ADAMW,
    "block/lm_head/w": ADAMW,
    "block/lm_head/b": ADAMW,
}

HAIKU_RESNET_BLOCK = {  # BlockV1(64 channels, projection) on 32 input channels
    "block_v1/~/conv_0/w": ("muon", 3 * 3 * 32, 64, 1),
    "block_v1/~/conv_1/w": ("muon", 3 * 3 * 64, 64, 1),
    "block_v1/~/shortcut_conv/w": ("muon", 32, 64, 1),  # 1x1
    "block_v1/~/batchnorm_0/scale": ADAMW,  # [1, 1, 1, 64]: rank 4, still a norm
    "block_v1/~/batchnorm_0/offset": ADAMW,
    "block_v1/~/batchnorm_1/scale": ADAMW,
    "block_v1/~/batchnorm_1/offset": ADAMW,
    "block_v1/~/shortcut_batchnorm/scale": ADAMW,
    "block_v1/~/shortcut_batchnorm/offset": ADAMW,
}


def test_haiku_transformer_block():
  params = jax.eval_shape(hk.transform(lambda x: _HaikuBlock(name="block")(x)).init, KEY,
                          jnp.zeros((2, 8, 64)))
  assert treatment(params) == HAIKU_TRANSFORMER


def test_haiku_resnet_block():
  bn = dict(decay_rate=0.9, eps=1e-5, create_scale=True, create_offset=True)

  def block(x):
    return hk.nets.ResNet.BlockV1(channels=64, stride=1, use_projection=True, bn_config=bn,
                                  bottleneck=False)(x, True, False)

  params, _ = jax.eval_shape(hk.transform_with_state(block).init, KEY, jnp.zeros((2, 8, 8, 32)))
  assert treatment(params) == HAIKU_RESNET_BLOCK


# --- Flax Linen ----------------------------------------------------------------------------

class _LinenCNN(nn.Module):

  @nn.compact
  def __call__(self, image, signal, volume):
    x = nn.relu(nn.Conv(32, (3, 3))(image))          # Conv_0: [3, 3, 3, 32]
    x = nn.relu(nn.Conv(64, (3, 3))(x))              # Conv_1: [3, 3, 32, 64]
    y = nn.Conv(32, (5,))(signal)                     # Conv_2: [5, 16, 32]
    z = nn.Conv(8, (2, 2, 2))(volume)                 # Conv_3: [2, 2, 2, 4, 8]
    x = nn.LayerNorm()(x.mean((1, 2)) + y.mean(1)[:, :1] + z.mean((1, 2, 3))[:, :1])
    x = nn.relu(nn.Dense(128)(x))                     # Dense_0
    return nn.Dense(10)(x)                            # Dense_1


LINEN_CNN = {
    "params/Conv_0/kernel": ("muon", 27, 32, 1),
    "params/Conv_0/bias": ADAMW,
    "params/Conv_1/kernel": ("muon", 288, 64, 1),
    "params/Conv_1/bias": ADAMW,
    "params/Conv_2/kernel": ("muon", 80, 32, 1),
    "params/Conv_2/bias": ADAMW,
    "params/Conv_3/kernel": ("muon", 32, 8, 1),
    "params/Conv_3/bias": ADAMW,
    "params/LayerNorm_0/scale": ADAMW,
    "params/LayerNorm_0/bias": ADAMW,
    "params/Dense_0/kernel": ("muon", 64, 128, 1),
    "params/Dense_0/bias": ADAMW,
    "params/Dense_1/kernel": ("muon", 128, 10, 1),
    "params/Dense_1/bias": ADAMW,
}


def test_linen_cnn():
  params = jax.eval_shape(_LinenCNN().init, KEY, jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 12, 16)),
                          jnp.zeros((1, 4, 4, 4, 4)))
  assert treatment(params) == LINEN_CNN
  per_tap = {"Conv_1/kernel": om.conv_dimension_numbers(4, per_tap=True)}
  assert treatment(params, per_tap)["params/Conv_1/kernel"] == ("muon", 32, 64, 9)


def _logical(init, *names):
  return nn.with_logical_partitioning(init, names)


class _LinenLayer(nn.Module):
  """A MaxText-style decoder layer: logical names on every weight."""

  @nn.compact
  def __call__(self, x, _):
    init = nn.initializers.lecun_normal()
    h = nn.RMSNorm(scale_init=_logical(nn.initializers.ones, "embed"), name="pre_norm")(x)
    q = nn.DenseGeneral((4, 16), kernel_init=_logical(init, "embed", "heads", "kv"),
                        use_bias=False, name="query")(h)
    x = x + nn.DenseGeneral(64, axis=(-2, -1), kernel_init=_logical(init, "heads", "kv", "embed"),
                            use_bias=False, name="out")(q)
    h = nn.Dense(256, kernel_init=_logical(init, "embed", "mlp"), use_bias=False, name="wi")(x)
    x = x + nn.Dense(64, kernel_init=_logical(init, "mlp", "embed"), use_bias=False,
                     name="wo")(nn.gelu(h))
    return x, None


class _LinenScanned(nn.Module):

  @nn.compact
  def __call__(self, tokens):
    embed = nn.Embed(256, 64, embedding_init=_logical(nn.initializers.normal(1.0), "vocab", "embed"),
                     name="token_embedder")
    # MaxText's param_scan_axis=1: the layer axis sits in the middle, [embed, layers, mlp].
    layers = nn.scan(_LinenLayer, variable_axes={"params": 1}, split_rngs={"params": True},
                     length=3, metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = layers(name="decoder")(embed(tokens), None)
    return nn.Dense(256, kernel_init=_logical(nn.initializers.lecun_normal(), "embed", "vocab"),
                    use_bias=False, name="logits_dense")(x)


LINEN_SCANNED = {  # three layers each, orthogonalized per layer
    "params/token_embedder/embedding": ADAMW,
    "params/decoder/pre_norm/scale": ADAMW,       # [embed, layers]
    "params/decoder/query/kernel": ("muon", 64, 64, 3),  # [embed, layers, heads, kv]
    "params/decoder/out/kernel": ("muon", 64, 64, 3),    # [heads, layers, kv, embed]
    "params/decoder/wi/kernel": ("muon", 64, 256, 3),    # [embed, layers, mlp]
    "params/decoder/wo/kernel": ("muon", 256, 64, 3),    # [mlp, layers, embed]
    "params/logits_dense/kernel": ADAMW,
}


def linen_scanned_params():
  return jax.eval_shape(_LinenScanned().init, KEY, jnp.zeros((1, 8), jnp.int32))


def test_linen_scanned_transformer_with_logical_names():
  boxed = linen_scanned_params()
  dims = om.dimension_numbers_for(boxed)
  assert treatment(boxed, dims) == LINEN_SCANNED
  assert treatment(nn.unbox(boxed), dims) == LINEN_SCANNED  # the same plan on plain arrays
  rows = {r.path: r for r in om.describe(boxed, dims)}
  assert rows["params/decoder/wi/kernel"].batch_axes == (1,)
  assert rows["params/decoder/out/kernel"].reduction_axes == (0, 2)
  assert rows["params/decoder/wi/kernel"].why == "logical names ('embed', 'layers', 'mlp')"


# --- Flax NNX ------------------------------------------------------------------------------

class _NNXNet(nnx.Module):

  def __init__(self, rngs):
    self.conv1 = nnx.Conv(3, 32, (3, 3), rngs=rngs)
    self.norm = nnx.LayerNorm(32, rngs=rngs)
    self.fc = nnx.Linear(32, 128, rngs=rngs)
    self.head = nnx.Linear(128, 10, rngs=rngs)


NNX_NET = {
    "conv1/kernel": ("muon", 27, 32, 1),
    "conv1/bias": ADAMW,
    "norm/scale": ADAMW,
    "norm/bias": ADAMW,
    "fc/kernel": ("muon", 32, 128, 1),
    "fc/bias": ADAMW,
    "head/kernel": ADAMW,  # named a head: AdamW by the default rule
    "head/bias": ADAMW,
}


def test_nnx_tree():
  model = nnx.eval_shape(lambda: _NNXNet(nnx.Rngs(0)))
  assert treatment(model) == NNX_NET
  assert treatment(nnx.state(model, nnx.Param)) == NNX_NET


# --- Logical names, one parameter at a time -------------------------------------------------

@pytest.mark.parametrize("names,expected", [
    (("embed", "mlp"), (0, 1)),
    (("mlp", "embed"), (0, 1)),
    (("embed", "layers", "mlp"), (0, 2)),               # MaxText's scanned kernel
    (("exp", "embed", "mlp"), (1, 2)),                  # MoE: one matrix per expert
    (("layers", "experts", "mlp", "embed"), (2, 3)),
    (("embed", "q_heads", "kv"), (0, (1, 2))),
    (("heads", "layers", "kv", "embed"), ((0, 2), 3)),
    (("stage", "embed", "mlp"), (1, 2)),                # pipeline stages
    (("vocab", "embed"), None),
    (("embed", "vocab"), None),
    (("layers", "embed"), None),                        # a norm scale per layer
])
def test_logical_names(names, expected):
  leaf = jnp.zeros(tuple(8 for _ in names))
  dims = om.dimension_numbers_for({"w": nn.LogicallyPartitioned(leaf, names)})["^w$"]
  assert dims == (None if expected is None else om.MuonDimensionNumbers(*expected))


def test_logical_names_of_the_wrong_rank_raise_naming_the_path():
  boxed = {"blocks": {"wi": nn.LogicallyPartitioned(jnp.zeros((8, 8)), ("embed", "layers", "mlp"))}}
  with pytest.raises(ValueError, match="^blocks/wi: 3 logical axis names"):
    om.dimension_numbers_for(boxed)


def test_layout_table_lookup_equals_its_regex_reading():
  for model in (linen_scanned_params(), eqx_mlp()):
    table = om.dimension_numbers_for(model)
    tree = layouts.param_tree(model)
    by_path = om.resolve_dimension_numbers(table, tree, om.default_matrix_rule)
    by_regex = om.resolve_dimension_numbers(dict(table), tree, om.default_matrix_rule)
    assert by_path == by_regex and any(d is not None for d in by_path)
