"""Newton–Schulz variants (schedule × normalization × steps) against independent references.

Fills the gaps the other Newton–Schulz tests leave for the variant benchmark:

* every normalization's induced scalar map, at step counts other than 5 and
  for every schedule name, reproduces the iteration's output (exact numpy SVD,
  coefficients written out here, the Polar Express table from the paper);
* AOL and Schatten-4 match ``optax.contrib``'s orthogonalization on
  ill-conditioned inputs, Polar Express tables and batched layouts;
* bad names, step counts and tables name the valid choices;
* ``benchmarks/ns_variants.py``'s core functions run on a tiny configuration
  and measure thresholds that agree with a bisection on the hand-written map.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import optax_muon
from optax_muon import MuonDimensionNumbers as DN
from ns_tables import JORDAN as JORDAN_TRIPLE, NANOGPT5, POLAR_EXPRESS_8

JORDAN = (JORDAN_TRIPLE,)
PE_PUBLISHED = POLAR_EXPRESS_8
NU = {"jordan": 1.0, "polar_express": 1.01, "nanogpt5": 1.02, "dion": 1.0}
NORMS = ("frobenius", "spectral", "schatten4", "aol")
SCHEDULE_NAMES = ("jordan", "polar_express", "nanogpt5", "dion")
BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


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


# --------------------------------------------------- (d) the benchmark itself


@pytest.fixture(scope="module")
def bench():
  sys.path.insert(0, str(BENCH))
  try:
    spec = importlib.util.spec_from_file_location("ns_variants", BENCH / "ns_variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
  finally:
    sys.path.remove(str(BENCH))


def _bisect_threshold(table, nu, level):
  """First σ/‖X‖_F where the hand-written map reaches ``level`` (log grid + bisection)."""
  grid = np.geomspace(1e-8, 1.0, 4001)
  i = int(np.argmax(_f(grid / nu, table) >= level))
  lo, hi = grid[i - 1], grid[i]
  for _ in range(60):
    mid = math.sqrt(lo * hi)
    lo, hi = (lo, mid) if _f(mid / nu, table) >= level else (mid, hi)
  return hi


def test_benchmark_core_runs_on_a_tiny_config(bench):
  variants = [("jordan", "frobenius", 5), ("polar_express", "schatten4", 4),
              ("nanogpt5", "aol", 3)]
  records = bench.synthetic_inputs((32, 128), spectra=("loguniform", "power_1"))
  rng = np.random.default_rng(0)
  records.append(bench.with_svd("tall", rng.standard_normal((40, 24)) * np.geomspace(1, 1e-3, 24)))
  acc = bench.accuracy(records, variants)
  timing = bench.cost([(16, 48)], pairs=[(n, k) for _, n, k in variants], repeats=1,
                      check_schedules=("jordan",), min_sample_s=0.0)
  rows = bench.build_rows(variants, acc, None, records[:2], records[2:], timing, [(16, 48)])
  assert [(r["schedule"], r["normalization"], r["steps"]) for r in rows] == variants
  ref = rows[0]
  assert ref["relative_cost"] == pytest.approx(1.0)
  assert ref["flops"] == 5 * (4 * 16 * 16 * 48 + 2 * 16**3) + 3 * 16 * 48
  for r in rows:
    assert set(r["threshold"]) == {"0.1", "0.5", "0.9"}
    assert r["time_ms_f32"] > 0 and r["time_ms_bf16"] > 0
  # Jordan-5 frobenius: measured threshold (from the orthogonalized matrices) agrees
  # with an independent bisection on the hand-written quintic, and the SVD-based
  # gains reproduce f exactly (so the top-k polar error is max |f(σ) - 1|).
  for level in ("0.5", "0.9"):
    expected = _bisect_threshold(_table("jordan", 5), 1.0, float(level))
    assert ref["threshold"][level] == pytest.approx(expected, rel=0.03)
  s = records[0]["s"]
  sn = s / np.sqrt(np.sum(s**2))
  k = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), 0.9) + 1)
  top_err = np.max(np.abs(_f(sn[:k], _table("jordan", 5)) - 1))
  assert ref["synthetic"]["loguniform"]["polar_e90"] == pytest.approx(top_err, abs=2e-4)
  # Schatten-4 divides by less than ‖X‖_F: a lower threshold than the map's own.
  pe = rows[1]
  assert pe["threshold"]["0.5"] < pe["threshold_scalar_map"]["0.5"]
  assert pe["threshold"]["0.5"] == pytest.approx(pe["threshold_analytic"]["0.5"], rel=0.03)
  assert rows[2]["threshold_analytic"]["0.5"] is None  # AOL has no scalar map
  assert bench.headline(rows)["best"]["schedule"] in {"jordan", "polar_express", "nanogpt5"}


def test_pareto_front_and_crossing_helpers(bench):
  # (1, 3) is dominated by (1, 2); (3, 1) is not dominated.
  assert bench.pareto_front([1, 1, 2, 3], [3, 2, 2, 1]) == [1, 3]
  s = np.array([1e-4, 1e-3, 1e-2])
  value, flag = bench.crossing(s, np.array([0.0, 0.4, 0.8]), 0.6)
  assert flag == "ok" and value == pytest.approx(10 ** -2.5)
  assert bench.crossing(s, np.array([0.7, 0.8, 0.9]), 0.6) == (1e-4, "below_range")
  assert bench.crossing(s, np.array([0.1, 0.2, 0.3]), 0.6) == (math.inf, "never")


# ------------------------------------------- the captured momentum matrices


@pytest.fixture(scope="module")
def capture():
  sys.path.insert(0, str(BENCH))
  try:
    spec = importlib.util.spec_from_file_location("capture_momentum",
                                                  BENCH / "capture_momentum.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
  finally:
    sys.path.remove(str(BENCH))


def test_momentum_extraction_reads_the_muon_buffer(capture):
  # Sum-form momentum (the muon default): M = β·G₁ + G₂ after two steps. The
  # embedding goes to AdamW, whose own ``mu`` must not be picked up.
  rng = np.random.default_rng(0)
  params = {"embed": {"embedding": jnp.zeros((6, 4))},
            "layers": [{"attn": {"q": {"kernel": jnp.zeros((4, 8))}}}]}
  dims = {"embed": {"embedding": None},
          "layers": [{"attn": {"q": {"kernel": DN(0, 1)}}}]}
  tx = optax_muon.muon(1e-2, beta=0.95, momentum="sum", dimension_numbers=dims)
  state = tx.init(params)
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32),
                        params) for _ in range(2)]
  for g in grads:
    _, state = tx.update(g, state, params)
  buffers = capture.momentum_buffers(state)
  q = np.asarray(grads[0]["layers"][0]["attn"]["q"]["kernel"]) * 0.95 + np.asarray(
      grads[1]["layers"][0]["attn"]["q"]["kernel"])
  assert list(buffers) == [("layers", "0", "attn", "q", "kernel")]
  np.testing.assert_allclose(buffers[("layers", "0", "attn", "q", "kernel")], q, rtol=1e-6)
  picked = capture.select(buffers, n_layers=1)
  assert list(picked) == ["layers_0/q"] and picked["layers_0/q"][1]["kind"] == "q"


def test_committed_momentum_samples_are_well_formed(capture):
  path = capture.OUT
  if not path.exists():
    pytest.skip("benchmarks/data/momentum_samples.npz not generated")
  assert path.stat().st_size < 6 * 2**20
  mats, meta = capture.load(path)
  assert {m["position"] for m in meta["matrices"].values()} == {"first", "middle", "last"}
  for key, x in mats.items():
    assert x.dtype == np.float32 and list(x.shape) == meta["matrices"][key]["shape"]
    assert np.all(np.isfinite(x)) and np.linalg.norm(x) > 0
    assert meta["matrices"][key]["step"] == meta["run"]["steps"]
