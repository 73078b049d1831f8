"""The library's one power iteration, single vector and block, against numpy's SVD."""

import jax.numpy as jnp
import numpy as np

import optax_muon as om
from optax_muon._src import power_iteration as pi


def _bunched(rng, batch, p, q):
  """Matrices whose top 3 singular values are within 0.5% of each other."""
  out = []
  for _ in range(batch):
    u, _ = np.linalg.qr(rng.normal(size=(p, p)))
    v, _ = np.linalg.qr(rng.normal(size=(q, q)))
    s = np.concatenate([[1.0, 0.998, 0.995], np.linspace(0.6, 0.01, min(p, q) - 3)])
    out.append((u[:, :len(s)] * s) @ v[:, :len(s)].T)
  return np.stack(out)


def test_single_vector_converges_to_the_top_singular_triplet():
  m = np.random.default_rng(0).normal(size=(3, 20, 30))
  sigma, u, v = om.top_singular_triplet(jnp.asarray(m), iters=200)
  ref = np.linalg.svd(m, compute_uv=False)[:, 0]
  np.testing.assert_allclose(sigma, ref, rtol=1e-4)
  np.testing.assert_allclose(np.einsum("bp,bpq,bq->b", u, m, v), ref, rtol=1e-4)


def test_block_tracks_a_bunched_top_better_than_one_vector():
  # Same number of matvecs (4 rounds × 4 vectors vs 16 rounds × 1): the block's estimate of
  # σ₁ is within 1e-3 of the SVD's; the single vector's, on a 0.2% gap, is not as close.
  m = _bunched(np.random.default_rng(1), 4, 48, 64)
  ref = np.linalg.svd(m, compute_uv=False)[:, 0]
  block, u, v = om.top_singular_triplet(jnp.asarray(m), pi.start_vectors(4, 64, block=4), 4)
  single = om.top_singular_triplet(jnp.asarray(m), None, 16)[0]
  assert v.shape == (4, 64, 4)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(u), axis=1), 1.0, rtol=1e-5)
  assert np.all(np.asarray(block) <= ref * (1 + 1e-5))  # a lower bound
  assert np.max(1 - np.asarray(block) / ref) < 1e-3
  assert np.max(1 - np.asarray(block) / ref) <= np.max(1 - np.asarray(single) / ref)


def test_block_start_vectors_are_orthonormal_and_zero_matrix_is_finite():
  v = np.asarray(pi.start_vectors(2, 10, block=3))
  np.testing.assert_allclose(v[0].T @ v[0], np.eye(3), atol=1e-6)
  sigma, u, w = om.top_singular_triplet(jnp.zeros((2, 5, 10)), jnp.asarray(v), 3)
  assert np.all(np.asarray(sigma) == 0) and np.isfinite(np.asarray(u)).all()
  # A zero matrix keeps its block (a matrix that starts at zero, then grows, is tracked).
  np.testing.assert_allclose(np.asarray(w), v, atol=1e-6)
  m = np.random.default_rng(3).normal(size=(2, 5, 10))
  sigma = om.top_singular_triplet(jnp.asarray(m), w, 30)[0]
  np.testing.assert_allclose(sigma, np.linalg.svd(m, compute_uv=False)[:, 0], rtol=1e-4)


def test_block_rayleigh_ritz_equals_the_top_singular_value_of_the_block():
  # The block's σ is the largest singular value of M·V on the refined block; numpy's SVD of
  # that product is the reference (the matrix-product QR and eigenpair replace LAPACK's).
  rng = np.random.default_rng(2)
  m = rng.normal(size=(5, 30, 40)).astype(np.float32)
  sigma, u, v = om.top_singular_triplet(jnp.asarray(m), pi.start_vectors(5, 40, block=4), 3)
  v = np.asarray(v)
  np.testing.assert_allclose(np.einsum("bqk,bql->bkl", v, v), np.broadcast_to(np.eye(4), (5, 4, 4)),
                             atol=2e-6)
  ref = np.linalg.svd(np.einsum("bpq,bqk->bpk", m, v), compute_uv=False)[:, 0]
  np.testing.assert_allclose(np.asarray(sigma), ref, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(u), axis=1), 1.0, rtol=1e-5)


def test_top_eigenpair_matches_numpy_on_close_eigenvalues():
  rng = np.random.default_rng(3)
  q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
  g = np.stack([(q * lam) @ q.T for lam in ([1.0, 0.999, 0.5, 0.0], [2.0, 1e-3, 0, 0],
                                             [0.0, 0.0, 0.0, 0.0])]).astype(np.float32)
  lam, x = pi._top_eigenpair(jnp.asarray(g))
  np.testing.assert_allclose(np.asarray(lam), [1.0, 2.0, 0.0], atol=2e-6)
  ref = np.linalg.eigh(g[1])[1][:, -1]
  assert abs(abs(float(np.asarray(x)[1] @ ref)) - 1) < 1e-5


def test_no_update_calls_lapack():
  # Batched LAPACK kernels (QR, eigh) run on XLA:CPU's shared thread pool and deadlock
  # when two run at once on a 2-core machine; every optimizer update is matrix products.
  import jax

  params = {"w1": jnp.ones((8, 16)), "w2": jnp.ones((16, 8)), "b": jnp.ones(8)}
  for name in ("muon", "muown", "muon_plus_plus", "normuon"):
    tx = getattr(om, name)(1e-3)
    text = jax.jit(tx.update).lower(params, tx.init(params), params).as_text()
    assert "lapack" not in text, name
