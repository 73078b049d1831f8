"""Invariants from docs/algorithms.md (spectral scales, Muown, Muon++, QK-clip), checked against exact math (numpy SVD)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_muon as om


def _spectral_norm(x):
  return float(np.linalg.norm(np.asarray(x, np.float64), 2))


@pytest.mark.parametrize("shape", [(64, 64), (32, 128), (128, 32)])
def test_moonlight_scale_gives_rms_02_on_exact_polar(shape):
  g = np.random.default_rng(0).normal(size=shape)
  u, _, vt = np.linalg.svd(g, full_matrices=False)
  polar = jnp.asarray(u @ vt, jnp.float32)
  tx = om.spectral_scale("moonlight")
  out, _ = tx.update({"w": polar}, tx.init(None))
  np.testing.assert_allclose(float(jnp.sqrt(jnp.mean(out["w"] ** 2))), 0.2, rtol=1e-5)


def test_muon_update_rms_matches_adamw_scale():
  # Converged NS (Polar Express, 8 steps) ≈ exact polar: update RMS = 0.2·η.
  g = jax.random.normal(jax.random.key(0), (96, 48))
  params = {"w": jnp.zeros((96, 48))}
  tx = om.muon(1e-2, ns_schedule="polar_express", ns_steps=8, weight_decay=0.0)
  u, _ = tx.update({"w": g}, tx.init(params), params)
  np.testing.assert_allclose(float(jnp.sqrt(jnp.mean(u["w"] ** 2))), 0.2 * 1e-2, rtol=0.02)


@pytest.mark.parametrize("convention,expected", [
    ("jordan", np.sqrt(max(1, 64 / 16))), ("width", 2.0), ("mup", 2.0),
    ("moonlight", 0.2 * 8.0), ("none", 1.0)])
def test_scale_conventions_on_flax_layout(convention, expected):
  # Flax kernel [fan_in=16, fan_out=64].
  tx = om.spectral_scale(convention)
  out, _ = tx.update({"w": jnp.ones((16, 64))}, tx.init(None))
  np.testing.assert_allclose(float(out["w"][0, 0]), expected, rtol=1e-6)


def _neuron_norms(w):
  return np.linalg.norm(np.asarray(w, np.float64), axis=0)  # Flax: over fan_in


def test_muown_first_step_moves_every_neuron_norm_by_exactly_lr():
  lr = 1e-2
  w = {"w": jax.random.normal(jax.random.key(0), (32, 24))}
  g = {"w": jax.random.normal(jax.random.key(1), (32, 24))}
  tx = om.muown(lr)
  u, _ = tx.update(g, tx.init(w), w)
  moved = _neuron_norms(w["w"] + u["w"]) - _neuron_norms(w["w"])
  np.testing.assert_allclose(np.abs(moved), lr, rtol=1e-3)
  # Direction of the move: against the magnitude gradient Σ_fan_in G ⊙ D.
  d = np.asarray(w["w"]) / _neuron_norms(w["w"])
  grad_g = np.sum(np.asarray(g["w"]) * d, axis=0)
  np.testing.assert_array_equal(np.sign(moved), -np.sign(grad_g))


def test_muown_neuron_norms_equal_magnitudes_every_step():
  params = {"w": jax.random.normal(jax.random.key(0), (40, 20)),
            "stack": jax.random.normal(jax.random.key(2), (2, 12, 16))}
  tx = om.muown(3e-2)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for i in range(6):
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(10 + i), p.shape), params)
    u, state = step(grads, state, params)
    params = optax.apply_updates(params, u)
    g = state.matrix[0].magnitude  # per group of same-shaped matrices
    np.testing.assert_allclose(_neuron_norms(params["w"]), np.abs(g["40x20"][0]), rtol=1e-5)
    for layer in range(2):
      np.testing.assert_allclose(_neuron_norms(params["stack"][layer]),
                                 np.abs(g["12x16"][layer]), rtol=1e-5)


def test_muown_direction_gradient_is_tangent():
  # ∇V ⟂ V per neuron: a direction step of a *single* plain gradient (no NS,
  # lr tiny) must leave neuron norms of V unchanged to first order.
  w = {"w": jax.random.normal(jax.random.key(0), (16, 8))}
  g = {"w": jax.random.normal(jax.random.key(1), (16, 8))}
  captured = {}

  def capture_init(p):
    return ()

  def capture_update(u, s, p=None):
    captured["grad_v"], captured["v"] = u, p
    return jax.tree.map(jnp.zeros_like, u), s

  tx = om.row_norm_ell_inf(optax.GradientTransformation(capture_init, capture_update),
                           optax.sgd(0.0))
  tx.update(g, tx.init(w), w)
  # The direction transform sees stacks: one group "16x8" holding the one matrix.
  dot = np.sum(np.asarray(captured["grad_v"]["16x8"][0]) * np.asarray(captured["v"]["16x8"][0]),
               axis=0)
  np.testing.assert_allclose(dot, 0.0, atol=1e-5)


@pytest.mark.parametrize("fan_in,fan_out", [(64, 64), (128, 256), (256, 128)])
def test_muon_plus_plus_update_spectral_norm_is_exact(fan_in, fan_out):
  lr, scale = 1e-2, 1.5
  params = {"w": jnp.zeros((fan_in, fan_out))}
  tx = om.muon_plus_plus(lr, update_scale=scale, weight_radius=1e6)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for i in range(3):
    grads = {"w": jax.random.normal(jax.random.key(i), (fan_in, fan_out))}
    u, state = step(grads, state, params)
    params = optax.apply_updates(params, u)
    expected = lr * scale * np.sqrt(fan_out / fan_in)
    np.testing.assert_allclose(_spectral_norm(u["w"]), expected, rtol=0.02)


def _with_spectrum(shape, sigma, seed):
  rng = np.random.default_rng(seed)
  k = min(shape)
  u = np.linalg.qr(rng.normal(size=(shape[0], k)))[0]
  v = np.linalg.qr(rng.normal(size=(shape[1], k)))[0]
  return jnp.asarray((u * np.resize(sigma, k)) @ v.T, jnp.float32)


@pytest.mark.parametrize("fan_in,fan_out", [(64, 64), (48, 192), (192, 48)])
@pytest.mark.parametrize("spectrum", ["gaussian", "rank_one", "spread_1e-6", "flat"])
def test_muon_plus_plus_update_spectral_norm_without_power_iteration(fan_in, fan_out, spectrum):
  # The default Polar Express x6 pins ‖O‖₂ in [0.9956, 1.0012] for any input, so
  # the alias measures nothing: the exact SVD of the update must land in that band.
  k = min(fan_in, fan_out)
  grad = {"gaussian": lambda: jax.random.normal(jax.random.key(3), (fan_in, fan_out)),
          "rank_one": lambda: _with_spectrum((fan_in, fan_out), [1.0] + [0.0] * (k - 1), 0),
          "spread_1e-6": lambda: _with_spectrum((fan_in, fan_out), np.geomspace(1, 1e-6, k), 1),
          "flat": lambda: _with_spectrum((fan_in, fan_out), np.ones(k), 2)}[spectrum]()
  lr = 1e-2
  params = {"w": jnp.zeros((fan_in, fan_out))}
  tx = om.muon_plus_plus(lr, weight_radius=None)
  state = tx.init(params)
  assert not any(leaf.ndim == 2 and leaf.shape[-1] == fan_out and leaf.shape[0] == 1
                 for leaf in jax.tree.leaves(state)), "no power-iteration vectors expected"
  u, _ = tx.update({"w": grad}, state, params)
  ratio = _spectral_norm(u["w"]) / (lr * np.sqrt(fan_out / fan_in))
  assert 0.9956 - 2e-4 <= ratio <= 1.0012 + 2e-4, ratio


def test_muon_plus_plus_measures_the_update_when_the_schedule_does_not_pin_it():
  # Jordan x5 leaves ‖O‖₂ anywhere in 0.47-1.20: the alias then divides by a
  # power-iteration estimate. A gradient whose top σ Jordan maps to 1.20 shows it.
  lo, hi = om.ns_spectral_norm_range("jordan", 5)
  assert lo < 0.5 and hi > 1.15
  g = _with_spectrum((64, 64), [1.0] * 10 + [0.0] * 54, 0)  # normalized σ = 1/sqrt(10)
  assert om.ns_scalar_map(1 / np.sqrt(10), "jordan", 5) > 1.1
  lr = 1e-2
  params = {"w": jnp.zeros((64, 64))}
  for kwargs in [{}, {"power_iterations": 2}]:
    tx = om.muon_plus_plus(lr, weight_radius=None, ns_schedule="jordan", ns_steps=5, **kwargs)
    u, _ = tx.update({"w": g}, tx.init(params), params)
    np.testing.assert_allclose(_spectral_norm(u["w"]), lr, rtol=1e-3)
  raw = om.orthogonalize(g, schedule="jordan", steps=5)
  assert _spectral_norm(raw) > 1.1  # what the update would be without the division


def test_ns_spectral_norm_range_holds_on_real_iterations():
  # Against the exact SVD of what orthogonalize returns, over spectra that put the
  # top σ anywhere in [1e-3, 1] after normalization.
  for schedule, steps in [("polar_express", 6), ("jordan", 5), ("polar_express", 5)]:
    lo, hi = om.ns_spectral_norm_range(schedule, steps)
    for seed, sigma in enumerate([np.ones(1), np.ones(4), np.geomspace(1, 1e-4, 32),
                                  np.ones(32), np.linspace(1, 0.5, 32)]):
      x = _with_spectrum((32, 96), np.concatenate([sigma, np.zeros(32 - sigma.size)]), seed)
      got = _spectral_norm(om.orthogonalize(x, schedule=schedule, steps=steps))
      assert lo - 1e-4 <= got <= hi + 1e-4, (schedule, steps, seed, got, lo, hi)
  lo, hi = om.ns_spectral_norm_range("polar_express", 6)
  assert 0.995 <= lo and hi <= 1.002


@pytest.mark.parametrize("width", [64, 128, 256, pytest.param(512, marks=pytest.mark.slow),
                                   pytest.param(1024, marks=pytest.mark.slow)])
def test_muon_plus_plus_keeps_weight_spectral_norm_bounded(width):
  # Worst case: the same gradient every step (perfect alignment), 500 steps.
  fan_in, fan_out = width, 2 * width
  lr, radius = 5e-2, 2.0
  w0 = jax.random.normal(jax.random.key(0), (fan_in, fan_out)) / np.sqrt(fan_in)
  grad = {"w": jax.random.normal(jax.random.key(1), (fan_in, fan_out))}
  params = {"w": w0}
  tx = om.muon_plus_plus(lr, weight_radius=radius)
  state = tx.init(params)

  @jax.jit
  def run(params, state):
    def body(carry, _):
      p, s = carry
      u, s = tx.update(grad, s, p)
      p = optax.apply_updates(p, u)
      return (p, s), None
    return jax.lax.scan(body, (params, state), None, length=100)[0]

  bound = radius * np.sqrt(fan_out / fan_in)
  worst = 0.0
  for _ in range(5):
    params, state = run(params, state)
    worst = max(worst, _spectral_norm(params["w"]) / bound)
  assert worst <= 1.02, worst
  # Muon without decay drifts past the bound on the same problem.
  drift = om.muon(lr, weight_decay=0.0, scale="mup")

  @jax.jit
  def drift_run(params, state):
    def body(carry, _):
      p, s = carry
      u, s = drift.update(grad, s, p)
      return (optax.apply_updates(p, u), s), None
    return jax.lax.scan(body, (params, state), None, length=100)[0]

  p, _ = drift_run({"w": w0}, drift.init({"w": w0}))
  assert _spectral_norm(p["w"]) > 1.5 * bound



def _bound_ratios(tx, w0, bound, rng, steps=40):
  """‖W_t‖₂ / bound (exact SVD) after each of ``steps`` steps on random gradients."""
  params = {"w": jnp.asarray(w0, jnp.float32)}
  state, step = tx.init(params), jax.jit(tx.update)
  ratios = []
  for _ in range(steps):
    grads = {"w": jnp.asarray(rng.normal(size=w0.shape), jnp.float32)}
    u, state = step(grads, state, params)
    params = optax.apply_updates(params, u)
    ratios.append(_spectral_norm(params["w"]) / bound)
  return ratios


@pytest.mark.parametrize("fan_in,fan_out,spectrum", [
    (64, 64, "gaussian"), (64, 192, "gaussian"), (192, 64, "gaussian"), (96, 96, "flat")])
def test_muon_plus_plus_weight_above_bound_is_on_it_from_step_one(fan_in, fan_out, spectrum):
  # W₀ at 1.5× the bound (a flat spectrum is the power iteration's worst case: no
  # gap). Exact SVD after every step: ‖W_t‖₂ ≤ 1.03·R for every t including t = 1
  # (a first-order decay with a fixed start vector gave 1.14-1.18 at t = 1), and
  # step 1 lands on the bound, not far inside it.
  radius = 4.0
  bound = radius * np.sqrt(fan_out / fan_in)
  rng = np.random.default_rng(0)
  if spectrum == "flat":
    w0 = np.linalg.qr(rng.normal(size=(fan_in, fan_out)))[0]
  else:
    w0 = rng.normal(size=(fan_in, fan_out))
  w0 = 1.5 * bound * w0 / np.linalg.norm(w0, 2)
  ratios = _bound_ratios(om.muon_plus_plus(0.02, weight_radius=radius), w0, bound, rng)
  assert max(ratios) <= 1.03, ratios[:5]
  assert ratios[0] >= 0.97, ratios[0]


def test_muon_plus_plus_bounds_a_zero_initialized_matrix():
  # A zero-initialized matrix (modded-nanogpt's output projections) gives the bound's
  # subspace iteration nothing to refine at init; it must still track the weight once the
  # weight grows. Exact SVD after every step: ‖W_t‖₂ ≤ 1.03·R, and the weight reaches R
  # (a bound that never engages lets it grow well past R).
  fan_in, fan_out, radius, lr = 32, 64, 1.0, 0.1
  bound = radius * np.sqrt(fan_out / fan_in)
  ratios = _bound_ratios(om.muon_plus_plus(lr, weight_radius=radius),
                         np.zeros((fan_in, fan_out)), bound, np.random.default_rng(0))
  assert max(ratios) <= 1.03, ratios
  assert ratios[-1] >= 0.97, ratios


@pytest.mark.parametrize("fan_in,fan_out", [(192, 64), (64, 192)])
def test_muon_plus_plus_jordan_scale_sets_update_and_radius(fan_in, fan_out):
  # scale="jordan": s = sqrt(max(1, out/in)); the down-projection shape (in > out)
  # gets ‖ΔW‖₂ = η (not η·sqrt(out/in)), and its bound is R·s (exact SVD).
  lr, radius = 1e-2, 2.0
  s = np.sqrt(max(1.0, fan_out / fan_in))
  params = {"w": jnp.zeros((fan_in, fan_out))}
  tx = om.muon_plus_plus(lr, scale="jordan", weight_radius=radius)
  grads = {"w": jax.random.normal(jax.random.key(0), (fan_in, fan_out))}
  u, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(_spectral_norm(u["w"]), lr * s, rtol=0.02)
  uu, _, vt = np.linalg.svd(np.random.default_rng(1).normal(size=(fan_in, fan_out)),
                            full_matrices=False)
  big = {"w": jnp.asarray(3 * radius * s * (uu @ vt), jnp.float32)}  # flat spectrum at 3R
  u, _ = tx.update(grads, tx.init(big), big)
  np.testing.assert_allclose(_spectral_norm(big["w"] + u["w"]), radius * s, rtol=0.01)


def test_muon_plus_plus_weight_decay_inside_the_bound_is_geometric():
  # Inside the ball the only decay is the decoupled −η·λ·W: with zero gradients
  # W_t = (1 − ηλ)^t W₀ exactly.
  lr, wd = 0.05, 0.4
  w0 = np.asarray(jax.random.normal(jax.random.key(0), (16, 16))) / 4.0
  params = {"w": jnp.asarray(w0)}
  tx = om.muon_plus_plus(lr, weight_decay=wd, weight_radius=100.0)
  state = tx.init(params)
  for _ in range(5):
    u, state = tx.update({"w": jnp.zeros((16, 16))}, state, params)
    params = optax.apply_updates(params, u)
  np.testing.assert_allclose(np.asarray(params["w"]), (1 - lr * wd) ** 5 * w0, rtol=1e-5)


def _max_logits(q, k, x, heads_q, heads_k, head_dim):
  # Causal max of q_i·k_j / sqrt(d) per query head, numpy float64.
  qx = (x @ q).reshape(x.shape[0], heads_q, head_dim)
  kx = (x @ k).reshape(x.shape[0], heads_k, head_dim)
  group = heads_q // heads_k
  t = x.shape[0]
  mask = np.tril(np.ones((t, t), bool))
  out = []
  for h in range(heads_q):
    s = qx[:, h] @ kx[:, h // group].T / np.sqrt(head_dim)
    out.append(s[mask].max())
  return np.array(out)


@pytest.mark.parametrize("heads_q,heads_k", [(4, 4), (4, 2), (4, 1)])
def test_qk_clip_caps_max_logit_exactly(heads_q, heads_k):
  rng = np.random.default_rng(0)
  d, head_dim, t = 16, 8, 12
  x = rng.normal(size=(t, d))
  q = rng.normal(size=(d, heads_q * head_dim)) * np.array([3.0, 0.1, 3.0, 0.1]).repeat(head_dim)
  k = rng.normal(size=(d, heads_k * head_dim))
  before = _max_logits(q, k, x, heads_q, heads_k, head_dim)
  tau = float(np.sort(before)[1] + 1e-3)  # two heads above, two below
  shared = heads_k < heads_q
  specs = {"q": om.QKClipSpec("l0", "query", head_axis=1, num_heads=heads_q, shared_keys=shared),
           "k": om.QKClipSpec("l0", "key", head_axis=1, num_heads=heads_k, shared_keys=shared)}
  params = {"q": jnp.asarray(q, jnp.float32), "k": jnp.asarray(k, jnp.float32)}
  tx = om.qk_clip(tau, specs)
  u, state = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params,
                       max_logits={"l0": jnp.asarray(before, jnp.float32)})
  new = {n: np.asarray(params[n] + u[n], np.float64) for n in params}
  after = _max_logits(new["q"], new["k"], x, heads_q, heads_k, head_dim)
  clipped = before > tau
  np.testing.assert_allclose(after[clipped], tau, rtol=1e-4)
  np.testing.assert_allclose(after[~clipped], before[~clipped], rtol=1e-5)
  assert int(state.clipped_heads) == int(clipped.sum())
  if shared:
    np.testing.assert_array_equal(new["k"], np.asarray(params["k"], np.float64))


def test_qk_clip_is_identity_below_threshold():
  params = {"q": jnp.ones((4, 8)), "k": jnp.ones((4, 8)), "w": jnp.ones((4, 4))}
  specs = {"q": om.QKClipSpec("a", "query", 1, 2), "k": om.QKClipSpec("a", "key", 1, 2),
           "w": None}
  base = om.muon(1e-2)
  tx = optax.chain(base, om.qk_clip(100.0, specs))
  grads = jax.tree.map(jnp.ones_like, params)
  u, _ = tx.update(grads, tx.init(params), params, max_logits={"a": jnp.array([5.0, 99.0])})
  ref, _ = base.update(grads, base.init(params), params)
  for n in params:
    np.testing.assert_array_equal(u[n], ref[n])


def test_weight_decay_with_zero_gradients_is_exactly_geometric():
  lr, wd, steps = 0.1, 0.5, 7
  w0 = {"w": jnp.full((8, 8), 2.0), "b": jnp.full((8,), 2.0)}
  tx = om.muon(lr, weight_decay=wd)
  p, s = w0, tx.init(w0)
  for _ in range(steps):
    u, s = tx.update(jax.tree.map(jnp.zeros_like, p), s, p)
    p = optax.apply_updates(p, u)
  np.testing.assert_allclose(p["w"], 2.0 * (1 - lr * wd) ** steps, rtol=1e-5)
  np.testing.assert_allclose(p["b"], 2.0 * (1 - lr * wd) ** steps, rtol=1e-5)


# --- Zero-norm neurons under Muown --------------------------------------------

_JORDAN = (3.4445, -4.7750, 2.0315)


def _numpy_ns5(x, eps=1e-7):
  """Jordan's Newton–Schulz ×5 (docs/algorithms.md), float64 numpy."""
  x = np.asarray(x, np.float64)
  transpose = x.shape[0] > x.shape[1]
  if transpose:
    x = x.T
  x = x / (np.linalg.norm(x) + eps)
  a, b, c = _JORDAN
  for _ in range(5):
    gram = x @ x.T
    x = a * x + (b * gram + c * gram @ gram) @ x
  return x.T if transpose else x


def _quadratic_run(tx, target, steps):
  params = {"w": jnp.zeros_like(target)}
  state = tx.init(params)
  step = jax.jit(tx.update)
  first = None
  for _ in range(steps):
    grads = {"w": params["w"] - target}  # ∇ ½‖W − T‖²
    u, state = step(grads, state, params)
    first = u["w"] if first is None else first
    params = optax.apply_updates(params, u)
  return np.asarray(first, np.float64), np.asarray(params["w"], np.float64)


def test_muown_trains_a_zero_initialized_matrix_like_muon():
  # A zero matrix has no direction and no magnitude gradient: without a rule for it,
  # it stays exactly 0. Its first step is a plain Muon step (numpy reference: Nesterov
  # sum-form input (1+β)G, Jordan NS5, moonlight scale 0.2·sqrt(2)), and it then
  # reaches the target as Muon does.
  target = jnp.array([[1.0, -0.5], [0.3, 0.8]])
  lr, beta = 0.05, 0.95
  first, final = _quadratic_run(om.muown(lr, weight_decay=0.0), target, 300)
  expected_first = -lr * 0.2 * np.sqrt(2) * _numpy_ns5((1 + beta) * -np.asarray(target))
  np.testing.assert_allclose(first, expected_first, rtol=2e-4, atol=1e-7)
  np.testing.assert_allclose(final, target, atol=0.03)
  _, muon_final = _quadratic_run(om.muon(lr, weight_decay=0.0), target, 300)
  np.testing.assert_allclose(muon_final, target, atol=0.03)


def test_muown_zero_neuron_gets_a_norm_and_the_others_keep_the_split():
  # One zero output neuron (Flax column) among normal ones: the zero one moves, the
  # others still satisfy ‖W_j‖ = |g_j| (g the magnitudes in the state).
  w = np.array(jax.random.normal(jax.random.key(0), (8, 4)))
  w[:, 2] = 0.0
  params = {"w": jnp.asarray(w)}
  tx = om.muown(1e-2, weight_decay=0.0)
  state = tx.init(params)
  for i in range(3):
    grads = {"w": jax.random.normal(jax.random.key(10 + i), (8, 4))}
    u, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, u)
    norms = _neuron_norms(params["w"])
    assert norms[2] > 0
    np.testing.assert_allclose(norms, np.abs(state.matrix[0].magnitude["8x4"][0]), rtol=1e-5)
  assert np.isfinite(np.asarray(params["w"])).all()
