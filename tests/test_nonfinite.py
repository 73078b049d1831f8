"""A NaN or ±Inf gradient never changes a parameter or a moment, whatever its position and size.

XLA:CPU drops a NaN from wide ``max``/``min`` reductions (see ``optax_muon/_src/nonfinite.py``),
so a check that trusted NaN to propagate passed every matrix of 32×32 and below and let NaN
through from 64×64 up. The references here are numpy's ``isfinite`` and ``max``, never our own
output; shapes go up to 1024×4096, positions and values are drawn by hypothesis with a fixed
seed and a bounded number of examples.
"""

import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import optax_muon as om
from optax_muon._src import nonfinite

SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[hypothesis.HealthCheck.too_slow])
BAD = st.sampled_from([np.nan, np.inf, -np.inf])
# Bare arrays, matrices from 2×2 to 1024×4096 and stacks of matrices.
SHAPES = [(7,), (2, 2), (31, 33), (64, 64), (64, 256), (256, 64), (4, 32, 32), (3, 128, 96),
          (1024, 4096)]


def _position(size: int):
  """The first, the last, a middle or any entry of an array of `size` entries."""
  return st.one_of(st.sampled_from([0, size - 1, size // 2]), st.integers(0, size - 1))


@st.composite
def poisoned(draw, shapes=SHAPES, dtypes=(np.float32,)):
  """`(x, index)`: a random array with one non-finite entry at flat `index`."""
  shape = draw(st.sampled_from(shapes))
  dtype = draw(st.sampled_from(dtypes))
  x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape).astype(dtype)
  index = draw(_position(x.size))
  x.reshape(-1)[index] = draw(BAD)
  return x, index


@hypothesis.settings(max_examples=60, **SETTINGS)
@hypothesis.given(poisoned(dtypes=(np.float32, jnp.bfloat16)), st.booleans())
def test_all_finite_sees_one_bad_entry(case, jit):
  x, index = case
  check = jax.jit(nonfinite.all_finite) if jit else nonfinite.all_finite
  assert not np.isfinite(np.asarray(x, np.float32)).all()
  assert not bool(check({"finite": jnp.ones((64, 64)), "bad": jnp.asarray(x)}))
  x.reshape(-1)[index] = 0
  assert np.isfinite(np.asarray(x, np.float32)).all()
  assert bool(check({"finite": jnp.ones((64, 64)), "repaired": jnp.asarray(x)}))


@hypothesis.settings(max_examples=40, **SETTINGS)
@hypothesis.given(poisoned(shapes=[(4, 1024), (64, 64), (3, 2048), (2, 3, 700)]),
                  st.integers(0, 1), st.booleans())
def test_nan_propagating_max_matches_numpy(case, axis, jit):
  x, _ = case
  fn = functools.partial(nonfinite.nan_propagating_max, axis=axis)
  got = np.asarray((jax.jit(fn) if jit else fn)(jnp.asarray(x)))
  np.testing.assert_array_equal(got, np.max(x, axis=axis))  # numpy propagates NaN.


# --- every optimizer, the wrapper alone and the trainer's chain ----------------------------------

def _trainer_chain(name: str) -> optax.GradientTransformationExtraArgs:
  from models.config import get_config
  from train.configs import default
  from train.optimizer import make_optimizer
  config = default.get_config()
  config.optimizer.name = name
  return make_optimizer(config.optimizer, get_config("cpu192"), total_steps=100)[0]


OPTIMIZERS = {
    "muon": lambda: om.muon(1e-2),
    "muown": lambda: om.muown(1e-2, weight_decay=0.1),
    "muon_plus_plus": lambda: om.muon_plus_plus(2e-2),
    "normuon": lambda: om.normuon(1e-2),
    "skip_nonfinite(adamw)": lambda: om.skip_nonfinite(optax.adamw(1e-3)),
    "trainer chain, muon": lambda: _trainer_chain("muon"),
    "trainer chain, adamw": lambda: _trainer_chain("adamw"),
}


@functools.cache
def _optimizer(name: str, jit: bool):
  tx = OPTIMIZERS[name]()
  return tx, (jax.jit(tx.init), jax.jit(tx.update)) if jit else (tx.init, tx.update)


def _params(shape: tuple[int, ...]) -> dict:
  """A matrix leaf of `shape` (Muon's, for the aliases), an embedding and a bias (AdamW's)."""
  rng = np.random.default_rng(0)
  return {"layers": {"mlp": {"kernel": jnp.asarray(rng.standard_normal(shape), jnp.float32)}},
          "embed": {"embedding": jnp.asarray(rng.standard_normal((256, 64)), jnp.float32)},
          "final_norm": {"bias": jnp.zeros(64)}}


def _assert_step_skipped(tx, init, update, params, bad_grads):
  state = init(params)
  good = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  _, state = update(good, state, params)  # Moments that a skipped step must keep.
  before = jax.tree.map(np.asarray, state)
  updates, new_state = update(bad_grads, state, params)
  for u in jax.tree.leaves(updates):
    np.testing.assert_array_equal(np.asarray(u), 0.0)
  new_params = optax.apply_updates(params, updates)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               new_params, params)
  assert int(om.skipped_steps(new_state)) == 1
  counts = lambda x: isinstance(x, tuple) and "skipped_steps" in getattr(x, "_fields", ())
  strip = lambda s: jax.tree.map(lambda x: x._replace(skipped_steps=0) if counts(x) else x, s,
                                 is_leaf=counts)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               strip(jax.tree.map(np.asarray, new_state)), strip(before))
  del tx


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@hypothesis.settings(max_examples=10, **SETTINGS)
@hypothesis.given(shape=st.sampled_from(SHAPES[1:]), leaf=st.sampled_from(["matrix", "adamw"]),
                  bad=BAD, where=st.sampled_from(["first", "last", "middle"]),
                  jit=st.booleans())
def test_one_bad_gradient_changes_nothing(name, shape, leaf, bad, where, jit):
  hypothesis.assume(jit or shape != (1024, 4096))  # Op by op, the largest case is slow alone.
  params = _params(shape)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
  parent, key = (grads["layers"]["mlp"], "kernel") if leaf == "matrix" else (grads["embed"],
                                                                              "embedding")
  x = np.array(parent[key])
  index = {"first": 0, "last": x.size - 1, "middle": x.size // 2 + 1}[where]
  x.reshape(-1)[index] = bad
  parent[key] = jnp.asarray(x)
  tx, (init, update) = _optimizer(name, jit)
  _assert_step_skipped(tx, init, update, params, grads)


@pytest.mark.parametrize("name", ["muon", "muon_plus_plus", "skip_nonfinite(adamw)"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_bare_array_gradient_is_skipped(name, bad):
  params = jnp.asarray(np.random.default_rng(1).standard_normal((128, 64)), jnp.float32)
  grads = jnp.ones_like(params).at[100, 7].set(bad)
  tx, (init, update) = _optimizer(name, True)
  _assert_step_skipped(tx, init, update, params, grads)


@pytest.mark.parametrize("name", ["muon", "muown", "muon_plus_plus", "normuon",
                                  "trainer chain, adamw"])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_one_bad_gradient_on_the_8_device_mesh(name, bad):
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
  shard = lambda x: jax.device_put(
      x, NamedSharding(mesh, P("fsdp") if x.shape[0] % 8 == 0 else P()))
  params = jax.tree.map(shard, {**_params((128, 512)),
                                "stack": jnp.ones((8, 96, 64)) * 0.1})
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
  grads["layers"]["mlp"]["kernel"] = shard(grads["layers"]["mlp"]["kernel"].at[100, 300].set(bad))
  tx = OPTIMIZERS[name]()
  with jax.set_mesh(mesh):
    _assert_step_skipped(tx, jax.jit(tx.init), jax.jit(tx.update), params, grads)


def test_the_reported_snippet_skips_for_every_alias():
  rng = np.random.default_rng(0)
  p = {"w1": jnp.asarray(rng.standard_normal((64, 256)) * 0.05, jnp.float32),
       "w2": jnp.asarray(rng.standard_normal((256, 64)) * 0.05, jnp.float32)}
  g = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32), p)
  g["w1"] = g["w1"].at[0, 0].set(jnp.nan)
  for alias in (om.muon, om.muown, om.muon_plus_plus, om.normuon):
    tx = alias(0.01)
    u, st_ = jax.jit(tx.update)(g, tx.init(p), p)
    assert all(not np.asarray(x).any() for x in jax.tree.leaves(u)), alias.__name__
    assert int(om.skipped_steps(st_)) == 1, alias.__name__


def test_diagnostics_report_nan_instead_of_a_finite_max():
  # Row norms of two [64, 4096] matrices, one NaN entry: max and min over 4096 norms each.
  from optax_muon.diagnostics import statistics
  w = np.random.default_rng(2).standard_normal((2, 64, 4096)).astype(np.float32)
  w[1, 5, 9] = np.nan
  r = np.sqrt(np.sum(np.square(w), axis=1))
  got = jax.jit(lambda w: statistics.row_factors(w, spectral_norm=jnp.ones(2)))(jnp.asarray(w))
  # assert_allclose compares NaN positions exactly.
  np.testing.assert_allclose(np.asarray(got["row_magnitude"]), np.max(r, axis=-1), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(got["row_norm_min"]), np.min(r, axis=-1), rtol=1e-6)
  logits = {"layers_0": jnp.ones(4), "layers_1": jnp.ones(4096).at[9].set(jnp.nan)}
  summary = jax.jit(statistics.attention_logit_summary)(logits)
  assert np.isnan(summary["max_logit/layers_1"]) and np.isnan(summary["max_logit/all"])
  assert float(summary["max_logit/layers_0"]) == 1.0
