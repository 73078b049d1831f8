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
  assert np.all(np.asarray(sigma) == 0) and np.isfinite(np.asarray(w)).all()
  assert np.isfinite(np.asarray(u)).all()
