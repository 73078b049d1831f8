"""Contract battery every public optimizer must pass (in the spirit of optax's
``contrib/_common_test.py``): convergence, dtypes, no recompilation, wrappers,
Flax NNX and orbax."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_muon as om

OPTIMIZERS = {
    "muon": lambda lr=3e-2, **kw: om.muon(lr, weight_decay=0.0, **kw),
    "muon_polar_express_bf16": lambda lr=3e-2, **kw: om.muon(
        lr, weight_decay=0.0, ns_schedule="polar_express", compute_dtype=jnp.bfloat16, **kw),
    "muon_plus_plus": lambda lr=3e-2, **kw: om.muon_plus_plus(lr, **kw),
    "muown": lambda lr=3e-2, **kw: om.muown(lr, **kw),
    "normuon": lambda lr=3e-2, **kw: om.normuon(lr, weight_decay=0.0, **kw),
}
NAMES = sorted(OPTIMIZERS)


def _params(dtype=jnp.float32):
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  return {
      "layer": {"kernel": (0.3 * jax.random.normal(k1, (16, 8))).astype(dtype),
                "bias": jnp.zeros((8,), dtype)},
      "stack": {"kernel": (0.3 * jax.random.normal(k2, (3, 8, 12))).astype(dtype)},
      "embed": {"embedding": (0.3 * jax.random.normal(k3, (10, 8))).astype(dtype)},
  }


def _quadratic_loss(params, target):
  return sum(jnp.sum((p.astype(jnp.float32) - t) ** 2)
             for p, t in zip(jax.tree.leaves(params), jax.tree.leaves(target)))


def _run(tx, params, loss_fn, steps):
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(steps):
    params, state = step(params, state)
  return params, state


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_quadratic(name):
  params = _params()
  keys = iter(jax.random.split(jax.random.key(7), 8))
  target = jax.tree.map(lambda p: 0.5 * jax.random.normal(next(keys), p.shape), params)
  loss = functools.partial(_quadratic_loss, target=target)
  sched = optax.cosine_decay_schedule(0.1, 300)
  final, _ = _run(OPTIMIZERS[name](sched), params, loss, 300)
  assert loss(final) < 0.02 * loss(params), (loss(params), loss(final))


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_least_squares(name):
  kx, kw = jax.random.split(jax.random.key(1))
  x = jax.random.normal(kx, (64, 16))
  w_true = jax.random.normal(kw, (16, 8)) / 4
  y = x @ w_true
  loss = lambda p: jnp.mean((x @ p["proj"] - y) ** 2)
  params = {"proj": jnp.zeros((16, 8)) + 0.01 * jnp.eye(16, 8)}
  sched = optax.cosine_decay_schedule(2e-2, 400)
  final, _ = _run(OPTIMIZERS[name](sched), params, loss, 400)
  assert loss(final) < 0.05 * loss(params), (loss(params), loss(final))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_preserves_param_dtype(name, dtype):
  params = _params(dtype)
  tx = OPTIMIZERS[name]()
  state = tx.init(params)
  grads = jax.tree.map(lambda p: jnp.ones_like(p), params)
  updates, state = tx.update(grads, state, params)
  new = optax.apply_updates(params, updates)
  for p, u, n in zip(jax.tree.leaves(params), jax.tree.leaves(updates), jax.tree.leaves(new)):
    assert u.dtype == p.dtype and n.dtype == p.dtype


@pytest.mark.parametrize("name", NAMES)
def test_no_recompilation_and_stable_state(name):
  params = _params()
  tx = OPTIMIZERS[name]()
  traces = []

  @functools.partial(jax.jit, donate_argnums=(1,))
  def step(params, state, grads):
    traces.append(1)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  struct = jax.tree.map(lambda x: (x.shape, x.dtype), state)
  for i in range(3):
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1 * (i + 1)), params)
    params, state = step(params, state, grads)
  assert len(traces) == 1
  assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == struct


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_learning_rate(name):
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  factory = {"muon": om.muon, "muon_polar_express_bf16": om.muon,
             "muon_plus_plus": om.muon_plus_plus, "muown": om.muown,
             "normuon": om.normuon}[name]
  tx = optax.inject_hyperparams(factory)(learning_rate=1e-2)
  state = tx.init(params)
  u1, _ = tx.update(grads, state, params)
  state.hyperparams["learning_rate"] = jnp.asarray(2e-2)
  u2, _ = tx.update(grads, state, params)
  fresh = factory(learning_rate=2e-2)
  ref, _ = fresh.update(grads, fresh.init(params), params)
  chex.assert_trees_all_close(u2, ref, rtol=1e-5, atol=1e-7)
  assert not np.allclose(u1["layer"]["kernel"], u2["layer"]["kernel"])


@pytest.mark.parametrize("name", NAMES)
def test_multisteps_accumulates(name):
  params = _params()
  tx = optax.MultiSteps(OPTIMIZERS[name](), every_k_schedule=2)
  state = tx.init(params)
  g1 = jax.tree.map(lambda p: jnp.full_like(p, 1.0), params)
  g2 = jax.tree.map(lambda p: jnp.full_like(p, 3.0), params)
  u, state = jax.jit(tx.update)(g1, state, params)
  assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(u))
  u, state = jax.jit(tx.update)(g2, state, params)
  # The accumulated (mean) gradient 2.0 gives the same update as one step on it.
  ref_tx = OPTIMIZERS[name]()
  ref, _ = ref_tx.update(jax.tree.map(lambda p: jnp.full_like(p, 2.0), params),
                         ref_tx.init(params), params)
  chex.assert_trees_all_close(u, ref, rtol=1e-4, atol=1e-6)


def test_extra_args_pass_through_chain():
  params = _params()
  tx = optax.chain(om.muon(1e-2), optax.scale(1.0))
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  u, _ = tx.update(grads, state, params, unused_extra=1)
  assert jax.tree.structure(u) == jax.tree.structure(params)


@pytest.mark.parametrize("name", NAMES)
def test_flax_nnx_optimizer(name):
  from flax import nnx

  class Model(nnx.Module):

    def __init__(self, rngs):
      self.embed = nnx.Embed(10, 8, rngs=rngs)
      self.hidden = nnx.Linear(8, 16, rngs=rngs)
      self.out = nnx.Linear(16, 4, rngs=rngs)
      self.norm = nnx.RMSNorm(16, rngs=rngs)

    def __call__(self, tokens):
      return self.out(self.norm(jax.nn.relu(self.hidden(self.embed(tokens)))))

  model = Model(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, OPTIMIZERS[name](1e-2), wrt=nnx.Param)
  tokens = jnp.arange(10) % 10
  labels = jnp.arange(10) % 4

  @nnx.jit
  def train_step(model, optimizer):
    def loss_fn(model):
      logits = model(tokens)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(train_step(model, optimizer)) for _ in range(30)]
  assert np.isfinite(losses).all() and losses[-1] < losses[0]


@pytest.mark.parametrize("name", NAMES)
def test_orbax_save_restore(name, tmp_path):
  import orbax.checkpoint as ocp

  params = _params()
  tx = OPTIMIZERS[name]()
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  _, state = tx.update(grads, state, params)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(tmp_path / "state", state)
  ckptr.wait_until_finished()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tx.init(params))
  restored = ckptr.restore(tmp_path / "state", abstract)
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  chex.assert_trees_all_equal(restored, state)
  # The restored state continues exactly like the original.
  u_a, _ = tx.update(grads, state, params)
  u_b, _ = tx.update(grads, restored, params)
  chex.assert_trees_all_equal(u_a, u_b)
