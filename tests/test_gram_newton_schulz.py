"""Gram Newton–Schulz (``method="gram"``/``"auto"``) against independent references.

References are computed here in float64 NumPy: the exact SVD polar factor
``U Vᵀ``, and the exact result of the iteration ``U f(σ̂) Vᵀ`` on inputs built
from chosen singular values (``f`` the hand-written composition of the
published quintics, ``σ̂`` normalized by hand). The standard kernel is the
second reference: Gram NS is the same iteration, reorganized.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_muon
from optax_muon._src import gram_newton_schulz as gram_ns
from optax_muon._src import newton_schulz as ns
from ns_tables import JORDAN, NANOGPT5, POLAR_EXPRESS_8

NU = {"jordan": 1.0, "polar_express": 1.01, "nanogpt5": 1.02}
# The schedules of the failure-threshold table (test_newton_schulz.py).
THRESHOLD_TABLE = [("jordan", 5), ("nanogpt5", 5), ("polar_express", 5), ("polar_express", 8)]
# 1:1, 1:4, 1:8 and transposed, small enough to be fast.
SHAPES = [(16, 16), (16, 64), (8, 64), (64, 16), (64, 8)]
NORMS = ("frobenius", "spectral", "schatten4", "aol")


def _published_table(schedule, steps):
  """The coefficient table typed in from the sources (ns_tables.py)."""
  if schedule == "jordan":
    return np.array([JORDAN] * steps)
  if schedule == "nanogpt5":
    return np.array(NANOGPT5)[:steps]
  table = np.array(POLAR_EXPRESS_8)
  if steps < 8:  # computed for `steps`: compare with the library's own table
    return optax_muon.ns_coefficients("polar_express", steps)
  table[:-1] /= np.array([1.01, 1.01**3, 1.01**5])
  return table


def _np_map(sigma, table):
  s = np.asarray(sigma, np.float64)
  for a, b, c in np.atleast_2d(table):
    s = a * s + b * s**3 + c * s**5
  return s


def _orthonormal(rng, n, k):
  q, r = np.linalg.qr(rng.standard_normal((n, k)))
  return q * np.sign(np.diag(r))


def _with_spectrum(shape, s, seed=0):
  """``x = U diag(s) Vᵀ`` and its exact ``U``, ``s``, ``V``."""
  rng = np.random.default_rng(seed)
  m, n = shape
  k = min(m, n)
  u, v = _orthonormal(rng, m, k), _orthonormal(rng, n, k)
  s = np.asarray(s, np.float64)
  return (u * s) @ v.T, u, s, v


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _f64(x):
  return np.asarray(jnp.asarray(x).astype(jnp.float32), np.float64)


def _orth(x, method, **kw):
  return _f64(optax_muon.orthogonalize(jnp.asarray(x, jnp.float32), method=method, **kw))


# ------------------------------------------------- exact SVD references (f32)


@pytest.mark.parametrize("schedule,steps", THRESHOLD_TABLE, ids=lambda v: str(v))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_matches_svd_reference_and_no_worse_than_standard(schedule, steps, shape):
  """Singular values 1 … 1e-5 straddle every failure threshold of the table."""
  x, u, s, v = _with_spectrum(shape, np.geomspace(1.0, 1e-5, min(shape)), seed=steps)
  table = _published_table(schedule, steps)
  iterated = (u * _np_map(s / (NU[schedule] * np.linalg.norm(s)), table)) @ v.T
  polar = u @ v.T
  kw = dict(schedule=schedule, steps=steps)
  gram, std = _orth(x, "gram", **kw), _orth(x, "standard", **kw)
  # The iteration itself, to f32 accuracy (observed: <= 1.1e-4).
  assert _rel(gram, iterated) < 2e-4, _rel(gram, iterated)
  # Against the exact polar factor: no worse than the standard kernel (the
  # error is the schedule's own: directions below its failure threshold).
  err_gram, err_std = _rel(gram, polar), _rel(std, polar)
  assert err_gram <= err_std * (1 + 1e-4) + 1e-6, (err_gram, err_std)
  assert abs(err_gram - _rel(iterated, polar)) < 1e-4


@pytest.mark.parametrize("schedule,steps", THRESHOLD_TABLE, ids=lambda v: str(v))
def test_failure_thresholds_are_the_standard_ones(schedule, steps):
  """Per-direction gains ``g_i = u_iᵀ O v_i`` cross 0.1/0.5/0.9 where ``f`` does."""
  k = 48
  x, u, s, v = _with_spectrum((k, 4 * k), np.geomspace(1.0, 1e-6, k), seed=1)
  sn = s / (NU[schedule] * np.linalg.norm(s))
  expected = _np_map(sn, _published_table(schedule, steps))
  for method in ("gram", "standard"):
    out = _orth(x, method, schedule=schedule, steps=steps)
    gains = np.einsum("ik,ij,jk->k", u, out, v)
    assert np.max(np.abs(gains - expected)) < 1e-3, method
    for level in (0.1, 0.5, 0.9):
      # the first (smallest) σ̂ whose gain reaches `level` brackets the threshold
      thr = optax_muon.ns_failure_threshold(schedule, steps, level)
      first = sn[gains >= level].min()
      below = sn[sn < first].max()
      assert below < thr <= first, (method, level, below, thr, first)


@pytest.mark.parametrize("steps", (5, 8))
def test_polar_express_converges_to_polar(steps):
  rng = np.random.default_rng(steps)
  x = rng.standard_normal((24, 96))
  u, _, vt = np.linalg.svd(x, full_matrices=False)
  out = _orth(x, "gram", schedule="polar_express", steps=steps)
  if steps == 8:  # a well-conditioned Gaussian matrix reaches U Vᵀ
    assert _rel(out, u @ vt) < 2e-3


# ---------------------------------------------------- vs the standard kernel


@pytest.mark.parametrize("shape", [(32, 32), (32, 128), (16, 128), (128, 32), (128, 16)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("schedule,steps", THRESHOLD_TABLE, ids=lambda v: str(v))
def test_relative_difference_vs_standard_f32(shape, schedule, steps):
  x = np.random.default_rng(3).standard_normal(shape)
  gram = _orth(x, "gram", schedule=schedule, steps=steps)
  std = _orth(x, "standard", schedule=schedule, steps=steps)
  d = _rel(gram, std)
  assert d <= 2e-2  # the acceptance bound
  assert d <= 1e-4, d  # observed: <= 4e-6


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("shape", [(12, 40), (40, 12), (16, 16)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_normalization_matches_standard(normalization, shape):
  rng = np.random.default_rng(4)
  # a spectral gap, so that the spectral normalization's estimate is exact
  x, *_ = _with_spectrum(shape, np.geomspace(2.0, 0.05, min(shape)), seed=4)
  x = x * rng.uniform(0.5, 2.0, size=(shape[0], 1))  # uneven rows for AOL
  kw = dict(schedule="polar_express", steps=6, normalization=normalization)
  assert _rel(_orth(x, "gram", **kw), _orth(x, "standard", **kw)) < 1e-4


def test_restarting_every_step_is_the_standard_iteration():
  x = jnp.asarray(np.random.default_rng(5).standard_normal((2, 16, 48)), jnp.float32)
  table = optax_muon.ns_coefficients("jordan", 5)
  gram = ns.orthogonalize_matrices(x, table, method="gram", restarts=range(1, 5))
  std = ns.orthogonalize_matrices(x, table, method="standard")
  np.testing.assert_allclose(np.asarray(gram), np.asarray(std), atol=2e-6)


def test_no_restart_is_exact_in_float64():
  with jax.enable_x64(True):
    x, u, s, v = _with_spectrum((10, 40), np.geomspace(1.0, 1e-2, 10), seed=6)
    table = _published_table("polar_express", 8)
    out = ns.orthogonalize_matrices(jnp.asarray(x)[None], table, method="gram",
                                       restarts=(), input_scale=1.01)
    assert out.dtype == jnp.float64
    expected = (u * _np_map(s / (1.01 * np.linalg.norm(s)), table)) @ v.T
    np.testing.assert_allclose(np.asarray(out[0]), expected, atol=1e-10)


# -------------------------------------------------------------------- bf16


def _cond_1e3(shape=(64, 256), seed=7):
  return _with_spectrum(shape, np.geomspace(1.0, 1e-3, min(shape)), seed=seed)


@pytest.mark.parametrize("schedule,steps", THRESHOLD_TABLE, ids=lambda v: str(v))
@pytest.mark.parametrize("spectrum", ("gaussian", "cond_1e3"))
@pytest.mark.parametrize("in_dtype,compute_dtype", [(jnp.float32, jnp.bfloat16),
                                                    (jnp.bfloat16, None),
                                                    (jnp.bfloat16, jnp.bfloat16)],
                         ids=("f32_in_bf16", "bf16_in", "bf16_in_bf16"))
def test_bfloat16_finite_and_close(schedule, steps, spectrum, in_dtype, compute_dtype):
  if spectrum == "gaussian":
    x = np.random.default_rng(8).standard_normal((64, 256))
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    v = vt.T
  else:
    x, u, s, v = _cond_1e3()
  iterated = (u * _np_map(s / (NU[schedule] * np.linalg.norm(s)),
                          _published_table(schedule, steps))) @ v.T
  kw = dict(schedule=schedule, steps=steps, compute_dtype=compute_dtype)
  outs = {}
  for method in ("gram", "standard"):
    o = optax_muon.orthogonalize(jnp.asarray(x, in_dtype), method=method, **kw)
    assert o.dtype == in_dtype
    outs[method] = _f64(o)
  assert np.all(np.isfinite(outs["gram"]))
  err_gram, err_std = _rel(outs["gram"], iterated), _rel(outs["standard"], iterated)
  # At the standard iteration's bf16 error level (observed ratio 0.5-1.4 from
  # m = 64 up; for m <= 32 Polar Express reaches ~2.5: see the module docstring).
  assert err_gram <= 1.5 * err_std + 2e-3, (err_gram, err_std)
  assert _rel(outs["gram"], outs["standard"]) < 0.25
  assert np.linalg.norm(outs["gram"], 2) < 1.5


@pytest.mark.parametrize("normalization", ("spectral", "schatten4", "aol"))
@pytest.mark.parametrize("schedule,steps", [("jordan", 5), ("polar_express", 8)])
def test_bfloat16_other_normalizations(normalization, schedule, steps):
  """Against the float64 standard kernel (itself checked against SVD references
  in test_newton_schulz.py): bf16 error at the standard kernel's level."""
  x, *_ = _cond_1e3(seed=15)
  with jax.enable_x64(True):
    ref = np.asarray(ns.orthogonalize_matrices(
        jnp.asarray(x, jnp.float64)[None], optax_muon.ns_coefficients(schedule, steps),
        normalization=normalization, method="standard")[0])
  kw = dict(schedule=schedule, steps=steps, normalization=normalization,
            compute_dtype=jnp.bfloat16)
  err_gram, err_std = _rel(_orth(x, "gram", **kw), ref), _rel(_orth(x, "standard", **kw), ref)
  assert err_gram <= 1.5 * err_std + 2e-3, (err_gram, err_std)


# -------------------------------------------------------------- properties


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("compute_dtype", (None, jnp.bfloat16))
def test_zero_in_zero_out(normalization, compute_dtype):
  for shape in ((6, 24), (24, 6), (3, 5, 5)):
    out = optax_muon.orthogonalize(jnp.zeros(shape), normalization=normalization,
                                   compute_dtype=compute_dtype, method="gram")
    np.testing.assert_array_equal(np.asarray(out), np.zeros(shape))


@pytest.mark.parametrize("shape", ((0, 4), (4, 0), (2, 0, 3)))
def test_empty_inputs(shape):
  assert optax_muon.orthogonalize(jnp.zeros(shape), method="gram").shape == shape


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("k", (1e-20, 1e-3, 7.0, 1e20))
def test_scale_invariance(normalization, k):
  x, *_ = _with_spectrum((12, 40), np.geomspace(2.0, 0.05, 12), seed=9)
  base = _orth(x, "gram", normalization=normalization)
  scaled = optax_muon.orthogonalize(jnp.asarray(x, jnp.float32) * jnp.float32(k),
                                    normalization=normalization, method="gram")
  assert np.all(np.isfinite(np.asarray(scaled)))
  np.testing.assert_allclose(_f64(scaled), base, atol=5e-5)


def test_batch_of_matrices_equals_each_matrix():
  x = np.random.default_rng(10).standard_normal((3, 2, 12, 40)).astype(np.float32)
  out = _f64(optax_muon.orthogonalize(jnp.asarray(x), method="gram"))
  table = optax_muon.ns_coefficients("jordan", 5)
  for i in range(3):
    for j in range(2):
      one = ns.orthogonalize_matrices(jnp.asarray(x[i, j])[None], table, method="gram")
      np.testing.assert_allclose(out[i, j], np.asarray(one[0]), atol=1e-6)
      assert _rel(out[i, j], _orth(x[i, j], "standard")) < 1e-4


def test_vector_shaped_matrices():
  for shape in ((1, 7), (7, 1), (1, 1)):
    x = np.random.default_rng(11).standard_normal(shape) + 0.5
    assert _rel(_orth(x, "gram"), _orth(x, "standard")) < 1e-5


# ------------------------------------------------------ cost model and auto


def _dot_flops(fn, *args):
  """2 · (output size) · (contracted size), summed over the jaxpr's dot_generals."""
  total = 0.0
  for eqn in jax.make_jaxpr(fn)(*args).eqns:
    if eqn.primitive.name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      out = eqn.outvars[0].aval.shape
      total += 2.0 * np.prod(out) * np.prod([lhs[d] for d in lhs_contract])
  return total


@pytest.mark.parametrize("shape", [(16, 64), (64, 16), (24, 24)])
@pytest.mark.parametrize("schedule,steps", THRESHOLD_TABLE, ids=lambda v: str(v))
def test_flop_model_counts_the_kernels_matmuls(shape, schedule, steps):
  m, n = min(shape), max(shape)
  x = jnp.zeros((1, *shape))
  table = optax_muon.ns_coefficients(schedule, steps)
  gram = _dot_flops(lambda x: ns.orthogonalize_matrices(x, table, method="gram"), x)
  std = _dot_flops(lambda x: ns.orthogonalize_matrices(x, table, method="standard"), x)
  assert gram == gram_ns.flops(*shape, steps, "gram", schedule=schedule)
  assert std == gram_ns.flops(*shape, steps, "standard", schedule=schedule)
  # the closed forms, with r blocks
  r = 1 + len(gram_ns.default_restarts(table))
  assert std == steps * (4 * m * m * n + 2 * m**3)
  assert gram == 4 * r * m * m * n + (8 * steps - 6 * r) * m**3
  for restarts in ((), (1,), tuple(range(1, steps))):
    assert _dot_flops(lambda x: ns.orthogonalize_matrices(
        x, table, method="gram", restarts=restarts), x) == gram_ns.flops(
            *shape, steps, "gram", schedule=schedule, restarts=restarts)


def test_flop_ratio_at_one_to_four():
  # Jordan×5 at 1:4 with its one restart: 60 m³ against 90 m³.
  assert gram_ns.flops(1024, 4096, 5, "gram") / gram_ns.flops(1024, 4096, 5) == pytest.approx(2 / 3)
  # break-even of the pure flop model at n/m = 3/2, whatever the steps and restarts
  for steps, restarts in ((5, ()), (5, (3,)), (8, (2, 4)), (8, (1, 2, 3))):
    assert gram_ns.flops(100, 150, steps, "gram", restarts=restarts) == pytest.approx(
        gram_ns.flops(100, 150, steps, "standard"))


@pytest.mark.parametrize("shape", [(16, 16), (16, 24), (16, 32), (16, 64), (16, 128),
                                   (64, 16), (32, 16)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("schedule,steps", [("jordan", 5), ("polar_express", 8)])
def test_auto_picks_as_the_cost_model_says(shape, schedule, steps):
  saving = 1 - gram_ns.flops(*shape, steps, "gram", schedule=schedule) / gram_ns.flops(
      *shape, steps, "standard", schedule=schedule)
  expected = "gram" if saving >= gram_ns.AUTO_MIN_SAVING else "standard"
  table = optax_muon.ns_coefficients(schedule, steps)
  assert gram_ns.choose_method("auto", *shape, table) == expected
  x = np.random.default_rng(12).standard_normal(shape)
  kw = dict(schedule=schedule, steps=steps)
  np.testing.assert_array_equal(_orth(x, "auto", **kw), _orth(x, expected, **kw))
  assert gram_ns.flops(*shape, steps, "auto", schedule=schedule) == gram_ns.flops(
      *shape, steps, expected, schedule=schedule)


def test_auto_threshold_in_aspect_ratio():
  table = optax_muon.ns_coefficients("jordan", 5)  # one restart: gram from n/m >= 1.9
  assert gram_ns.choose_method("auto", 100, 185, table) == "standard"
  assert gram_ns.choose_method("auto", 100, 195, table) == "gram"
  assert gram_ns.choose_method("auto", 195, 100, table) == "gram"


# ----------------------------------------------------------- restarts, API


def test_default_restarts():
  assert gram_ns.default_restarts(optax_muon.ns_coefficients("jordan", 5)) == (3,)
  assert gram_ns.default_restarts(optax_muon.ns_coefficients("nanogpt5", 5)) == (2, 4)
  assert gram_ns.default_restarts(optax_muon.ns_coefficients("polar_express", 5)) == (2, 4)
  assert gram_ns.default_restarts(optax_muon.ns_coefficients("polar_express", 8)) == (2, 4)
  assert gram_ns.default_restarts(optax_muon.ns_coefficients("jordan", 8)) == (3, 5, 7)
  # no first-block allowance outside "frobenius"
  for norm in ("spectral", "schatten4", "aol"):
    assert gram_ns.default_restarts(optax_muon.ns_coefficients("jordan", 5), norm) == (2, 4)
  # a step whose slope alone exceeds the budget gets a block of its own
  assert gram_ns.default_restarts([(50.0, 0.0, 0.0)] * 3) == (1, 2)
  # 2.25^9 <= 2000 < 2.25^10, then 2.25^6 <= 250 < 2.25^7
  assert gram_ns.default_restarts([(1.5, -0.5, 0.0)] * 20) == (9, 15)


@pytest.mark.parametrize("restarts", [(0,), (5,), (-1,), "x"])
def test_bad_restarts_raise(restarts):
  with pytest.raises(ValueError, match="restart"):
    ns.orthogonalize_matrices(jnp.ones((1, 4, 6)), optax_muon.ns_coefficients(
        "jordan", 5), method="gram", restarts=restarts)


@pytest.mark.parametrize("call", [
    lambda: optax_muon.orthogonalize(jnp.ones((4, 6)), method="bogus"),
    lambda: optax_muon.newton_schulz(method="Gram"),
    lambda: gram_ns.flops(4, 6, 5, "fast"),
    lambda: ns.orthogonalize_matrices(jnp.ones((1, 4, 6)), np.ones((5, 3)), method="x"),
], ids=("orthogonalize", "newton_schulz", "flops", "kernel"))
def test_bad_method_raises_naming_the_choices(call):
  with pytest.raises(ValueError) as e:
    call()
  for name in ("standard", "gram", "auto"):
    assert name in str(e.value)


@pytest.mark.parametrize("method", ("gram", "auto"))
def test_transform_with_method(method):
  rng = np.random.default_rng(13)
  tree = {"wide": jnp.asarray(rng.standard_normal((8, 48)), jnp.float32),
          "tall": jnp.asarray(rng.standard_normal((48, 8)), jnp.float32),
          "square": jnp.asarray(rng.standard_normal((12, 12)), jnp.float32),
          "stack": jnp.asarray(rng.standard_normal((2, 8, 40)), jnp.float32),
          "bias": jnp.ones((8,))}
  tx = optax_muon.newton_schulz("polar_express", 6, method=method)
  u, _ = jax.jit(tx.update)(tree, tx.init(tree))
  np.testing.assert_array_equal(np.asarray(u["bias"]), np.ones(8))
  for k in ("wide", "tall", "square", "stack"):
    expected = optax_muon.orthogonalize(tree[k], schedule="polar_express", steps=6,
                                        method=method)
    np.testing.assert_allclose(np.asarray(u[k]), np.asarray(expected), atol=2e-5)
    assert _rel(u[k], optax_muon.orthogonalize(tree[k], schedule="polar_express",
                                               steps=6, method="standard")) < 1e-4


def test_gram_on_a_device_mesh_equals_single_device():
  """The mesh path (whole matrices per device) runs the Gram kernel unchanged."""
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(AxisType.Auto,))
  keys = jax.random.split(jax.random.key(14), 2)
  params = {"up": jax.random.normal(keys[0], (8, 16, 64)),
            "down": jax.random.normal(keys[1], (8, 64, 16))}
  sharded = jax.device_put(params, jax.tree.map(
      lambda x: NamedSharding(mesh, P(None, "fsdp", None)), params))
  tx = optax_muon.newton_schulz("polar_express", 5, method="gram")
  with jax.set_mesh(mesh):
    out = jax.jit(lambda g: tx.update(g, tx.init(None))[0])(sharded)
  single = optax_muon.newton_schulz("polar_express", 5, method="gram", mesh=False)
  ref = single.update(params, ())[0]
  for k in params:
    np.testing.assert_allclose(np.asarray(out[k]), np.asarray(ref[k]), atol=2e-5)
