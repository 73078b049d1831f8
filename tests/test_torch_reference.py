"""``optax_muon`` against stored ``torch.optim.Muon`` vectors (torch 2.13.0, CPU).

See ``tests/reference/README.md`` for the key layout and torch's semantics:
EMA momentum ``buf = μ·buf + (1−μ)·g``, Nesterov ``(1−μ)·g + μ·buf``, NS in
bfloat16 with Frobenius normalization (eps 1e-7), weights ``[out, in]`` (the
transpose of a Flax kernel), decay ``p·(1 − lr·wd)`` before ``p − adj_lr·O``,
``adjust_lr_fn="original"`` = ``sqrt(max(1, out/in))`` (our ``scale="jordan"``),
``"match_rms_adamw"`` = ``0.2·sqrt(max(out, in))`` (our ``scale="moonlight"``).
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_muon
from optax_muon import MuonDimensionNumbers as DN
from optax_muon._src.momentum import MomentumState
from optax_muon._src.spectral_scale import scale_factor

VECTORS = pathlib.Path(__file__).parent / "reference" / "torch_muon_vectors.npz"
NS_NAMES = ("32x64", "64x32", "48x48", "16x8")
CASE_SHAPES = ("32x64", "64x32", "48x48")
SETTINGS = ("a", "b", "c")
ADJUST_TO_SCALE = {"original": "jordan", "match_rms_adamw": "moonlight"}


@pytest.fixture(scope="module")
def vectors():
  with np.load(VECTORS) as d:
    return {k: d[k] for k in d.files}


def _rel_fro(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_reference_file_metadata(vectors):
  meta = json.loads(str(vectors["meta"]))
  assert meta["ns_dtype"] == "bfloat16"
  assert meta["ns_steps"] == 5 and meta["eps"] == 1e-7
  np.testing.assert_array_equal(meta["ns_coefficients"], optax_muon.ns_coefficients("jordan", 1)[0])
  assert len(vectors) == 79


# ------------------------------------------------------------ Newton–Schulz


@pytest.mark.parametrize("name", NS_NAMES)
def test_ns_float32_matches_float64_copy(vectors, name):
  x = vectors[f"ns_{name}_in"]
  out = optax_muon.orthogonalize(jnp.asarray(x), eps=1e-7)
  assert _rel_fro(out, vectors[f"ns_{name}_out_f64"]) <= 1e-4


@pytest.mark.parametrize("name", NS_NAMES)
def test_ns_bfloat16_matches_torch(vectors, name):
  """torch's bf16 NS is 1.3–1.7e-2 from exact; ours must be as close to it.

  Currently fails (~6e-2): see the report on bf16 rounding in
  ``orthogonalize_matrices``.
  """
  x = vectors[f"ns_{name}_in"]
  out = optax_muon.orthogonalize(jnp.asarray(x), eps=1e-7, compute_dtype=jnp.bfloat16)
  assert out.dtype == jnp.float32
  out = np.asarray(out)
  assert np.all(np.isfinite(out))
  err_torch = _rel_fro(out, vectors[f"ns_{name}_out"])
  err_exact = _rel_fro(out, vectors[f"ns_{name}_out_f64"])
  assert err_torch <= 3e-2 and err_exact <= 3e-2, (err_torch, err_exact)


def _rank4_projectors(x):
  u, _, vt = np.linalg.svd(np.asarray(x, np.float64))
  return u[:, :4] @ u[:, :4].T, vt[:4].T @ vt[:4]


@pytest.mark.parametrize("compute_dtype", (None, jnp.bfloat16), ids=("f32", "bf16"))
def test_ns_lowrank_within_rank4_subspace(vectors, compute_dtype):
  x = vectors["ns_48x48_lowrank_in"]
  p, q = _rank4_projectors(x)
  out = np.asarray(optax_muon.orthogonalize(jnp.asarray(x), eps=1e-7,
                                            compute_dtype=compute_dtype), np.float64)
  assert np.all(np.isfinite(out))
  exact = p @ vectors["ns_48x48_lowrank_out_f64"].astype(np.float64) @ q
  torch = p @ vectors["ns_48x48_lowrank_out"].astype(np.float64) @ q
  assert _rel_fro(torch, exact) <= 1e-2  # the README's 5e-3, sanity of the data
  tol = 1e-4 if compute_dtype is None else 3e-2
  assert _rel_fro(p @ out @ q, exact) <= tol
  assert _rel_fro(p @ out @ q, torch) <= max(tol, 1e-2)


# ---------------------------------------------------------------- optimizer


def _case(vectors, shape, setting):
  key = f"case_{shape}_{setting}"
  meta = json.loads(str(vectors[f"{key}_meta"]))
  return meta, {k: vectors[f"{key}_{k}"] for k in
                ("p0", "grads", "params", "bufs", "updates", "params_f64")}


def _run_ours(meta, case, compute_dtype):
  """Runs our Muon on the Flax layout ``[in, out]`` (torch's arrays transposed)."""
  tx = optax_muon.muon(
      meta["lr"], beta=meta["momentum"], momentum="ema", nesterov=meta["nesterov"],
      scale=ADJUST_TO_SCALE[meta["adjust_lr_fn"]], rms=0.2,
      weight_decay=meta["weight_decay"], compute_dtype=compute_dtype, ns_eps=meta["eps"],
      ns_steps=meta["ns_steps"], ns_schedule="jordan", dimension_numbers=DN(0, 1))
  np.testing.assert_array_equal(meta["ns_coefficients"],
                                optax_muon.ns_coefficients("jordan", 1)[0])
  params = {"w": jnp.asarray(case["p0"].T)}
  state = tx.init(params)
  traj, bufs = [], []
  for g in case["grads"]:
    updates, state = tx.update({"w": jnp.asarray(g.T)}, state, params)
    params = optax.apply_updates(params, updates)
    traj.append(np.asarray(params["w"]).T)  # back to torch layout
    is_mom = lambda s: isinstance(s, MomentumState)
    moms = [s for s in jax.tree.leaves(state, is_leaf=is_mom) if is_mom(s)]
    assert len(moms) == 1
    (buf,) = moms[0].mu.values  # one group of one matrix: [1, in, out]
    bufs.append(np.asarray(buf[0]).T)
  return np.stack(traj), np.stack(bufs)


def _deltas(p0, traj):
  full = np.concatenate([p0[None], traj], axis=0).astype(np.float64)
  return np.diff(full, axis=0)


CASES = [(s, k) for s in CASE_SHAPES for k in SETTINGS]


@pytest.mark.parametrize("shape,setting", CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_scale_matches_torch_adjusted_lr(vectors, shape, setting):
  meta, _ = _case(vectors, shape, setting)
  out, fan_in = meta["shape"]  # torch [out, in]
  # our layout is [in, out]: fan_in = torch shape[1], fan_out = torch shape[0]
  factor = scale_factor(ADJUST_TO_SCALE[meta["adjust_lr_fn"]], fan_in, out, 0.2)
  np.testing.assert_allclose(meta["lr"] * factor, meta["adjusted_lr"], rtol=1e-12)


@pytest.mark.parametrize("shape,setting", CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_muon_float32_matches_float64_copy_and_torch_momentum(vectors, shape, setting):
  """Semantics check without bf16 noise: f32 NS against the f64 NumPy copy."""
  meta, case = _case(vectors, shape, setting)
  traj, bufs = _run_ours(meta, case, compute_dtype=None)
  # torch's momentum buffers are pure float32 arithmetic
  np.testing.assert_allclose(bufs, case["bufs"], rtol=1e-5, atol=1e-6)
  d_ours, d_ref = _deltas(case["p0"], traj), _deltas(case["p0"], case["params_f64"])
  for t in range(len(d_ref)):
    # params_f64 is stored as float32: its deltas carry ~1e-7 rounding of O(1) params
    assert _rel_fro(d_ours[t], d_ref[t]) <= 1e-3, t
  np.testing.assert_allclose(traj, case["params_f64"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape,setting", CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_muon_bfloat16_matches_torch(vectors, shape, setting):
  """Per-step deltas within 3e-2 of torch's (torch's own bf16 error: 1.5–1.8e-2).

  Currently fails (~6e-2) for the same reason as ``test_ns_bfloat16_matches_torch``.
  """
  meta, case = _case(vectors, shape, setting)
  traj, bufs = _run_ours(meta, case, compute_dtype=jnp.bfloat16)
  assert np.all(np.isfinite(traj))
  np.testing.assert_allclose(bufs, case["bufs"], rtol=1e-5, atol=1e-6)
  d_ours, d_torch = _deltas(case["p0"], traj), _deltas(case["p0"], case["params"])
  errs = [_rel_fro(d_ours[t], d_torch[t]) for t in range(len(d_torch))]
  assert max(errs) <= 3e-2, errs
  # README: compare params with atol ≈ 0.05·adj_lr·step_index, not rtol.
  for t in range(len(d_torch)):
    atol = 0.05 * meta["adjusted_lr"] * (t + 1)
    np.testing.assert_allclose(traj[t], case["params"][t], atol=atol, rtol=0)
