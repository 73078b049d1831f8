"""Newton–Schulz orthogonalization against exact float64 NumPy references.

Every reference is computed independently in NumPy: an exact SVD (or a matrix
built from chosen singular values) and the scalar map ``f`` of the schedule
applied to singular values normalized by hand (docs/algorithms.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_muon
from optax_muon import MuonDimensionNumbers as DN
from ns_tables import JORDAN, NANOGPT5, POLAR_EXPRESS_8

NU = {"jordan": 1.0, "polar_express": 1.01, "nanogpt5": 1.02}
NAMED = ("jordan", "polar_express", "nanogpt5")
NORMS = ("frobenius", "schatten4", "spectral", "aol")
SHAPES = ((12, 8), (8, 12), (10, 10))  # tall, wide, square

PUBLISHED_PE8 = np.array(POLAR_EXPRESS_8)


# ----------------------------------------------------------------- references


def _np_quintic_map(sigma, table):
  """The scalar composition f, written out independently of the library."""
  s = np.asarray(sigma, np.float64)
  for a, b, c in np.atleast_2d(np.asarray(table, np.float64)):
    s = a * s + b * s**3 + c * s**5
  return s


def _orthogonal(rng, n, k):
  q, r = np.linalg.qr(rng.standard_normal((n, k)))
  return q * np.sign(np.diag(r))


def _with_singular_values(rng, shape, s):
  m, n = shape
  k = min(m, n)
  u, v = _orthogonal(rng, m, k), _orthogonal(rng, n, k)
  return u, np.asarray(s, np.float64), v


def _normalized(s, normalization, nu):
  s = np.asarray(s, np.float64)
  if normalization == "frobenius":
    return s / (nu * np.sqrt(np.sum(s**2)))
  if normalization == "schatten4":
    return s / np.sum(s**4) ** 0.25
  if normalization == "spectral":
    # 1.05·σ₁ (power-iteration estimate times safety), capped above by the
    # upper bound ‖(XXᵀ)²‖_F^{1/4} = (Σσ⁸)^{1/8} (newton_schulz.py docstring).
    return s / min(1.05 * s.max(), np.sum(s**8) ** 0.125)
  raise AssertionError(normalization)


def ref_polar(x, schedule="jordan", steps=5, normalization="frobenius"):
  """NumPy float64 reference of ``orthogonalize`` for any 2-D ``x``."""
  x = np.asarray(x, np.float64)
  table = (optax_muon.ns_coefficients(schedule, steps) if isinstance(schedule, str)
           else np.atleast_2d(schedule))
  nu = NU.get(schedule, 1.0) if isinstance(schedule, str) else 1.0
  transposed = x.shape[0] > x.shape[1]
  y = x.T if transposed else x
  if normalization == "aol":
    gram = y @ y.T
    y = y / np.sqrt(np.abs(gram).sum(axis=1))[:, None]
  u, s, vt = np.linalg.svd(y, full_matrices=False)
  sn = s if normalization == "aol" else _normalized(s, normalization, nu)
  out = (u * _np_quintic_map(sn, table)) @ vt
  return out.T if transposed else out


def _assert_close(actual, expected, tol=1e-4):
  actual = np.asarray(actual, np.float64)
  assert actual.shape == expected.shape
  err = np.max(np.abs(actual - expected)) if expected.size else 0.0
  assert err <= tol * max(1.0, np.max(np.abs(expected), initial=0.0)), err


# ------------------------------------------------- orthogonalize vs exact SVD


SPECTRA = {
    # spread singular values; spectral normalization takes the (Σσ⁸)^{1/8} cap
    "spread": lambda k: np.geomspace(2.0, 0.05, k),
    # a repeated top singular value: spectral normalization takes 1.05·σ₁
    "flat_top": lambda k: np.concatenate([[1.5] * 3, np.linspace(1.0, 0.1, k - 3)]),
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("schedule", NAMED)
@pytest.mark.parametrize("normalization", ("frobenius", "schatten4", "spectral"))
@pytest.mark.parametrize("spectrum", SPECTRA)
def test_orthogonalize_matches_svd_reference(shape, schedule, normalization, spectrum):
  rng = np.random.default_rng(hash((shape, schedule, normalization, spectrum)) % 2**32)
  u, s, v = _with_singular_values(rng, shape, SPECTRA[spectrum](min(shape)))
  x = (u * s) @ v.T
  sn = _normalized(s, normalization, NU[schedule])
  expected = (u * _np_quintic_map(sn, optax_muon.ns_coefficients(schedule, 5))) @ v.T
  out = optax_muon.orthogonalize(jnp.asarray(x, jnp.float32), schedule=schedule,
                                 steps=5, normalization=normalization)
  assert out.dtype == jnp.float32
  _assert_close(out, expected)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("schedule", NAMED)
def test_orthogonalize_aol_matches_svd_of_scaled_input(shape, schedule):
  rng = np.random.default_rng(7)
  x = rng.standard_normal(shape) * rng.uniform(0.2, 3.0, size=(shape[0], 1))
  expected = ref_polar(x, schedule, 5, "aol")
  out = optax_muon.orthogonalize(jnp.asarray(x, jnp.float32), schedule=schedule,
                                 steps=5, normalization="aol")
  _assert_close(out, expected)


def test_ns_scalar_map_matches_handwritten_quintics():
  sigma = np.geomspace(1e-4, 1.0, 50)
  np.testing.assert_allclose(optax_muon.ns_scalar_map(sigma, "jordan", 5),
                             _np_quintic_map(sigma, [JORDAN] * 5), rtol=1e-12)
  np.testing.assert_allclose(optax_muon.ns_scalar_map(sigma, "nanogpt5", 5),
                             _np_quintic_map(sigma, NANOGPT5), rtol=1e-12)


@pytest.mark.parametrize("steps", (3, 5, 8))
def test_orthogonalize_polar_express_converges_to_polar(steps):
  rng = np.random.default_rng(steps)
  x = rng.standard_normal((16, 12))
  u, _, vt = np.linalg.svd(x, full_matrices=False)
  out = np.asarray(optax_muon.orthogonalize(jnp.asarray(x, jnp.float32),
                                            schedule="polar_express", steps=steps))
  _assert_close(out, ref_polar(x, "polar_express", steps))
  if steps == 8:  # for a well-conditioned Gaussian matrix, 8 steps give U Vᵀ
    _assert_close(out, u @ vt, tol=2e-3)


# ---------------------------------------- thresholds, ranges, published tables


@pytest.mark.parametrize("schedule,steps,expected", [
    ("jordan", 5, (2.07e-4, 1.07e-3, 2.13e-3)),
    ("nanogpt5", 5, (2.03e-4, 1.06e-3, 2.16e-3)),
    ("polar_express", 5, (1.04e-4, 5.4e-4, 1.1e-3)),
    ("polar_express", 8, (1.59e-5, 8.5e-5, 2.1e-4)),
])
def test_failure_threshold_table(schedule, steps, expected):
  for level, want in zip((0.1, 0.5, 0.9), expected):
    got = optax_muon.ns_failure_threshold(schedule, steps, level)
    assert abs(got - want) <= 0.05 * want, (level, got, want)
    # Independent check: the hand-written map crosses `level` at `got`.
    table = optax_muon.ns_coefficients(schedule, steps)
    assert _np_quintic_map(got * 1.001, table) >= level
    below = np.geomspace(1e-10, got * 0.999, 2000)
    assert np.all(_np_quintic_map(below, table) < level)


def test_failure_threshold_never_reached_is_inf():
  # One plain cubic-free step σ ↦ 0.5σ never reaches 0.9 on (0, 1].
  assert optax_muon.ns_failure_threshold([(0.5, 0.0, 0.0)], 1, 0.9) == float("inf")


@pytest.mark.parametrize("schedule,lo,hi", [("jordan", 0.682, 1.134),
                                            ("nanogpt5", 0.978, 1.032)])
def test_schedule_output_range(schedule, lo, hi):
  f = _np_quintic_map(np.geomspace(1e-2, 1.0, 20001),
                      optax_muon.ns_coefficients(schedule, 5))
  assert abs(f.min() - lo) < 1e-3 and abs(f.max() - hi) < 1e-3
  f_lib = optax_muon.ns_scalar_map(np.geomspace(1e-2, 1.0, 20001), schedule, 5)
  np.testing.assert_allclose(f_lib, f, rtol=1e-12)


def test_named_tables_are_the_published_ones():
  np.testing.assert_array_equal(optax_muon.ns_coefficients("jordan", 5),
                                np.array([JORDAN] * 5))
  np.testing.assert_array_equal(optax_muon.ns_coefficients("nanogpt5", 5), np.array(NANOGPT5))
  np.testing.assert_array_equal(optax_muon.ns_coefficients("dion", 5), np.array(NANOGPT5))
  assert optax_muon.NORMALIZATION_SCALE == {"jordan": 1.0, "polar_express": 1.01,
                                           "nanogpt5": 1.02, "dion": 1.0}


def test_polar_express_matches_published_table():
  expected = PUBLISHED_PE8.copy()
  expected[:-1] /= np.array([1.01, 1.01**3, 1.01**5])
  got = optax_muon.polar_express_coefficients(8)
  assert got.shape == (8, 3)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_allclose(optax_muon.ns_coefficients("polar_express", 8), expected,
                             rtol=1e-6)


@pytest.mark.parametrize("lower_bound", (1e-3, 1e-2, 1e-1))
def test_polar_express_generator_narrows_band(lower_bound):
  widths = []
  for steps in range(3, 10):
    table = optax_muon.ns_coefficients("polar_express", steps, lower_bound=lower_bound)
    assert table.shape == (steps, 3)
    f = _np_quintic_map(np.geomspace(lower_bound, 1.0, 4001), table)
    # a band around 1: never far below 1, never above 1 by more than the band
    assert f.min() > 0.0 and f.max() < 2.0
    assert f.min() <= 1.0 + 1e-12 <= f.max() + 2e-12
    widths.append(max(1.0 - f.min(), f.max() - 1.0))
  for w_prev, w_next in zip(widths, widths[1:]):
    assert w_next <= w_prev + 1e-12, widths
  assert widths[-1] < 1e-6, widths


def test_polar_express_different_lower_bounds_differ():
  a = optax_muon.ns_coefficients("polar_express", 6, lower_bound=1e-3)
  b = optax_muon.ns_coefficients("polar_express", 6, lower_bound=1e-2)
  assert not np.allclose(a, b)
  # a larger lower bound is fully lifted: f([1e-2, 1]) within 1e-4 of 1
  f = _np_quintic_map(np.geomspace(1e-2, 1.0, 2001), b)
  assert np.max(np.abs(f - 1.0)) < 1e-4


# ------------------------------------------------------------------ properties


def _random(shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _gapped(shape, seed=0):
  """A matrix with a clear spectral gap, so that the spectral normalization's
  power iteration converges and the float64 reference applies to it exactly
  (on a Gaussian square matrix σ₁ ≈ σ₂ and the estimate depends on the start)."""
  rng = np.random.default_rng(seed)
  u, s, v = _with_singular_values(rng, shape, np.geomspace(2.0, 0.05, min(shape)))
  return ((u * s) @ v.T).astype(np.float32)


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("shape", ((12, 8), (10, 10)))
def test_transpose_equivariance(normalization, shape):
  x = _gapped(shape, 1)
  if normalization == "aol":
    # AOL scales the rows of the wide orientation; for square matrices that
    # is the rows of X, so NS(Xᵀ) scales the columns: not equivariant there.
    if shape[0] == shape[1]:
      pytest.skip("AOL is not transpose-equivariant on square matrices")
  kw = dict(schedule="polar_express", steps=6, normalization=normalization)
  a = optax_muon.orthogonalize(jnp.asarray(x.T), **kw)
  b = optax_muon.orthogonalize(jnp.asarray(x), **kw)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b).T, atol=1e-5)
  _assert_close(b, ref_polar(x, "polar_express", 6, normalization))


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("k", (1e-20, 1e-3, 7.0, 1e20))
def test_scale_invariance(normalization, k):
  x = _gapped((12, 8), 2)
  base = optax_muon.orthogonalize(jnp.asarray(x), normalization=normalization)
  scaled = optax_muon.orthogonalize(jnp.asarray(x) * jnp.float32(k),
                                    normalization=normalization)
  assert np.all(np.isfinite(np.asarray(scaled)))
  np.testing.assert_allclose(np.asarray(scaled), np.asarray(base), atol=1e-5)
  _assert_close(scaled, ref_polar(x, "jordan", 5, normalization))


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("compute_dtype", (None, jnp.bfloat16))
def test_zero_in_zero_out(normalization, compute_dtype):
  for shape in ((6, 4), (4, 6), (3, 5, 5)):
    out = optax_muon.orthogonalize(jnp.zeros(shape), normalization=normalization,
                                   compute_dtype=compute_dtype)
    np.testing.assert_array_equal(np.asarray(out), np.zeros(shape))


def _effective_svd(x, normalization):
  """``u, s, v`` (original orientation) of the matrix whose singular values the
  iteration maps: ``x`` itself, or ``D·x`` (wide orientation) for AOL."""
  x = np.asarray(x, np.float64)
  transposed = x.shape[0] > x.shape[1]
  y = x.T if transposed else x
  if normalization == "aol":
    y = y / np.sqrt(np.abs(y @ y.T).sum(axis=1))[:, None]
  u, s, vt = np.linalg.svd(y, full_matrices=False)
  return (vt.T, s, u) if transposed else (u, s, vt.T)


def _cond_1e3(seed=3):
  rng = np.random.default_rng(seed)
  u, s, v = _with_singular_values(rng, (32, 16), np.geomspace(1.0, 1e-3, 16))
  return ((u * s) @ v.T).astype(np.float32)


BF16_COMBOS = {"f32_in_bf16_compute": (jnp.float32, jnp.bfloat16),
               "bf16_in": (jnp.bfloat16, None),
               "bf16_in_bf16_compute": (jnp.bfloat16, jnp.bfloat16)}


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("combo", BF16_COMBOS)
def test_bfloat16_stays_finite_and_bounded(normalization, combo):
  x = _cond_1e3()
  in_dtype, cdt = BF16_COMBOS[combo]
  out = optax_muon.orthogonalize(jnp.asarray(x, in_dtype), normalization=normalization,
                                 compute_dtype=cdt)
  assert out.dtype == in_dtype
  out = np.asarray(out.astype(jnp.float32), np.float64)
  assert np.all(np.isfinite(out))
  expected = ref_polar(x, "jordan", 5, normalization)
  assert np.linalg.norm(out, 2) < 1.5 * np.linalg.norm(expected, 2)


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("combo", BF16_COMBOS)
def test_bfloat16_accuracy_in_top_subspace(normalization, combo):
  """bf16 rounding noise (~4e-3 relative) sits in every direction and the
  quintic's slope at 0 (3.4445 per step) amplifies it where σ is small, so only
  the top singular subspace (σ >= 0.05σ₁, where f is flat) is compared. A
  torch-style iteration (one rounding per fused ``bA + cA²`` and ``aX + HX``)
  gets ~1e-2 there. Checked on the standard iteration: Gram Newton–Schulz, which
  ``method="auto"`` picks at this 2:1 aspect ratio, rounds differently in bf16
  (test_gram_newton_schulz.py bounds it)."""
  x = _cond_1e3()
  in_dtype, cdt = BF16_COMBOS[combo]
  expected = ref_polar(x, "jordan", 5, normalization)
  u, s, v = _effective_svd(x, normalization)
  k = int(np.sum(s >= 0.05 * s[0]))
  pu, pv = u[:, :k] @ u[:, :k].T, v[:, :k] @ v[:, :k].T
  out = optax_muon.orthogonalize(jnp.asarray(x, in_dtype), normalization=normalization,
                                 compute_dtype=cdt, method="standard")
  out = np.asarray(out.astype(jnp.float32), np.float64)
  rel = np.linalg.norm(pu @ (out - expected) @ pv) / np.linalg.norm(pu @ expected @ pv)
  assert rel < 3e-2, rel


def test_stacked_input_equals_per_slice():
  x = _random((3, 12, 8), 4)
  out = np.asarray(optax_muon.orthogonalize(jnp.asarray(x), normalization="aol"))
  for i in range(3):
    _assert_close(out[i], ref_polar(x[i], "jordan", 5, "aol"))
  # explicit dims on a stacked [L, in, out] kernel
  out2 = optax_muon.orthogonalize(jnp.asarray(x), dimension_numbers=DN(1, 2))
  for i in range(3):
    _assert_close(np.asarray(out2)[i], ref_polar(x[i]))


def test_multi_axis_reduction_equals_reshaped_matrix():
  a, b, c = 3, 4, 5
  x = _random((a, b, c), 5)
  out = optax_muon.orthogonalize(jnp.asarray(x),
                                 dimension_numbers=DN(reduction_axis=(0, 1), output_axis=2))
  assert out.shape == (a, b, c)
  _assert_close(np.asarray(out).reshape(a * b, c), ref_polar(x.reshape(a * b, c)))


def test_permuted_axes_batch_in_the_middle():
  # reduction axis 2, output axis 0, batch axis 1: matrices are x[:, j, :]ᵀ.
  x = _random((6, 3, 9), 6)
  out = np.asarray(optax_muon.orthogonalize(
      jnp.asarray(x), dimension_numbers=DN(reduction_axis=2, output_axis=0)))
  for j in range(3):
    _assert_close(out[:, j, :], ref_polar(x[:, j, :]))
  # negative axes name the same layout
  out_neg = optax_muon.orthogonalize(
      jnp.asarray(x), dimension_numbers=DN(reduction_axis=-1, output_axis=-3))
  np.testing.assert_array_equal(np.asarray(out_neg), out)


@pytest.mark.parametrize("shape", ((0, 4), (4, 0), (0, 0), (2, 0, 3)))
def test_empty_inputs(shape):
  out = optax_muon.orthogonalize(jnp.zeros(shape))
  assert out.shape == shape


@pytest.mark.parametrize("shape", ((1, 7), (7, 1), (1, 1)))
@pytest.mark.parametrize("normalization", NORMS)
def test_vector_shaped_matrices(shape, normalization):
  x = _random(shape, 8) + 0.5
  out = optax_muon.orthogonalize(jnp.asarray(x), normalization=normalization)
  _assert_close(out, ref_polar(x, "jordan", 5, normalization))


def test_float64_input_keeps_dtype_and_precision():
  with jax.enable_x64(True):
    x = np.random.default_rng(9).standard_normal((9, 6))
    out = optax_muon.orthogonalize(jnp.asarray(x, jnp.float64), schedule="polar_express",
                                   steps=8)
    assert out.dtype == jnp.float64
    _assert_close(out, ref_polar(x, "polar_express", 8), tol=1e-10)


# -------------------------------------------------------- schedule handling


def test_short_schedule_repeats_last_triple():
  table = [(3.0, -3.2, 1.2), (2.0, -1.5, 0.5)]
  got = optax_muon.ns_coefficients(table, 4)
  np.testing.assert_array_equal(got, np.array([table[0], table[1], table[1], table[1]]))
  np.testing.assert_array_equal(optax_muon.ns_coefficients(JORDAN, 3), np.array([JORDAN] * 3))
  np.testing.assert_array_equal(optax_muon.ns_coefficients("nanogpt5", 7),
                                np.array(list(NANOGPT5) + [NANOGPT5[-1]] * 2))
  np.testing.assert_array_equal(optax_muon.ns_coefficients("nanogpt5", 3),
                                np.array(NANOGPT5[:3]))


@pytest.mark.parametrize("schedule", [JORDAN, np.array(NANOGPT5), [(3.0, -3.2, 1.2)] * 2])
def test_explicit_tables(schedule):
  x = _random((12, 8), 10)
  out = optax_muon.orthogonalize(jnp.asarray(x), schedule=schedule, steps=5)
  table = np.atleast_2d(np.asarray(schedule, np.float64))
  full = np.concatenate([table, np.repeat(table[-1:], 5 - len(table), 0)])[:5]
  _assert_close(out, ref_polar(x, full, 5))


def test_dion_name_uses_unit_nu_and_nanogpt5_uses_1_02():
  x = _random((12, 8), 11)
  dion = optax_muon.orthogonalize(jnp.asarray(x), schedule="dion")
  nano = optax_muon.orthogonalize(jnp.asarray(x), schedule="nanogpt5")
  _assert_close(dion, ref_polar(x, np.array(NANOGPT5), 5))  # ν = 1
  _assert_close(nano, ref_polar(x, "nanogpt5", 5))  # ν = 1.02
  assert not np.allclose(np.asarray(dion), np.asarray(nano), atol=1e-4)


@pytest.mark.parametrize("call,match", [
    (lambda x: optax_muon.orthogonalize(x, schedule="bogus"), "jordan"),
    (lambda x: optax_muon.orthogonalize(x, normalization="bogus"), "frobenius"),
    (lambda x: optax_muon.orthogonalize(x, steps=0), ">= 1"),
    (lambda x: optax_muon.orthogonalize(x, schedule=np.ones((2, 2))), r"\(n, 3\)"),
    (lambda x: optax_muon.orthogonalize(x, schedule=np.ones((2, 3, 3))), r"\(n, 3\)"),
    (lambda x: optax_muon.orthogonalize(x, dimension_numbers=DN(0, 0)), "overlap"),
    (lambda x: optax_muon.orthogonalize(x, dimension_numbers=DN(0, 2)), "out of range"),
    (lambda x: optax_muon.orthogonalize(x, dimension_numbers=DN((0, 0), 1)), "repeat"),
    (lambda x: optax_muon.orthogonalize(x[0]), "rank"),
    (lambda x: optax_muon.newton_schulz("bogus"), "jordan"),
    (lambda x: optax_muon.newton_schulz(normalization="spectrall"), "schatten4"),
    (lambda x: optax_muon.ns_coefficients("jordan", -1), ">= 1"),
], ids=["schedule", "normalization", "steps", "table22", "table3d", "overlap",
        "out_of_range", "repeat", "rank1", "transform_schedule", "transform_norm",
        "neg_steps"])
def test_bad_input_raises(call, match):
  with pytest.raises(ValueError, match=match):
    call(jnp.ones((4, 6)))


def test_valid_choices_are_named_in_messages():
  with pytest.raises(ValueError) as e:
    optax_muon.ns_coefficients("bogus")
  for name in optax_muon.SCHEDULES:
    assert name in str(e.value)
  with pytest.raises(ValueError) as e:
    optax_muon.orthogonalize(jnp.ones((3, 3)), normalization="bogus")
  for name in optax_muon.NORMALIZATIONS:
    assert name in str(e.value)


# ------------------------------------------------ the newton_schulz transform


def _tree(seed=12):
  # gapped spectra, so the spectral normalization's power iteration converges
  g = lambda shape, i: jnp.asarray(_gapped(shape, seed * 100 + i))
  return {"a": g((12, 8), 0), "b": g((12, 8), 1), "c": g((12, 8), 2),
          "wide": g((8, 12), 3), "stack": jnp.stack([g((12, 8), 4), g((12, 8), 5)]),
          "bias": jnp.asarray(_random((8,), seed)), "skip": jnp.asarray(_random((6, 6), seed))}


@pytest.mark.parametrize("normalization", NORMS)
def test_transform_grouping_is_invisible(normalization):
  tree = _tree()
  dims = {"a": DN(0, 1), "b": DN(0, 1), "c": DN(0, 1), "wide": DN(0, 1),
          "stack": DN(1, 2), "bias": None, "skip": None}
  # Grouped (the transform stacks a, b, c, stack and the transposed wide) vs one
  # matrix at a time (the pure function on each leaf).
  tx = optax_muon.newton_schulz("polar_express", 6, normalization=normalization,
                                dimension_numbers=dims)
  grouped, _ = tx.update(tree, tx.init(tree))
  one_by_one = {k: (optax_muon.orthogonalize(x, schedule="polar_express", steps=6,
                                             normalization=normalization,
                                             dimension_numbers=dims[k])
                    if dims[k] is not None else x) for k, x in tree.items()}
  outs = [grouped, one_by_one]
  for k in tree:
    np.testing.assert_allclose(np.asarray(outs[0][k]), np.asarray(outs[1][k]), atol=1e-6)
  for u in outs:
    np.testing.assert_array_equal(np.asarray(u["bias"]), np.asarray(tree["bias"]))
    np.testing.assert_array_equal(np.asarray(u["skip"]), np.asarray(tree["skip"]))
    for k in ("a", "b", "c", "wide"):
      _assert_close(u[k], ref_polar(np.asarray(tree[k]), "polar_express", 6, normalization))
    for i in range(2):
      _assert_close(u["stack"][i], ref_polar(np.asarray(tree["stack"][i]), "polar_express",
                                             6, normalization))


def test_transform_default_rule_and_adaptive():
  tree = _tree(13)
  tx = optax_muon.newton_schulz(adaptive=True)
  u, _ = jax.jit(tx.update)(tree, tx.init(tree))
  np.testing.assert_array_equal(np.asarray(u["bias"]), np.asarray(tree["bias"]))
  for k in ("a", "skip"):
    x = np.asarray(tree[k], np.float64)
    o = ref_polar(x)
    _assert_close(u[k], np.sum(x * o) * o, tol=2e-4)
