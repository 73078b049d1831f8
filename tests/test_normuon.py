"""NorMuon against a numpy reference written from the paper's equations (Li et al. 2025).

The reference knows nothing of the library: sum-form Nesterov momentum, Newton–Schulz
with Jordan's coefficients on the short side (Frobenius-normalized), the per-neuron
second moment ``v ← β₂v + (1−β₂)·mean_fan_in(O²)``, ``Ô = O/(sqrt(v)+ε)``, the learning
rate ``η̂ = 0.2·η·sqrt(mn)/‖Ô‖_F`` of the paper, and decoupled decay ``−ηλW``. Flax layout:
a neuron is a column of ``[fan_in, fan_out]``.
"""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_muon as om

JORDAN = (3.4445, -4.7750, 2.0315)


def ns_reference(x, steps=5, eps=1e-7):
  x = x.astype(np.float64)
  tall = x.shape[0] > x.shape[1]
  if tall:
    x = x.T
  x = x / (np.linalg.norm(x) + eps)
  a, b, c = JORDAN
  for _ in range(steps):
    g = x @ x.T
    x = a * x + (b * g + c * g @ g) @ x
  return x.T if tall else x


def normuon_reference(w0, grads, lr, beta=0.95, b2=0.95, wd=0.1, eps=1e-8):
  m = np.zeros_like(w0, np.float64)
  v = np.zeros(w0.shape[1])
  w = w0.astype(np.float64)
  fan_in, fan_out = w0.shape
  updates = []
  for g in grads:
    m = beta * m + g
    o = ns_reference(g + beta * m)
    v = b2 * v + (1 - b2) * np.mean(o * o, axis=0)
    o_hat = o / (np.sqrt(v) + eps)
    lr_hat = 0.2 * lr * np.sqrt(fan_in * fan_out) / np.linalg.norm(o_hat)
    u = -lr_hat * o_hat - lr * wd * w
    updates.append(u)
    w = w + u
  return np.stack(updates)


@pytest.mark.parametrize("shape", [(16, 48), (48, 16), (24, 24)])
def test_normuon_matches_the_paper_equations(shape):
  rng = np.random.default_rng(0)
  w0 = rng.standard_normal(shape).astype(np.float32)
  # Neurons of very different scales, so the normalization matters.
  grads = [rng.standard_normal(shape) * np.linspace(0.1, 3.0, shape[1]) for _ in range(4)]
  lr = 1e-2
  tx = om.normuon(lr, weight_decay=0.1, dimension_numbers=om.MuonDimensionNumbers(0, 1))
  params = {"w": jnp.asarray(w0)}
  state = tx.init(params)
  ours = []
  step = jax.jit(tx.update)
  for g in grads:
    u, state = step({"w": jnp.asarray(g, jnp.float32)}, state, params)
    ours.append(np.asarray(u["w"], np.float64))
    params = {"w": params["w"] + u["w"]}
  ref = normuon_reference(w0, grads, lr)
  np.testing.assert_allclose(np.stack(ours), ref, rtol=2e-3, atol=2e-6)


def test_normuon_update_rms_is_0_2_lr_and_neurons_are_balanced():
  rng = np.random.default_rng(1)
  shape = (32, 64)
  g = rng.standard_normal(shape) * np.linspace(0.01, 10.0, shape[1])  # 1000x neuron scales
  tx = om.normuon(1e-2, weight_decay=0.0)
  params = {"w": jnp.zeros(shape)}
  u, _ = tx.update({"w": jnp.asarray(g, jnp.float32)}, tx.init(params), params)
  u = np.asarray(u["w"], np.float64)
  np.testing.assert_allclose(np.sqrt(np.mean(u * u)), 0.2 * 1e-2, rtol=1e-4)
  col = np.sqrt(np.mean(u * u, axis=0))  # per-neuron RMS: equal after one step
  np.testing.assert_allclose(col, col.mean(), rtol=2e-2)


def test_normuon_alias_is_short_and_built_from_public_blocks():
  import ast  # pylint: disable=g-import-not-at-top
  import inspect  # pylint: disable=g-import-not-at-top
  from optax_muon._src import normuon as normuon_lib  # pylint: disable=g-import-not-at-top
  source = inspect.getsource(normuon_lib.normuon)
  body = source[source.index('"""', source.index('"""') + 3) + 3:]
  code = [l for l in body.splitlines() if l.strip()]
  assert len(code) < 40, len(code)
  # Every transform the body calls from the library is a public name (or the shared
  # argument plumbing and the diagnostics probes every alias uses).
  calls = {node.func.attr for node in ast.walk(ast.parse(textwrap.dedent(body)))
           if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
           and isinstance(node.func.value, ast.Name) and node.func.value.id != "optax"
           and node.func.value.id not in ("alias_parts", "probes", "shared", "ns")}
  assert calls == {"muon_momentum", "newton_schulz", "normalize_neurons", "spectral_scale",
                   "decoupled_weight_decay"}, calls
  assert calls <= set(om.__all__)


def test_normuon_takes_the_shared_arguments():
  # The per-leaf Newton-Schulz steps, the AdamW betas and the decay mask reach the chain:
  # 1 step instead of 5 changes the matrix update; no decay on the masked-out leaf.
  rng = np.random.default_rng(2)
  params = {"w": jnp.asarray(rng.standard_normal((16, 16)), jnp.float32),
            "norm": {"scale": jnp.ones(16)}}
  grads = {"w": jnp.asarray(rng.standard_normal((16, 16)), jnp.float32),
           "norm": {"scale": jnp.zeros(16)}}
  def update(**kw):
    tx = om.normuon(1e-2, **kw)
    return tx.update(grads, tx.init(params), params)[0]
  base = update()
  assert not np.allclose(update(ns_steps=1)["w"], base["w"], atol=1e-6)
  # Zero gradient on the AdamW leaf: its update is the decay alone, -lr*wd*W.
  np.testing.assert_allclose(base["norm"]["scale"], -1e-2 * 0.1 * np.ones(16), rtol=1e-6)
  masked = update(weight_decay_mask="^w$")
  np.testing.assert_allclose(masked["norm"]["scale"], np.zeros(16), atol=0)
  with pytest.raises(ValueError, match="adam_b2"):
    om.normuon(1e-2, adam_b2=1.0)
