"""Spectral diagnostics, the in-optimizer probes and the NS recipe, against exact references."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_muon
from optax_muon import diagnostics as omd


def _rng(seed=0):
  return np.random.default_rng(seed)


def _with_spectrum(m, n, sigma, seed=0):
  """An ``m×n`` matrix with the given singular values."""
  rng = _rng(seed)
  u, _ = np.linalg.qr(rng.standard_normal((m, m)))
  v, _ = np.linalg.qr(rng.standard_normal((n, n)))
  r = len(sigma)
  return (u[:, :r] * np.asarray(sigma)) @ v[:, :r].T


# ---------------------------------------------------------------- statistics


def test_svd_entropy_orthogonal_is_one_and_rank_one_is_zero():
  q, _ = np.linalg.qr(_rng().standard_normal((12, 12)))
  rank1 = np.outer(_rng(1).standard_normal(12), _rng(2).standard_normal(9))
  ent_q = omd.svd_entropy(omd.singular_values(jnp.asarray(q, jnp.float32)))
  ent_1 = omd.svd_entropy(omd.singular_values(jnp.asarray(rank1, jnp.float32)))
  np.testing.assert_allclose(ent_q, 1.0, atol=1e-5)
  np.testing.assert_allclose(ent_1, 0.0, atol=1e-3)


def test_quantiles_and_spectrum_stats_match_numpy_svd():
  sigma = np.geomspace(1.0, 1e-3, 20)
  x = _with_spectrum(32, 20, sigma, seed=3).astype(np.float32)
  st = jax.jit(omd.momentum_spectrum)(jnp.asarray(x))
  s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
  s = s / np.linalg.norm(x.astype(np.float64))
  r = s.size
  for q in omd.QUANTILES:
    ref = s[math.ceil(q * r) - 1]
    np.testing.assert_allclose(st[f"sigma_q{int(round(q * 100)):02d}"][0], ref, rtol=2e-3)
  np.testing.assert_allclose(st["sigma_1"][0], s[0], rtol=1e-4)
  np.testing.assert_allclose(st["sigma_ratio_12"][0], s[0] / s[1], rtol=1e-4)
  np.testing.assert_allclose(st["stable_rank"][0], 1 / s[0] ** 2, rtol=1e-4)
  np.testing.assert_allclose(st["spike_share"][0], s[0] ** 2, rtol=1e-4)
  p = s**2 / np.sum(s**2)
  np.testing.assert_allclose(st["svd_entropy"][0], -np.sum(p * np.log(p)) / np.log(r), rtol=1e-4)
  thr = optax_muon.ns_failure_threshold("jordan", 5, 0.5)
  np.testing.assert_allclose(st["frac_below"][0], np.mean(s < thr), atol=1e-6)
  f = optax_muon.ns_scalar_map(s, "jordan", 5)
  np.testing.assert_allclose(st["descent_retained"][0], np.sum(s * f) / np.sum(s), rtol=1e-4)
  # The Gram route agrees where σ is not tiny relative to σ₁.
  gram = omd.momentum_spectrum(jnp.asarray(x), method="gram")
  np.testing.assert_allclose(gram["sigma_q50"][0], st["sigma_q50"][0], rtol=1e-2)


def test_quantile_convention_descending_rank():
  # σ sorted descending: q=0.1 is a large value, q=0.9 a small one; index ⌈q·r⌉.
  assert [omd.QUANTILES[0], omd.QUANTILES[-1]] == [0.1, 0.9]
  from optax_muon.diagnostics.statistics import quantile_index
  assert [quantile_index(q, 10) for q in omd.QUANTILES] == [0, 2, 4, 7, 8]
  assert quantile_index(0.1, 4) == 0 and quantile_index(0.9, 4) == 3


@pytest.mark.parametrize("kind", ["random", "magnitudes", "rank1", "coherent", "tall"])
def test_row_factor_identity(kind):
  rng = _rng(7)
  if kind == "random":
    w = rng.standard_normal((24, 16))
  elif kind == "magnitudes":  # very different per-neuron (column) norms
    w = rng.standard_normal((24, 16)) * np.geomspace(10.0, 0.01, 16)
  elif kind == "rank1":
    w = np.outer(rng.standard_normal(24), rng.standard_normal(16))
  elif kind == "coherent":  # all output vectors nearly equal: coherence -> sqrt(fan_out)
    w = np.repeat(rng.standard_normal((24, 1)), 16, axis=1) + 1e-3 * rng.standard_normal((24, 16))
  else:
    w = rng.standard_normal((64, 8))
  w = w.astype(np.float32)
  f = omd.row_factors(jnp.asarray(w))
  ref = np.linalg.norm(w.astype(np.float64), 2)
  np.testing.assert_allclose(f["row_magnitude"][0] * f["row_coherence"][0], ref, rtol=1e-4)
  # The factors as docs/algorithms.md defines them (Flax: neuron = column, norm over axis 0).
  r = np.linalg.norm(w.astype(np.float64), axis=0)
  d = w / r
  c = d.T @ d
  p = np.diag(r / r.max())
  np.testing.assert_allclose(f["row_magnitude"][0], r.max(), rtol=1e-5)
  np.testing.assert_allclose(f["row_coherence"][0],
                             np.sqrt(np.linalg.eigvalsh(p @ c @ p)[-1]), rtol=1e-4)
  assert f["row_coherence"][0] >= 1 - 1e-4
  assert f["row_coherence"][0] <= math.sqrt(w.shape[1]) * (1 + 1e-4)


def test_power_iteration_within_one_percent_after_warm_start():
  sigma = np.linspace(2.0, 0.5, 16) ** 2  # top gap 1.5%·…: needs a few rounds
  w = jnp.asarray(_with_spectrum(32, 16, sigma, seed=5), jnp.float32)
  exact = float(np.linalg.norm(np.asarray(w, np.float64), 2))
  est, v = omd.weight_spectral_norm(w, iters=4)
  for _ in range(3):  # warm-started calls, as the probe makes them
    est, v = jax.jit(omd.weight_spectral_norm)(w, v)
  assert abs(float(est[0]) - exact) / exact < 0.01
  svd, _ = omd.weight_spectral_norm(w, exact=True)
  np.testing.assert_allclose(svd[0], exact, rtol=1e-5)


def test_failure_threshold_table_of_algorithms_md():
  table = {("jordan", 5): (2.07e-4, 1.07e-3, 2.13e-3),
           ("nanogpt5", 5): (2.03e-4, 1.06e-3, 2.16e-3),
           ("polar_express", 5): (1.04e-4, 5.4e-4, 1.1e-3),
           ("polar_express", 8): (1.59e-5, 8.5e-5, 2.1e-4)}
  for (sched, steps), refs in table.items():
    for level, ref in zip((0.1, 0.5, 0.9), refs):
      got = omd.ns_failure_threshold(sched, steps, level)
      assert abs(got - ref) / ref < 0.05, (sched, steps, level, got, ref)


def test_orthogonality_error_short_side():
  q, _ = np.linalg.qr(_rng().standard_normal((20, 6)))
  e = omd.orthogonality_error(jnp.asarray(q * np.array([1, 1, 1, 1, 1, 1.2]), jnp.float32))
  np.testing.assert_allclose(e["ortho_error"][0], 0.44, atol=1e-4)
  e_t = omd.orthogonality_error(jnp.asarray(q.T, jnp.float32))  # wide: same short side
  assert float(e_t["ortho_error"][0]) < 1e-5


def test_grouping_from_paths():
  assert omd.matrix_group("layers/3/attn/q/kernel", n_layers=4) == "q/d3"
  assert omd.matrix_group("layers/0/mlp/down/kernel", n_layers=8) == "down/d0"
  assert omd.matrix_group("layers/7/mlp/gate/kernel", n_layers=8) == "gate/d3"
  assert omd.matrix_group("layers/attn/v/kernel", 5, batch=6) == "v/d3"  # scanned
  st = {"layers/attn/k/kernel": {"x": np.arange(4.0)},
        "layers/mlp/up/kernel": {"x": np.ones(4)}}
  g = omd.group_stats(st, buckets=2)
  assert g == {"k/d0": {"x": 0.5}, "k/d1": {"x": 2.5}, "up/d0": {"x": 1.0}, "up/d1": {"x": 1.0}}


def test_attention_logit_summary():
  s = jax.jit(omd.attention_logit_summary)({"layers_0": jnp.array([1.0, 5.0]),
                                            "layers_1": jnp.array([2.0, 2.0])})
  assert float(s["max_logit/all"]) == 5.0 and float(s["max_logit_mean/layers_1"]) == 2.0


# ---------------------------------------------------------------- probes in the aliases


def _params(scanned=False):
  k = jax.random.split(jax.random.key(0), 8)
  if scanned:
    layers = {"attn": {"q": {"kernel": jax.random.normal(k[0], (3, 16, 16)) / 4}},
              "mlp": {"down": {"kernel": jax.random.normal(k[1], (3, 32, 16)) / 6}}}
  else:
    layers = {"0": {"attn": {"q": {"kernel": jax.random.normal(k[0], (16, 16)) / 4}}},
              "1": {"mlp": {"down": {"kernel": jax.random.normal(k[1], (32, 16)) / 6}}}}
  return {"embed": {"embedding": jax.random.normal(k[7], (10, 16))}, "layers": layers}


def _grads(params, seed):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten([jax.random.normal(kk, x.shape) for kk, x in zip(keys, leaves)])


def _run(tx, params, steps, states=None):
  state = tx.init(params)
  step = jax.jit(tx.update)
  outs = []
  for t in range(steps):
    u, state = step(_grads(params, t), state, params)
    outs.append(u)
    if states is not None:
      states.append(state)
  return outs, state


def test_diagnostics_off_gives_identical_hlo():
  params = _params()
  grads = _grads(params, 0)

  def hlo(tx):
    return jax.jit(tx.update).lower(grads, tx.init(params), params).as_text()

  base = hlo(optax_muon.muon(1e-3))
  assert hlo(optax_muon.muon(1e-3, diagnostics=None)) == base

  # The same recipe assembled by hand from the public transforms, with no
  # diagnostics code anywhere: the alias must compile to exactly this.
  matrix_chain = optax.chain(
      optax.chain(optax_muon.muon_momentum(0.95, nesterov=True, form="sum"),
                  optax_muon.newton_schulz("jordan", 5, method="auto"),
                  optax_muon.spectral_scale("moonlight", rms=0.2)),
      optax.scale_by_learning_rate(1e-3),
      optax_muon.decoupled_weight_decay(0.1, 1e-3))
  adam = optax.chain(optax.scale_by_adam(b1=0.9, b2=0.95, eps=1e-8),
                     optax.scale_by_learning_rate(1e-3),
                     optax_muon.decoupled_weight_decay(0.1, 1e-3))
  by_hand = optax_muon.matrix_partition(matrix_chain, adam, stack_others=True,
                                        skip_nonfinite=True)
  assert hlo(by_hand) == base
  assert hlo(optax_muon.muown(1e-3, diagnostics=None)) == hlo(optax_muon.muown(1e-3))
  for op in ("svd", "eigh", "gesdd", "syevd"):
    assert op not in base.lower()
  on = hlo(optax_muon.muon(1e-3, diagnostics=5))
  assert on != base and ("svd" in on.lower() or "gesdd" in on.lower())


@pytest.mark.parametrize("alias", ["muon", "muon_plus_plus", "muown"])
def test_probe_under_jit_in_aliases(alias):
  params = _params()
  make = getattr(optax_muon, alias)
  plain, _ = _run(make(1e-3), params, 2)
  states = []
  probed, state = _run(make(1e-3, diagnostics=omd.DiagnosticsConfig(every=1)), params, 2, states)
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(probed)):  # probes pass through
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  st = omd.read(state)
  assert int(st.pop("__step__")["step"]) == 2
  assert sorted(st) == ["layers/0/attn/q/kernel", "layers/1/mlp/down/kernel"]
  q = st["layers/0/attn/q/kernel"]
  for key in ("sigma_q50", "svd_entropy", "weight_norm", "row_coherence", "ortho_error",
              "update_rms_ratio"):
    assert q[key].shape == (1,) and bool(jnp.isfinite(q[key]).all()), key
  w = np.asarray(params["layers"]["0"]["attn"]["q"]["kernel"], np.float64)
  if alias != "muown":  # muown's weights move by the first step: compare loosely
    np.testing.assert_allclose(q["weight_norm"][0], np.linalg.norm(w, 2), rtol=0.05)
  if alias == "muon_plus_plus":  # Polar Express × 6 and exact spectral normalization
    assert float(q["ortho_error"][0]) < 0.05
    np.testing.assert_allclose(q["update_rms_ratio"][0], 1.0, atol=0.05)
  else:  # Jordan × 5 lands singular values in [0.68, 1.13]
    assert 0.0 < float(q["ortho_error"][0]) < 0.6
    assert 0.6 < float(q["update_rms_ratio"][0]) < 1.15
  if alias == "muon":
    # Sum-form Nesterov: the first NS input is (1+β)G, so its normalized spectrum is G's.
    first = omd.read(states[0])["layers/1/mlp/down/kernel"]
    x = np.asarray(_grads(params, 0)["layers"]["1"]["mlp"]["down"]["kernel"], np.float64)
    s = np.linalg.svd(x, compute_uv=False) / np.linalg.norm(x)
    np.testing.assert_allclose(first["sigma_q50"][0], s[math.ceil(0.5 * s.size) - 1], rtol=1e-3)


def test_probe_gating_and_which_and_scanned():
  params = _params(scanned=True)
  cfg = omd.DiagnosticsConfig(every=3, which=r"attn/q")
  tx = optax_muon.muon(1e-3, diagnostics=cfg)
  state = tx.init(params)
  step = jax.jit(tx.update)
  snaps = []
  for t in range(4):
    _, state = step(_grads(params, t), state, params)
    snaps.append(omd.read(state))
  assert [int(s["__step__"]["step"]) for s in snaps] == [0, 0, 3, 3]
  assert list(snaps[-1]) == ["__step__", "layers/attn/q/kernel"]  # only the selected matrix
  q3, q4 = snaps[2]["layers/attn/q/kernel"], snaps[3]["layers/attn/q/kernel"]
  assert q3["sigma_q50"].shape == (3,)  # one value per stacked layer
  np.testing.assert_array_equal(q3["sigma_q50"], q4["sigma_q50"])  # not recomputed on step 4
  assert float(jnp.min(snaps[1]["layers/attn/q/kernel"]["sigma_1"])) == 0.0


def test_read_through_outer_chain_and_train_diagnostics():
  from train import spectral_metrics as train_diag
  from train.state import TrainState
  params = _params()
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax_muon.muon(1e-3, diagnostics=omd.DiagnosticsConfig(every=1,
                                                                           method="gram")))
  _, state = _run(tx, params, 1)
  row = train_diag.compute(TrainState(jnp.int32(1), params, state), None, buckets=2)
  assert row["spec/recorded_step"] == 1.0
  assert {"spec/q/d0/sigma_q50", "spec/down/d1/row_coherence",
          "spec/q/d0/update_rms_ratio"} <= set(row)
  adam_row = train_diag.compute(TrainState(jnp.int32(1), params, optax.adam(1e-3).init(params)),
                                None, buckets=2)
  w = np.asarray(params["layers"]["1"]["mlp"]["down"]["kernel"], np.float64)
  np.testing.assert_allclose(adam_row["spec/down/d1/weight_norm"], np.linalg.norm(w, 2),
                             rtol=1e-3)


def test_plot_spectra(tmp_path):
  from train import plot_spectra
  rows = [{"step": s, "loss": 1.0, "spec/q/d0/sigma_q50": 0.1 / s, "spec/q/d0/sigma_q25": 0.2 / s,
           "spec/q/d0/sigma_q75": 0.05 / s, "spec/q/d0/weight_norm": 1.0 + s,
           "spec/q/d0/row_magnitude": 1.0, "spec/q/d0/row_coherence": 1.5,
           "max_logit/layers_0": 3.0} for s in (10, 20)]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  out = plot_spectra.plot(str(tmp_path))
  assert os.path.getsize(out) > 1000


# ---------------------------------------------------------------- the recipe


def test_fit_spectral_power_law_recovers_exponent():
  sizes = np.array([1e5, 4e5, 1.6e6, 6.4e6])
  noise = np.exp(_rng(3).normal(0, 0.01, sizes.size))
  fit = omd.fit_spectral_power_law(sizes, 0.3 * sizes ** -0.46 * noise)
  assert abs(fit.alpha - 0.46) < 0.02 and abs(fit.prefactor / 0.3 - 1) < 0.2
  fits = omd.fit_spectral_power_law(sizes[:2], {"a": 2 * sizes[:2] ** -0.25,
                                                "b": 2 * sizes[:2] ** -0.96})
  assert round(fits["a"].alpha, 6) == 0.25 and round(fits["b"].alpha, 6) == 0.96


def test_recommend_cheaper_for_large_median_stronger_for_small():
  sizes = [1e6, 4e6]
  medians = {"q/d0": [2e-2, 1.4e-2],  # shallow: large predicted median
             "down/d3": [2e-3, 5e-4]}  # steep: small predicted median
  rec = omd.recommend_ns_schedule(sizes, medians, 6.4e7, n_layers=4)
  big, small = rec.groups["q/d0"], rec.groups["down/d3"]
  assert big["predicted_median"] > small["predicted_median"]
  assert big["relative_cost"] < small["relative_cost"]
  assert big["threshold"] <= big["predicted_median"]
  assert small["threshold"] < big["threshold"]
  assert rec.ns_steps[big["regex"]] == big["steps"]
  assert rec.ns_schedule[small["regex"]] == small["schedule"]
  assert "layers/0/attn/q/kernel" and __import__("re").search(big["regex"],
                                                              "layers/0/attn/q/kernel")
  assert not __import__("re").search(big["regex"], "layers/3/attn/q/kernel")
  # Nothing qualifies: the strongest candidate, flagged.
  rec2 = omd.recommend_ns_schedule(sizes, {"o/d3": [1e-4, 1e-5]}, 1e9, n_layers=4)
  assert not rec2.groups["o/d3"]["ok"]


def test_candidates_from_rows():
  rows = [{"schedule": "jordan", "normalization": "frobenius", "steps": 4,
           "threshold": {"0.5": 3e-3, "0.9": None}, "relative_cost": 0.5},
          {"schedule": "polar_express", "normalization": "frobenius", "steps": 7,
           "threshold": {"0.5": 1e-4}, "relative_cost": 1.4}]
  cands = omd.candidates_from_rows(rows)
  assert [c.steps for c in cands] == [4, 7] and cands[0].threshold == {0.5: 3e-3}
  with pytest.raises(ValueError, match="row 1"):
    omd.candidates_from_rows([rows[0], {"schedule": "broken"}])
  rec = omd.recommend_ns_schedule([1e6, 4e6], {"q/d0": [1e-2, 1e-2], "k/d0": [1e-3, 5e-4]},
                                  1e7, candidates=cands)
  assert rec.groups["q/d0"]["steps"] == 4 and rec.groups["k/d0"]["steps"] == 7


def test_recipe_is_accepted_by_muon():
  params = _params()
  rec = omd.recommend_ns_schedule([1e6, 4e6], {"q/d0": [2e-2, 1.4e-2], "down/d1": [2e-3, 5e-4]},
                                  6.4e7, n_layers=2, buckets=2, default_schedule="jordan",
                                  default_steps=5)
  assert list(rec.ns_schedule)[-1] == "" and list(rec.ns_steps)[-1] == ""
  tx = optax_muon.muon(1e-3, ns_schedule=rec.ns_schedule, ns_steps=rec.ns_steps, diagnostics=1)
  u, state = jax.jit(tx.update)(_grads(params, 0), tx.init(params), params)
  assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(u))
  assert "layers/1/mlp/down/kernel" in omd.read(state)
  # Each leaf steps with its own recipe entry: the same update as that entry applied to all.
  q, down = ("layers", "0", "attn", "q", "kernel"), ("layers", "1", "mlp", "down", "kernel")
  get = lambda tree, path: functools.reduce(lambda t, k: t[k], path, tree)
  for path, schedule, steps in ((q, "polar_express", 3), (down, "jordan", 8)):
    whole = optax_muon.muon(1e-3, ns_schedule=schedule, ns_steps=steps)
    ref, _ = jax.jit(whole.update)(_grads(params, 0), whole.init(params), params)
    np.testing.assert_allclose(get(u, path), get(ref, path), rtol=1e-5, atol=1e-7)
  five = optax_muon.muon(1e-3)
  ref, _ = jax.jit(five.update)(_grads(params, 0), five.init(params), params)
  assert not np.allclose(get(u, q), get(ref, q), rtol=1e-3)


def test_probe_on_sharded_arrays_matches_unsharded():
  assert jax.device_count() == 8, "tests/conftest.py sets 8 CPU devices"
  from jax.sharding import NamedSharding, PartitionSpec as P
  mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
  params = _params()
  shard = lambda t: jax.tree.map(
      lambda x: jax.device_put(x, NamedSharding(mesh, P("x") if x.shape[0] % 8 == 0 else P())), t)
  tx = optax_muon.muon(1e-3, diagnostics=1)
  g = _grads(params, 0)
  _, ref = jax.jit(tx.update)(g, tx.init(params), params)
  sp = shard(params)
  _, got = jax.jit(tx.update)(shard(g), tx.init(sp), sp)
  ref, got = omd.read(ref), omd.read(got)
  for path in ("layers/0/attn/q/kernel", "layers/1/mlp/down/kernel"):
    for k in ("sigma_q50", "weight_norm", "row_coherence", "ortho_error"):
      np.testing.assert_allclose(got[path][k], ref[path][k], rtol=1e-4, atol=1e-6)


_MANY_STEPS_WITH_PROBES = """
import jax, jax.numpy as jnp, optax_muon
from optax_muon import diagnostics as omd
params = {f"l{i}": {"q": jnp.full((64, 64), 0.01), "up": jnp.full((64, 256), 0.01),
                    "down": jnp.full((256, 64), 0.01), "o": jnp.full((64, 128), 0.01)}
          for i in range(3)}
grads = jax.tree.map(lambda x: jax.random.normal(jax.random.key(0), x.shape), params)
for method in ("svd", "gram"):
  tx = optax_muon.muon(1e-3, diagnostics=omd.DiagnosticsConfig(every=1, method=method))
  state, step = tx.init(params), jax.jit(tx.update)
  for _ in range(300):
    u, state = step(grads, state, params)
    jax.block_until_ready(u)
print("finished")
"""


def test_probes_with_several_shape_groups_do_not_deadlock(tmp_path):
  # Batched LAPACK kernels (the probes' SVD / eigvalsh, one per shape group) wait on
  # XLA:CPU's shared thread pool; two at once deadlocked on 2 cores within 300 steps, every
  # time, before the probes chained them. Run in a subprocess so a hang fails, not stalls.
  import subprocess
  import sys

  script = tmp_path / "probes.py"
  script.write_text(_MANY_STEPS_WITH_PROBES)
  try:
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=240)
  except subprocess.TimeoutExpired:
    pytest.fail("300 jitted steps with spectral probes did not finish in 240 s (deadlock?)")
  assert out.returncode == 0 and "finished" in out.stdout, out.stderr[-2000:]
