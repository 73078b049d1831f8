"""Muon++'s two spectral guarantees, held in a training loop built here with the library.

``muon_plus_plus`` promises ``‖ΔW‖₂ = lr·s`` while the bound is inactive and
``‖W‖₂ ≤ weight_radius·s`` at every step (``s = sqrt(fan_out/fan_in)``): the
property the learning-rate transfer across width rests on. A two-matrix linear
network (64 → 128 → 64, μP init) is driven towards a target map far outside the
ball, and every weight and step is checked with an exact SVD.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax_muon
import pytest
from optax.contrib import MuonDimensionNumbers as DN

D_IN, D_HID = 64, 128
RADIUS = 4.0
LR = 0.08
STEPS = 120


def _orthogonal(rng, fan_in, fan_out):
  """μP init: every singular value sqrt(fan_out/fan_in)."""
  q, r = np.linalg.qr(rng.standard_normal((max(fan_in, fan_out), min(fan_in, fan_out))))
  q = q * np.sign(np.diag(r))
  w = q if fan_in >= fan_out else q.T
  return w * np.sqrt(fan_out / fan_in)


def _problem():
  rng = np.random.default_rng(0)
  params = {"w1": jnp.asarray(_orthogonal(rng, D_IN, D_HID), jnp.float32),
            "w2": jnp.asarray(_orthogonal(rng, D_HID, D_IN), jnp.float32)}
  target = 30.0 * _orthogonal(rng, D_IN, D_IN)  # ‖A‖₂ = 30: far beyond what the ball allows
  x = rng.standard_normal((256, D_IN)) / np.sqrt(D_IN)
  return params, jnp.asarray(x, jnp.float32), jnp.asarray(x @ target, jnp.float32)


def _scale(w):
  return np.sqrt(w.shape[1] / w.shape[0])


@pytest.fixture(scope="module")
def trajectory():
  """Weights after every step of ``STEPS`` Muon++ steps (constant lr)."""
  params, x, y = _problem()
  tx = optax_muon.muon_plus_plus(LR, weight_radius=RADIUS,
                                 dimension_numbers={"w1": DN(0, 1), "w2": DN(0, 1)})
  loss = lambda p: jnp.mean((x @ p["w1"] @ p["w2"] - y) ** 2)

  @jax.jit
  def step(p, state):
    updates, state = tx.update(jax.grad(loss)(p), state, p)
    return optax.apply_updates(p, updates), state

  state = tx.init(params)
  out = [jax.device_get(params)]
  for _ in range(STEPS):
    params, state = step(params, state)
    out.append(jax.device_get(params))
  return out, float(loss(out[0])), float(loss(out[-1]))


def test_weights_stay_within_the_bound_at_every_step(trajectory):
  weights, first, last = trajectory
  ratios = np.array([[np.linalg.norm(np.asarray(p[k], np.float64), 2)
                      / (RADIUS * _scale(p[k])) for k in ("w1", "w2")] for p in weights[1:]])
  assert last < first  # it trains
  assert ratios.max() > 0.99  # the weights do reach the bound ...
  assert ratios.max() <= 1.03, ratios.max()  # ... and never leave it (tracked-subspace slack)
  assert ratios[-20:].min() > 0.95  # pushed outwards, they stay on it


def test_update_spectral_norm_is_lr_times_scale_while_inside(trajectory):
  weights, _, _ = trajectory
  checked = 0
  for before, after in zip(weights, weights[1:]):
    for k in ("w1", "w2"):
      w0, w1 = np.asarray(before[k], np.float64), np.asarray(after[k], np.float64)
      if np.linalg.norm(w1, 2) >= 0.9 * RADIUS * _scale(w1):
        continue  # near the ball the step may be pulled back onto it
      step = np.linalg.norm(w1 - w0, 2) / (LR * _scale(w1))
      assert 0.98 <= step <= 1.02, (k, step)
      checked += 1
  assert checked >= 20  # the early steps are far inside the ball
