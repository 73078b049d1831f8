"""Updates on framework layouts, convolutions and fused projections against independent references.

References: the exact polar factor ``U Vᵀ`` from numpy's SVD of the matrix the layout names
(float64), the same weights held as separate leaves, and norms measured with numpy. Newton–Schulz
runs Polar Express for 8 steps here (within 2e-7 of the exact polar factor on these
well-conditioned gradients), so the tolerances test the layout, not the iteration.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import optax_muon as om
from tests.test_real_trees import linen_scanned_params

NS = dict(ns_schedule="polar_express", ns_steps=8)


def polar(a: np.ndarray) -> np.ndarray:
  u, _, vt = np.linalg.svd(np.asarray(a, np.float64), full_matrices=False)
  return u @ vt


def gaussian(shapes: dict, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s), jnp.float32), shapes,
                      is_leaf=lambda s: isinstance(s, tuple))


def conditioned(m: int, n: int, seed: int) -> np.ndarray:
  """A random ``m x n`` matrix with singular values in [0.5, 1] (square ones included)."""
  rng = np.random.default_rng(seed)
  k = min(m, n)
  u, _ = np.linalg.qr(rng.standard_normal((m, k)))
  v, _ = np.linalg.qr(rng.standard_normal((n, k)))
  return ((u * rng.uniform(0.5, 1.0, k)) @ v.T).astype(np.float32)


def one_step(tx, params, grads):
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def direction(**kw):
  """Muon's update with lr 1 and no scale: minus the polar factor of the gradient."""
  return om.muon(1.0, beta=0.0, scale="none", weight_decay=0.0, **NS, **kw)


def test_maxtext_scanned_kernel_is_orthogonalized_per_layer_never_across():
  boxed = linen_scanned_params()
  params = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), nn.unbox(boxed))
  grads = gaussian(jax.tree.map(lambda x: x.shape, params))
  out = np.stack([conditioned(64, 64, l).reshape(4, 16, 64) for l in range(3)], axis=1)
  grads["params"]["decoder"]["out"]["kernel"] = jnp.asarray(out)  # [heads, layers, kv, embed]
  dims = om.dimension_numbers_for(boxed)
  dec = one_step(direction(dimension_numbers=dims), params, grads)["params"]["decoder"]
  g = grads["params"]["decoder"]
  for l in range(3):
    # wi [embed, layers, mlp] and wo [mlp, layers, embed]: layer l is [:, l, :].
    for name in ("wi", "wo"):
      np.testing.assert_allclose(dec[name]["kernel"][:, l], -polar(g[name]["kernel"][:, l]),
                                 atol=1e-5)
    # out [heads, layers, kv, embed]: layer l is a [heads*kv, embed] matrix.
    ref = -polar(np.asarray(g["out"]["kernel"][:, l]).reshape(64, 64)).reshape(4, 16, 64)
    np.testing.assert_allclose(dec["out"]["kernel"][:, l], ref, atol=1e-5)
  # Read by the default rule, the middle axis is taken as fan_in: nothing matches.
  default = one_step(direction(), params, grads)["params"]["decoder"]
  assert np.abs(default["wi"]["kernel"][:, 0] + polar(g["wi"]["kernel"][:, 0])).max() > 0.05


@pytest.mark.parametrize("lr", [0.02])
def test_conv_kernel_is_one_flattened_matrix(lr):
  shapes = {"Conv_0": {"kernel": (3, 3, 32, 64)}}
  params = jax.tree.map(jnp.zeros_like, gaussian(shapes, 1))
  grads = gaussian(shapes, 2)
  tx = om.muon(lr, beta=0.0, weight_decay=0.0, **NS)  # Moonlight scale 0.2·sqrt(max(288, 64))
  update = one_step(tx, params, grads)["Conv_0"]["kernel"]
  g = np.asarray(grads["Conv_0"]["kernel"]).reshape(288, 64)
  ref = -lr * 0.2 * np.sqrt(288) * polar(g)
  np.testing.assert_allclose(np.asarray(update).reshape(288, 64), ref, atol=1e-6)
  # Per tap (an option): nine [32, 64] matrices, each at 0.2·sqrt(64).
  per_tap = om.muon(lr, beta=0.0, weight_decay=0.0, **NS,
                    dimension_numbers=om.conv_dimension_numbers(4, per_tap=True))
  update = one_step(per_tap, params, grads)["Conv_0"]["kernel"]
  g4 = np.asarray(grads["Conv_0"]["kernel"])
  for i in range(3):
    for j in range(3):
      np.testing.assert_allclose(update[i, j], -lr * 0.2 * 8 * polar(g4[i, j]), atol=1e-6)


def test_equinox_conv_flattens_in_and_window_against_out():
  model = eqx.filter_eval_shape(lambda: eqx.nn.Conv2d(32, 64, 3, use_bias=False,
                                                      key=jax.random.key(0)))
  params = eqx.filter(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))
  params = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), params)
  grads = jax.tree.map(lambda x: x + 1.0, params)
  grads = eqx.tree_at(lambda m: m.weight, grads, gaussian({"w": (64, 32, 3, 3)}, 3)["w"])
  update = one_step(direction(dimension_numbers=om.dimension_numbers_for(model)), params, grads)
  g = np.asarray(grads.weight).reshape(64, 288)  # [out, in·kh·kw]
  np.testing.assert_allclose(np.asarray(update.weight).reshape(64, 288), -polar(g.T).T,
                             atol=1e-5)


def _fused_vs_separate(alias, fused_shape, parts, seed, steps=3, **kw):
  """Updates of one fused leaf and of the same weights held as ``parts`` separate leaves."""
  d, width = fused_shape
  n = width // parts
  rng = np.random.default_rng(seed)
  w0 = jnp.asarray(rng.standard_normal(fused_shape) / np.sqrt(d), jnp.float32)
  fused_p = {"attn": {"qkv": {"kernel": w0}}}
  sep_p = {"attn": {f"p{i}": {"kernel": w0[:, i * n:(i + 1) * n]} for i in range(parts)}}
  tx_f = alias(1e-2, **kw, dimension_numbers={"qkv/kernel": om.FusedDimensionNumbers(
      0, 1, parts=parts)})
  tx_s = alias(1e-2, **kw)
  sf, ss = tx_f.init(fused_p), tx_s.init(sep_p)
  out = []
  for _ in range(steps):
    g = jnp.asarray(rng.standard_normal(fused_shape), jnp.float32)
    uf, sf = jax.jit(tx_f.update)({"attn": {"qkv": {"kernel": g}}}, sf, fused_p)
    us, ss = jax.jit(tx_s.update)(
        {"attn": {f"p{i}": {"kernel": g[:, i * n:(i + 1) * n]} for i in range(parts)}}, ss, sep_p)
    fused_p = optax.apply_updates(fused_p, uf)
    sep_p = optax.apply_updates(sep_p, us)
    joined = jnp.concatenate([us["attn"][f"p{i}"]["kernel"] for i in range(parts)], axis=1)
    out.append((np.asarray(uf["attn"]["qkv"]["kernel"]), np.asarray(joined)))
  return out


@pytest.mark.parametrize("alias,shape,parts", [
    (om.muon, (128, 384), 3),          # QKV [d, 3d]
    (om.muon, (64, 512), 2),           # gated MLP [d, 2·d_ff]
    (om.muon, (128, 384), 12),         # QKV per head: 3 x 4 heads of 32
    (om.muown, (128, 384), 3),         # per-neuron magnitudes per part
    (om.muon_plus_plus, (128, 384), 3),
])
def test_fused_leaf_updates_like_separate_leaves(alias, shape, parts):
  for fused, separate in _fused_vs_separate(alias, shape, parts, seed=parts):
    np.testing.assert_allclose(fused, separate, atol=1e-6, rtol=0)


def test_fused_leaf_differs_from_one_big_matrix():
  # The check above can fail: without FusedDimensionNumbers the leaf is one [128, 384] matrix.
  g = jnp.asarray(np.concatenate([conditioned(128, 128, i) for i in range(3)], axis=1))
  p = {"qkv": jnp.zeros((128, 384))}
  whole = one_step(direction(), p, {"qkv": g})["qkv"]
  parts = one_step(direction(dimension_numbers=om.FusedDimensionNumbers(0, 1, parts=3)), p,
                   {"qkv": g})["qkv"]
  np.testing.assert_allclose(parts[:, 128:256], -polar(g[:, 128:256]), atol=1e-5)
  assert np.abs(whole - parts).max() > 0.01


def test_fused_parts_that_do_not_divide_raise_naming_the_path():
  tx = om.muon(1e-3, dimension_numbers={"qkv": om.FusedDimensionNumbers(0, 1, parts=5)})
  with pytest.raises(ValueError, match="^qkv: axis 1 of size 384 does not split into parts=5"):
    tx.init({"qkv": jnp.zeros((128, 384))})


def _eqx_linear(fan_in, fan_out):
  model = eqx.filter_eval_shape(lambda: eqx.nn.Linear(fan_in, fan_out, use_bias=False,
                                                      key=jax.random.key(0)))
  return model, eqx.filter(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))


def test_muown_magnitudes_are_per_output_neuron_on_equinox_and_linen_alike():
  lr = 0.01
  model, abstract = _eqx_linear(64, 128)  # weight [out=128, in=64]
  rng = np.random.default_rng(5)
  w = rng.standard_normal((128, 64)).astype(np.float32) / 8
  g = rng.standard_normal((128, 64)).astype(np.float32)
  eqx_p = eqx.tree_at(lambda m: m.weight, abstract, jnp.asarray(w))
  eqx_g = eqx.tree_at(lambda m: m.weight, abstract, jnp.asarray(g))
  tx = om.muown(lr, weight_decay=0.0, dimension_numbers=om.dimension_numbers_for(model))
  new_eqx = np.asarray(optax.apply_updates(eqx_p, one_step(tx, eqx_p, eqx_g)).weight)
  linen_p = {"params": {"Dense_0": {"kernel": jnp.asarray(w.T)}}}  # [in, out]
  linen_g = {"params": {"Dense_0": {"kernel": jnp.asarray(g.T)}}}
  tx = om.muown(lr, weight_decay=0.0)
  new_linen = np.asarray(optax.apply_updates(linen_p, one_step(tx, linen_p, linen_g))
                         ["params"]["Dense_0"]["kernel"])
  # On the first Adam step every output neuron's norm moves by exactly lr.
  moved = np.abs(np.linalg.norm(new_eqx, axis=1) - np.linalg.norm(w, axis=1))
  np.testing.assert_allclose(moved, lr, atol=2e-6)
  moved = np.abs(np.linalg.norm(new_linen, axis=0) - np.linalg.norm(w.T, axis=0))
  np.testing.assert_allclose(moved, lr, atol=2e-6)
  np.testing.assert_allclose(new_eqx, new_linen.T, atol=1e-6)
  # Without the model's layout the input neurons are controlled instead.
  wrong = np.asarray(optax.apply_updates(eqx_p, one_step(om.muown(lr, weight_decay=0.0), eqx_p,
                                                         eqx_g)).weight)
  assert np.abs(np.abs(np.linalg.norm(wrong, axis=1) - np.linalg.norm(w, axis=1)) - lr).max() > 1e-3


@pytest.mark.parametrize("fan_in,fan_out", [(64, 256), (256, 64)])
def test_muon_plus_plus_spectral_norm_on_equinox_matrix(fan_in, fan_out):
  lr = 0.01
  model, abstract = _eqx_linear(fan_in, fan_out)
  rng = np.random.default_rng(7)
  p = eqx.tree_at(lambda m: m.weight, abstract,
                  jnp.asarray(rng.standard_normal((fan_out, fan_in)) / 16, jnp.float32))
  g = eqx.tree_at(lambda m: m.weight, abstract,
                  jnp.asarray(rng.standard_normal((fan_out, fan_in)), jnp.float32))
  for dims, expected in ((om.dimension_numbers_for(model), np.sqrt(fan_out / fan_in)),
                         (None, np.sqrt(fan_in / fan_out))):  # the default rule inverts it
    tx = om.muon_plus_plus(lr, weight_radius=None, dimension_numbers=dims)
    delta = np.asarray(one_step(tx, p, g).weight, np.float64)
    assert np.linalg.norm(delta, 2) == pytest.approx(lr * expected, rel=5e-3)


@pytest.mark.parametrize("dims,message", [
    (om.FusedDimensionNumbers(0, 1, parts=0), "^w: FusedDimensionNumbers.parts must be a positive"),
    (om.FusedDimensionNumbers(0, (1, 2), parts=2), "^w: FusedDimensionNumbers with several output"),
    (om.FusedDimensionNumbers(0, 1, parts=2, split_axis=3), "^w: FusedDimensionNumbers.split_axis"),
    (om.FusedDimensionNumbers(4, 1, parts=2), "^w: reduction axis 4 is out of range"),
])
def test_impossible_fused_dimension_numbers_raise_naming_the_path(dims, message):
  with pytest.raises(ValueError, match=message):
    om.muon(1e-3, dimension_numbers=dims).init({"w": jnp.zeros((64, 128, 4))})


def test_conv_dimension_numbers_need_a_kernel_rank():
  with pytest.raises(ValueError, match="^rank: a convolution kernel has rank >= 3"):
    om.conv_dimension_numbers(2)
  assert om.conv_dimension_numbers(3) == om.MuonDimensionNumbers((0, 1), 2)
  assert om.conv_dimension_numbers(5, channels_first=True) == om.MuonDimensionNumbers(
      (1, 2, 3, 4), 0)


def test_state_shardings_with_a_fused_leaf():
  from jax.sharding import NamedSharding, PartitionSpec as P
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
  params = {"qkv": jnp.zeros((64, 384)), "up": jnp.zeros((64, 256))}
  shardings = {"qkv": NamedSharding(mesh, P("fsdp", None)),
               "up": NamedSharding(mesh, P("fsdp", None))}
  tx = om.muon(1e-3, dimension_numbers={"^qkv$": om.FusedDimensionNumbers(0, 1, parts=3)})
  specs = om.state_shardings(jax.eval_shape(tx.init, params), params, shardings)
  mu = specs.matrix[0][0].mu
  assert mu["64x128"].spec == P(None, None, None)  # the parts' axes are not the leaf's
  assert mu["64x256"].spec == P(None, "fsdp", None)


def test_muown_controls_the_norm_of_each_output_channel_of_a_flattened_conv():
  lr = 0.01
  rng = np.random.default_rng(9)
  w = rng.standard_normal((3, 3, 32, 64)).astype(np.float32) / 17
  p = {"Conv_0": {"kernel": jnp.asarray(w)}}
  g = {"Conv_0": {"kernel": jnp.asarray(rng.standard_normal(w.shape), jnp.float32)}}
  new = np.asarray(optax.apply_updates(p, one_step(om.muown(lr, weight_decay=0.0), p, g))
                   ["Conv_0"]["kernel"])
  # One output channel is one neuron of the [3·3·32, 64] matrix: its norm moves by exactly lr.
  moved = np.abs(np.linalg.norm(new.reshape(288, 64), axis=0)
                 - np.linalg.norm(w.reshape(288, 64), axis=0))
  np.testing.assert_allclose(moved, lr, atol=2e-6)
