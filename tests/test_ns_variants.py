"""Newton–Schulz variants (schedule × normalization × steps) against independent references.

Fills the gaps the other Newton–Schulz tests leave for the variant benchmark:

* every normalization's induced scalar map, at step counts other than 5 and
  for every schedule name, reproduces the iteration's output (exact numpy SVD,
  coefficients written out here, the Polar Express table from the paper);
* AOL and Schatten-4 match ``optax.contrib``'s orthogonalization on
  ill-conditioned inputs, Polar Express tables and batched layouts;
* bad names, step counts and tables name the valid choices;
* the failure threshold measured on ``orthogonalize``'s output (the σ at which a
  direction is lifted to a level) agrees with a bisection on the hand-written map
  and with ``ns_failure_threshold``;
* the committed momentum samples the variant benchmark reads are well formed.
"""

from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import optax_muon
import optax_muon.diagnostics as omd
from optax_muon import MuonDimensionNumbers as DN
from ns_tables import JORDAN as JORDAN_TRIPLE, NANOGPT5, POLAR_EXPRESS_8

JORDAN = (JORDAN_TRIPLE,)
PE_PUBLISHED = POLAR_EXPRESS_8
NU = {"jordan": 1.0, "polar_express": 1.01, "nanogpt5": 1.02, "dion": 1.0}
NORMS = ("frobenius", "spectral", "schatten4", "aol")
SCHEDULE_NAMES = ("jordan", "polar_express", "nanogpt5", "dion")


# ----------------------------------------------------------------- references


def _table(schedule: str, steps: int) -> np.ndarray:
  """The schedule's first ``steps`` triples, written out from the sources."""
  if schedule == "polar_express":
    t = np.array(PE_PUBLISHED[:steps])
    t[:-1] /= np.array([1.01, 1.01**3, 1.01**5])
    return t
  base = JORDAN if schedule == "jordan" else NANOGPT5
  return np.array([base[min(i, len(base) - 1)] for i in range(steps)])


def _f(sigma, table):
  s = np.asarray(sigma, np.float64)
  for a, b, c in table:
    s = a * s + b * s**3 + c * s**5
  return s


def _orthonormal(rng, n, k):
  q, r = np.linalg.qr(rng.standard_normal((n, k)))
  return q * np.sign(np.diag(r))


def _matrix(rng, m, n, s):
  k = min(m, n)
  u, v = _orthonormal(rng, m, k), _orthonormal(rng, n, k)
  return u, np.asarray(s, np.float64), v, (u * s) @ v.T


def _normalizer(s, normalization, schedule):
  """c(X) of ``X / c`` from the singular values (docs/algorithms.md, newton_schulz.py)."""
  if normalization == "frobenius":
    return NU[schedule] * np.sqrt(np.sum(s**2))
  if normalization == "schatten4":
    return np.sum(s**4) ** 0.25
  if normalization == "spectral":  # 1.05·σ₁, capped by ‖(XXᵀ)²‖_F^{1/4} = (Σσ⁸)^{1/8}
    return min(1.05 * s.max(), np.sum(s**8) ** 0.125)
  raise AssertionError(normalization)


def _aol_reference(x, table):
  """Polar-like factor of ``DX``: ``D = diag(Σ_j |XXᵀ|_ij)^{-1/2}`` on the short side."""
  transposed = x.shape[0] > x.shape[1]
  y = x.T if transposed else x
  y = y / np.sqrt(np.abs(y @ y.T).sum(axis=1))[:, None]
  u, s, vt = np.linalg.svd(y, full_matrices=False)
  out = (u * _f(s, table)) @ vt
  return (out.T if transposed else out), s


def _close(actual, expected, tol):
  actual = np.asarray(actual, np.float64)
  err = np.max(np.abs(actual - expected))
  assert err <= tol * max(1.0, np.max(np.abs(expected))), err


# ------------------------------------------ (a) induced scalar maps, any steps

SPECTRA = {
    # spectral normalization takes the (Σσ⁸)^{1/8} cap here ...
    "geometric": lambda k: np.geomspace(1.0, 1e-3, k),
    # ... and 1.05·σ₁ here (a repeated top singular value).
    "flat_top": lambda k: np.concatenate([[1.0] * 3, np.geomspace(0.5, 1e-3, k - 3)]),
}


@pytest.mark.parametrize("steps", (3, 8))
@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
@pytest.mark.parametrize("normalization", ("frobenius", "spectral", "schatten4"))
@pytest.mark.parametrize("spectrum", SPECTRA)
def test_scalar_normalizations_follow_their_scalar_map(normalization, schedule, steps,
                                                       spectrum):
  rng = np.random.default_rng(steps * 7 + len(schedule))
  u, s, v, x = _matrix(rng, 16, 40, SPECTRA[spectrum](16))
  table = _table(schedule, steps)
  gains = _f(s / _normalizer(s, normalization, schedule), table)
  out = np.asarray(optax_muon.orthogonalize(
      jnp.asarray(x, jnp.float32), schedule=schedule, steps=steps,
      normalization=normalization), np.float64)
  # Output singular values (numpy SVD of the output) = f(σ / c(X)) ...
  np.testing.assert_allclose(np.linalg.svd(out, compute_uv=False),
                             np.sort(np.abs(gains))[::-1], atol=3e-4)
  # ... on the input's own singular vectors.
  _close(out, (u * gains) @ v.T, 3e-4)


@pytest.mark.parametrize("steps", (3, 4, 8))
@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
@pytest.mark.parametrize("shape", ((20, 48), (48, 20)), ids=str)
def test_aol_is_the_scalar_map_of_the_row_scaled_input(schedule, steps, shape):
  rng = np.random.default_rng(steps)
  m, n = shape
  k = min(shape)
  _, _, _, x = _matrix(rng, m, n, np.geomspace(1.0, 1e-3, k))
  # unequal row (short-side) norms, so that D is far from a multiple of I
  scale = rng.uniform(0.1, 3.0, size=(m, 1)) if m < n else rng.uniform(0.1, 3.0, size=(1, n))
  x = x * scale
  table = _table(schedule, steps)
  expected, s_dx = _aol_reference(x, table)
  assert s_dx.max() <= 1 + 1e-12  # AOL bounds ‖DX‖₂ by 1 without any other normalization
  out = np.asarray(optax_muon.orthogonalize(jnp.asarray(x, jnp.float32), schedule=schedule,
                                            steps=steps, normalization="aol"), np.float64)
  _close(out, expected, 3e-4)
  np.testing.assert_allclose(np.linalg.svd(out, compute_uv=False),
                             np.sort(np.abs(_f(s_dx, table)))[::-1], atol=3e-4)
  # The reference can tell AOL from a scalar normalization: the polar factor of X
  # itself (Schatten-4 scaled) is measurably different.
  u, s, vt = np.linalg.svd(x, full_matrices=False)
  scalar = (u * _f(s / np.sum(s**4) ** 0.25, table)) @ vt
  assert np.max(np.abs(scalar - expected)) > 1e-2


# --------------------------------------------- (b) AOL / Schatten-4 vs optax


_FAST_COMPILE = {"xla_backend_optimization_level": 0,
                 "xla_llvm_disable_expensive_passes": True}


def _optax_ns(x, table, precond, dimension_numbers=None):
  fn = jax.jit(lambda x, t: optax.contrib._muon.orthogonalize_via_newton_schulz(
      x, t, len(table), preconditioning=precond, eps=1e-8,
      dimension_numbers=dimension_numbers), compiler_options=_FAST_COMPILE)
  return np.asarray(fn(x, jnp.asarray(table, jnp.float32)))


OPTAX_PRECOND = {"aol": "aol", "schatten4": "schatten"}


@pytest.mark.parametrize("normalization", ("aol", "schatten4"))
@pytest.mark.parametrize("schedule,steps", (("polar_express", 3), ("polar_express", 8),
                                            ("jordan", 4), ("nanogpt5", 7)))
@pytest.mark.parametrize("shape", ((24, 72), (40, 40), (72, 24)), ids=str)
def test_aol_and_schatten4_match_optax_on_ill_conditioned_inputs(normalization, schedule,
                                                                 steps, shape):
  rng = np.random.default_rng(11)
  # condition number 1e3: much worse and f32 rounding of the input itself (~1e-7‖X‖)
  # becomes a singular direction that 8 Polar Express steps lift to O(1e-5) output.
  *_, x = _matrix(rng, *shape, np.geomspace(1.0, 1e-3, min(shape)))
  x = jnp.asarray(x, jnp.float32)
  table = _table(schedule, steps)
  ref = _optax_ns(x, table, OPTAX_PRECOND[normalization])
  ours = optax_muon.orthogonalize(x, schedule=table, steps=steps,
                                  normalization=normalization, eps=1e-8)
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalization", ("aol", "schatten4"))
def test_aol_and_schatten4_match_optax_batched(normalization):
  # [heads, fan_in, fan_out] with the batch axis first, named by dimension numbers.
  x = jnp.asarray(np.random.default_rng(5).standard_normal((3, 24, 40)), jnp.float32)
  dims = DN(reduction_axis=1, output_axis=2)
  table = _table("polar_express", 6)
  ref = _optax_ns(x, table, OPTAX_PRECOND[normalization], dims)
  ours = optax_muon.orthogonalize(x, schedule=table, steps=6, normalization=normalization,
                                  eps=1e-8, dimension_numbers=dims)
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------- (c) bad input


def _message(fn) -> str:
  with pytest.raises(ValueError) as e:
    fn()
  return str(e.value)


ENTRY_POINTS = {
    "orthogonalize": lambda **kw: optax_muon.orthogonalize(jnp.ones((4, 6)), **kw),
    "newton_schulz": lambda **kw: optax_muon.newton_schulz(**kw),
    # muon validates when its state is built
    "muon": lambda **kw: optax_muon.muon(
        1e-2, **{("ns_" + k if k in ("schedule", "steps") else k): v for k, v in kw.items()}
    ).init({"w": jnp.ones((4, 6))}),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_unknown_schedule_names_every_valid_schedule(entry):
  msg = _message(lambda: ENTRY_POINTS[entry](schedule="newton"))
  assert "newton" in msg
  for name in ("jordan", "polar_express", "nanogpt5", "dion"):
    assert name in msg, msg


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_unknown_normalization_names_every_valid_normalization(entry):
  msg = _message(lambda: ENTRY_POINTS[entry](normalization="svd"))
  assert "svd" in msg
  for name in NORMS:
    assert name in msg, msg


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("steps", (0, -3, 2.5))
def test_bad_step_counts_name_the_valid_range(entry, steps):
  msg = _message(lambda: ENTRY_POINTS[entry](steps=steps))
  assert ">= 1" in msg and "integer" in msg, msg


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("table", (np.ones((2, 2)), np.ones((2, 3, 3)), np.ones((0, 3)),
                                   np.ones(4)), ids=("2x2", "2x3x3", "0x3", "4"))
def test_malformed_tables_name_the_valid_shapes_and_names(entry, table):
  msg = _message(lambda: ENTRY_POINTS[entry](schedule=table))
  assert "(n, 3)" in msg and "(3,)" in msg, msg
  for name in ("jordan", "polar_express", "nanogpt5"):
    assert name in msg, msg


def test_non_finite_table_is_rejected():
  assert "finite" in _message(lambda: optax_muon.orthogonalize(
      jnp.ones((4, 6)), schedule=np.array([[1.0, np.nan, 0.0]])))


# ------------------------------------- (d) failure thresholds, measured through the library


def _bisect_threshold(table, nu, level):
  """First σ/‖X‖_F where the hand-written map reaches ``level`` (log grid + bisection)."""
  grid = np.geomspace(1e-8, 1.0, 4001)
  i = int(np.argmax(_f(grid / nu, table) >= level))
  lo, hi = grid[i - 1], grid[i]
  for _ in range(60):
    mid = math.sqrt(lo * hi)
    lo, hi = (lo, mid) if _f(mid / nu, table) >= level else (mid, hi)
  return hi


def _measured_threshold(schedule, steps, level, n=96, m=192):
  """First σ/‖X‖_F at which ``orthogonalize`` lifts a singular direction to ``level``:
  the gains uᵢᵀ O vᵢ of a matrix with known, log-spaced singular values, interpolated."""
  rng = np.random.default_rng(0)
  s = np.geomspace(1e-6, 1.0, n)
  u, s, v, x = _matrix(rng, n, m, s)
  out = np.asarray(optax_muon.orthogonalize(jnp.asarray(x, jnp.float32), schedule=schedule,
                                            steps=steps), np.float64)
  gain = np.einsum("ik,ij,jk->k", u, out, v)
  sn = s / np.sqrt(np.sum(s**2))
  order = np.argsort(sn)
  sn, gain = sn[order], gain[order]
  j = int(np.argmax(gain >= level))
  assert 0 < j, "the grid must start below the threshold"
  t = (level - gain[j - 1]) / (gain[j] - gain[j - 1])
  return float(np.exp(np.log(sn[j - 1]) + t * (np.log(sn[j]) - np.log(sn[j - 1]))))


@pytest.mark.parametrize("schedule,steps", [("jordan", 5), ("jordan", 3), ("nanogpt5", 4)])
@pytest.mark.parametrize("level", (0.5, 0.9))
def test_orthogonalize_lifts_small_directions_where_the_written_map_says(schedule, steps,
                                                                          level):
  # The threshold the iteration actually has (measured on its output) agrees with a
  # bisection on the hand-written map, and with the library's own ns_failure_threshold.
  expected = _bisect_threshold(_table(schedule, steps), NU[schedule], level)
  assert _measured_threshold(schedule, steps, level) == pytest.approx(expected, rel=0.03)
  nu = NU[schedule]
  assert nu * omd.ns_failure_threshold(schedule, steps, level) == pytest.approx(
      expected, rel=1e-3)


# ------------------------------------------- the captured momentum matrices


SAMPLES = (pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "data"
           / "momentum_samples.npz")


def test_committed_momentum_samples_are_well_formed():
  # The real Muon momentum matrices the Newton–Schulz benchmark reads: plain numpy data.
  assert SAMPLES.exists() and SAMPLES.stat().st_size < 6 * 2**20
  with np.load(SAMPLES) as f:
    meta = json.loads(str(f["meta"]))
    mats = {k: f[k] for k in meta["matrices"]}
  assert {m["position"] for m in meta["matrices"].values()} == {"first", "middle", "last"}
  for key, x in mats.items():
    assert x.dtype == np.float32 and list(x.shape) == meta["matrices"][key]["shape"]
    assert np.all(np.isfinite(x)) and np.linalg.norm(x) > 0
    assert meta["matrices"][key]["step"] == meta["run"]["steps"]
