"""``optax_muon.muon`` against ``optax.contrib.muon`` (the independent reference).

optax's Muon: EMA momentum with bias correction (and its own Nesterov form),
Newton–Schulz with the preset coefficients and ν = 1, width or consistent-RMS
scaling, ``add_decayed_weights`` before the learning rate, and AdamW (b2=0.999,
eps=1e-8, nesterov=nesterov, weight decay 0) for non-matrices. The mapping to
our arguments is in :func:`_ours`.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import optax_muon
from optax_muon import MuonDimensionNumbers as DN
from optax_muon._src import gram_newton_schulz

DION = ((4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012))
PRECONDITIONING = {"frobenius": "frobenius", "aol": "aol", "schatten": "schatten4"}
LR = 0.05
STEPS = 4
SHAPES = {"w1": (12, 8), "w2": (8, 12), "w3": (10, 10)}  # tall, wide, square


def _params_and_grads(seed=0):
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  params = {k: f(*s) for k, s in SHAPES.items()}
  params["b"] = f(8)
  grads = [{k: f(*v.shape) for k, v in params.items()} for _ in range(STEPS)]
  return params, grads


def _optax(cfg):
  coeffs, precond, rms, nesterov, adaptive, wd = cfg
  return optax.contrib.muon(
      LR, ns_coeffs=coeffs, ns_steps=5, eps=1e-8, weight_decay=wd, nesterov=nesterov,
      adaptive=adaptive, preconditioning=precond, consistent_rms=rms)


def _ours(cfg, **overrides):
  coeffs, precond, rms, nesterov, adaptive, wd = cfg
  kw = dict(
      momentum="ema_debiased", beta=0.95, nesterov=nesterov,
      ns_schedule="jordan" if coeffs == "standard" else np.asarray(DION),
      ns_steps=5, normalization=PRECONDITIONING[precond], ns_eps=1e-8,
      adaptive=adaptive,
      scale="jordan" if rms is None else "moonlight", rms=0.2 if rms is None else rms,
      weight_decay=wd, weight_decay_mode="coupled",
      adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8, adam_weight_decay=0.0,
      adam_nesterov=nesterov, skip_nonfinite=False)
  kw.update(overrides)
  return optax_muon.muon(LR, **kw)


# XLA:CPU compile time dominates these tiny problems: optax's update is jitted
# with backend optimizations off (numerics unchanged), ours runs eagerly (its
# primitives are cached across configurations, so that is the cheaper way).
_FAST_COMPILE = {"xla_backend_optimization_level": 0,
                 "xla_llvm_disable_expensive_passes": True}


def _jit(fn):
  return jax.jit(fn, compiler_options=_FAST_COMPILE)


def _run(tx, params, grads, jit=False):
  state = tx.init(params)
  update = _jit(tx.update) if jit else tx.update
  out = []
  for g in grads:
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
    out.append((u, params))
  return out


def _assert_trajectories_match(ours, ref, rtol=1e-5, atol=1e-6):
  assert len(ours) == len(ref) == STEPS
  for step, ((u, p), (u_ref, p_ref)) in enumerate(zip(ours, ref)):
    assert set(u) == set(u_ref)
    for k in u_ref:
      u_ref_k = np.asarray(u_ref[k])
      np.testing.assert_allclose(np.asarray(u[k]), u_ref_k, rtol=rtol,
                                 atol=atol, err_msg=f"update {k} at step {step}")
      # params are O(1) sums of updates: an entry near 0 after cancellation
      # carries the updates' absolute error, so compare on their scale.
      p_atol = atol + rtol * (step + 1) * np.max(np.abs(u_ref_k))
      np.testing.assert_allclose(np.asarray(p[k]), np.asarray(p_ref[k]), rtol=rtol,
                                 atol=p_atol, err_msg=f"param {k} at step {step}")


# The full grid (96 points) is @slow; the default run covers every pair of
# option values at least once (a pairwise covering design of 12 points).
AXES = (("standard", "dion"), ("frobenius", "aol", "schatten"), (None, 0.2),
        (True, False), (True, False), (0.0, 0.1))
FULL_GRID = list(itertools.product(*AXES))


def _pairwise_cover():
  """Greedy pairwise covering of AXES (deterministic)."""
  uncovered = {(i, a, j, b) for i, j in itertools.combinations(range(len(AXES)), 2)
               for a in range(len(AXES[i])) for b in range(len(AXES[j]))}
  chosen = []
  candidates = list(itertools.product(*(range(len(a)) for a in AXES)))
  while uncovered:
    best = max(candidates, key=lambda c: sum(
        (i, c[i], j, c[j]) in uncovered for i, j in itertools.combinations(range(len(AXES)), 2)))
    chosen.append(best)
    uncovered -= {(i, best[i], j, best[j])
                  for i, j in itertools.combinations(range(len(AXES)), 2)}
  return [tuple(AXES[k][v] for k, v in enumerate(c)) for c in chosen]


PAIRWISE = _pairwise_cover()


def _id(cfg):
  coeffs, precond, rms, nesterov, adaptive, wd = cfg
  return (f"{coeffs}-{precond}-rms{rms}-{'nest' if nesterov else 'heavy'}"
          f"-{'adapt' if adaptive else 'plain'}-wd{wd}")


@pytest.mark.parametrize("cfg", PAIRWISE, ids=_id)
def test_muon_matches_optax_contrib(cfg):
  params, grads = _params_and_grads()
  _assert_trajectories_match(_run(_ours(cfg), params, grads),
                             _run(_optax(cfg), params, grads, jit=True))


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [c for c in FULL_GRID if c not in PAIRWISE], ids=_id)
def test_muon_matches_optax_contrib_full_grid(cfg):
  params, grads = _params_and_grads()
  _assert_trajectories_match(_run(_ours(cfg), params, grads),
                             _run(_optax(cfg), params, grads, jit=True))


def test_pairwise_cover_covers_every_pair():
  for i, j in itertools.combinations(range(len(AXES)), 2):
    seen = {(c[i], c[j]) for c in PAIRWISE}
    assert seen == set(itertools.product(AXES[i], AXES[j])), (i, j)


def test_named_dion_schedule_matches_optax_dion_preset():
  # Our name "dion" is the nanogpt5 table with ν = 1, as optax's preset.
  cfg = ("dion", "frobenius", None, True, False, 0.0)
  params, grads = _params_and_grads(1)
  _assert_trajectories_match(_run(_ours(cfg, ns_schedule="dion"), params, grads),
                             _run(_optax(cfg), params, grads, jit=True))


def test_explicit_dimension_numbers_match_optax():
  # A scanned [L, in, out] stack: optax with a dims tree, ours with the same tree.
  rng = np.random.default_rng(2)
  params = {"stack": jnp.asarray(rng.standard_normal((2, 12, 8)), jnp.float32),
            "w": jnp.asarray(rng.standard_normal((8, 6)), jnp.float32),
            "b": jnp.asarray(rng.standard_normal(6), jnp.float32)}
  grads = [jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32),
                        params) for _ in range(STEPS)]
  dims = {"stack": DN(1, 2), "w": DN(0, 1), "b": None}
  ref = optax.contrib.muon(LR, eps=1e-8, weight_decay=0.1, muon_weight_dimension_numbers=dims)
  cfg = ("standard", "frobenius", None, True, False, 0.1)
  ours = _ours(cfg, dimension_numbers=dims)
  _assert_trajectories_match(_run(ours, params, grads), _run(ref, params, grads, jit=True))


@pytest.mark.parametrize("precond", ("aol", "schatten", "frobenius"))
@pytest.mark.parametrize("coeffs", ("standard", "dion"))
@pytest.mark.parametrize("shape", ((12, 8), (8, 12), (10, 10)), ids=str)
def test_orthogonalize_matches_optax_newton_schulz(precond, coeffs, shape):
  x = jnp.asarray(np.random.default_rng(3).standard_normal(shape), jnp.float32)
  table = jnp.asarray((3.4445, -4.7750, 2.0315) if coeffs == "standard" else DION)
  ref = _jit(lambda x, t: optax.contrib._muon.orthogonalize_via_newton_schulz(
      x, t, 5, preconditioning=precond, eps=1e-8))(x, table)
  ours = optax_muon.orthogonalize(
      x, schedule=np.asarray(table), steps=5, normalization=PRECONDITIONING[precond],
      eps=1e-8)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", ((16, 64), (64, 16)), ids=str)
def test_default_gram_path_matches_optax_contrib(shape):
  # The aliases' default ns_method="auto" runs Gram Newton–Schulz on 1:4 matrices
  # (a different algorithm: polynomial in the Gram matrix, restarted); its trajectory
  # must still be optax's standard iteration's.
  assert gram_newton_schulz.choose_method(
      "auto", min(shape), max(shape), optax_muon.ns_coefficients("jordan", 5)) == "gram"
  rng = np.random.default_rng(4)
  params = {"w": jnp.asarray(rng.standard_normal(shape), jnp.float32)}
  grads = [{"w": jnp.asarray(rng.standard_normal(shape), jnp.float32)} for _ in range(STEPS)]
  cfg = ("standard", "frobenius", 0.2, True, False, 0.1)
  ours = _ours(cfg)  # ns_method left at the alias's default
  _assert_trajectories_match(_run(ours, params, grads),
                             _run(_optax(cfg), params, grads, jit=True), rtol=1e-4, atol=1e-6)
