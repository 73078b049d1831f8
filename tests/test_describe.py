"""describe: which leaves get Muon, as which matrices, at which scale (hand-written expectations)."""

import math
import re

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

import models
import optax_muon as om


def cpu192_params():
  cfg = models.get_config("cpu192")
  with nnx.use_eager_sharding(False):
    model = nnx.eval_shape(lambda: models.Transformer(cfg, rngs=nnx.Rngs(0)))
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


# The default model (cpu192: d_model 192, 4 layers, 6 heads and 2 KV heads of 32, d_ff 512,
# vocab 256), written out from its config: path (layer 0 stands for every layer) ->
# (gets, fan_in, fan_out).
CPU192 = {
    "embed/embedding": ("adamw", None, None),
    "lm_head/kernel": ("adamw", None, None),
    "final_norm/scale": ("adamw", None, None),
    "layers/0/attn_norm/scale": ("adamw", None, None),
    "layers/0/mlp_norm/scale": ("adamw", None, None),
    "layers/0/attn/q_norm/scale": ("adamw", None, None),
    "layers/0/attn/k_norm/scale": ("adamw", None, None),
    "layers/0/attn/q/kernel": ("muon", 192, 192),
    "layers/0/attn/k/kernel": ("muon", 192, 64),
    "layers/0/attn/v/kernel": ("muon", 192, 64),
    "layers/0/attn/o/kernel": ("muon", 192, 192),
    "layers/0/mlp/gate/kernel": ("muon", 192, 512),
    "layers/0/mlp/up/kernel": ("muon", 192, 512),
    "layers/0/mlp/down/kernel": ("muon", 512, 192),
}


def test_default_model_table():
  table = om.describe(cpu192_params())
  rows = {r.path: r for r in table}
  assert len(rows) == 3 + 4 * 11
  for path, row in rows.items():
    generic = re.sub(r"^layers/\d+/", "layers/0/", path)
    gets, fan_in, fan_out = CPU192[generic]
    assert (row.optimizer, row.fan_in, row.fan_out) == (gets, fan_in, fan_out), path
    if gets == "muon":
      assert row.matrices == 1 and row.batch_axes == ()
      assert (row.reduction_axes, row.output_axes) == ((0,), (1,))
      assert row.scale == pytest.approx(0.2 * math.sqrt(max(fan_in, fan_out)), rel=1e-12)
    else:
      assert row.scale is None and row.reduction_axes is None
  assert rows["lm_head/kernel"].why == "default rule: kind head"
  assert rows["embed/embedding"].why == "default rule: kind embedding"
  assert rows["layers/2/attn/q/kernel"].why == "default rule: kind q, last two axes [in, out]"
  assert table.header == ("optax_muon.describe: muon, scale 'moonlight' (rms 0.2); 28 matrices "
                          "in 4 shape groups (Muon), 19 leaves to AdamW")
  assert table.as_dicts()[0]["path"] == "embed/embedding"


def test_default_model_text():
  lines = str(om.describe(cpu192_params())).splitlines()
  assert lines[1].split() == ["path", "shape", "gets", "matrices", "axes", "in|out|batch",
                              "scale", "why"]
  assert ("layers/0/mlp/down/kernel    (512, 192)  muon   1x 512x192  0|1|-              4.525  "
          "default rule: kind down, last two axes [in, out]") in lines
  assert ("lm_head/kernel              (192, 256)  adamw  -           -                  -      "
          "default rule: kind head") in lines
  assert len(lines) == 2 + 47


def test_describe_is_the_plan_the_optimizer_uses():
  params = cpu192_params()
  for tx in (om.muon(1e-3), om.muown(1e-3, dimension_numbers={"attn/q/": None})):
    groups = jax.eval_shape(tx.init, params).rows.planned[0]
    planned = {m.path: (g.fan_in, g.fan_out, m.layout.batch) for g in groups for m in g.members}
    described = {r.path: (r.fan_in, r.fan_out, r.matrices) for r in om.describe(params, tx)
                 if r.optimizer == "muon"}
    assert described == planned


W_PARAMS = {"w": jax.ShapeDtypeStruct((64, 256), jnp.float32),
            "v": jax.ShapeDtypeStruct((256, 64), jnp.float32)}


@pytest.mark.parametrize("tx,name,w_scale,v_scale", [
    (om.muon(1e-3), "muon", 0.2 * 16, 0.2 * 16),
    (om.muon(1e-3, scale="jordan"), "muon", 2.0, 1.0),
    (om.muon(1e-3, scale="mup"), "muon", 2.0, 0.5),
    (om.muon(1e-3, rms=0.3), "muon", 0.3 * 16, 0.3 * 16),
    (om.muon_plus_plus(1e-3), "muon_plus_plus", 2.0, 0.5),
    (om.muon_plus_plus(1e-3, update_scale=0.5), "muon_plus_plus", 1.0, 0.25),
    (om.muon_plus_plus(1e-3, scale="jordan"), "muon_plus_plus", 2.0, 1.0),
    (om.muown(1e-3, rms=0.3), "muown", 0.3 * 16, 0.3 * 16),
    (om.normuon(1e-3), "normuon", 0.2 * 16, 0.2 * 16),
])
def test_each_alias_convention(tx, name, w_scale, v_scale):
  rows = {r.path: r for r in om.describe(W_PARAMS, tx)}
  assert rows["w"].scale == pytest.approx(w_scale, rel=1e-6)
  assert rows["v"].scale == pytest.approx(v_scale, rel=1e-6)
  assert om.describe(W_PARAMS, tx).header.startswith(f"optax_muon.describe: {name}, ")


def test_dimension_number_overrides_are_reflected():
  params = {"mlp": {"up": {"kernel": jnp.zeros((64, 256))}},
            "stack": jnp.zeros((3, 64, 128)), "head": {"kernel": jnp.zeros((64, 10))}}
  tx = om.muon(1e-3, dimension_numbers={"^mlp/": None, "^head/": om.MuonDimensionNumbers(0, 1),
                                        "^stack$": om.MuonDimensionNumbers(1, (0, 2))})
  rows = {r.path: r for r in om.describe(params, tx)}
  assert rows["mlp/up/kernel"].optimizer == "adamw"
  assert rows["mlp/up/kernel"].why == "given: regex '^mlp/'"
  assert (rows["head/kernel"].optimizer, rows["head/kernel"].fan_in) == ("muon", 64)
  stack = rows["stack"]
  assert (stack.fan_in, stack.fan_out, stack.matrices, stack.batch_axes) == (64, 384, 1, ())
  # One for every leaf; the tree the trainer passes (a callable) says whether it agrees.
  rows = {r.path: r for r in om.describe({"w": jnp.zeros((64, 256))},
                                         om.MuonDimensionNumbers(1, 0))}
  assert (rows["w"].fan_in, rows["w"].fan_out, rows["w"].why) == (
      256, 64, "given: one for every leaf")
  rows = {r.path: r for r in om.describe({"w": jnp.zeros((64, 256))},
                                         lambda p: {"w": om.MuonDimensionNumbers(1, 0)})}
  assert rows["w"].why.startswith("given: callable (the default rule would give")


def test_found_inside_chains_and_wrappers():
  # The trainer's optimizer: skip_nonfinite(chain(clip, alias)).
  tx = om.skip_nonfinite(optax.chain(optax.clip_by_global_norm(1.0),
                                     om.muon_plus_plus(1e-3, update_scale=0.5)))
  rows = {r.path: r for r in om.describe(W_PARAMS, tx)}
  assert rows["w"].scale == pytest.approx(1.0)


def test_a_transform_no_alias_built_raises():
  with pytest.raises(ValueError, match="tx_or_dimension_numbers"):
    om.describe(W_PARAMS, optax.adamw(1e-3))


def test_impossible_dimension_numbers_name_the_path():
  with pytest.raises(ValueError, match="^w: reduction axis 2"):
    om.describe(W_PARAMS, {"^w$": om.MuonDimensionNumbers(2, 1)})


def test_a_fused_qkv_leaf_is_flagged_and_its_split_shown():
  params = {"h": {"0": {"attn": {"c_attn": {"w": jnp.zeros((64, 192))}}}}}  # GPT-2's name
  row, = om.describe(params)
  assert (row.fan_in, row.fan_out, row.matrices) == (64, 192, 1)
  assert row.why == ("default rule: kind qkv, last two axes [in, out] (one fused matrix; "
                     "FusedDimensionNumbers splits it)")
  row, = om.describe(params, {"c_attn/w": om.FusedDimensionNumbers(0, 1, parts=3)})
  assert (row.fan_in, row.fan_out, row.matrices, row.matrix_view) == (64, 64, 3, (64, 3, 64))
  assert (row.reduction_axes, row.output_axes, row.batch_axes) == ((0,), (2,), (1,))
  assert row.scale == pytest.approx(0.2 * 8)
