"""Long-sequence memory savers compute what the plain model computes.

Blockwise attention (`attention_chunk`), the chunked head + loss (`train.step.chunked_losses`)
and the remat policies change memory, not numbers.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import models
from train.step import chunked_losses

CFG = models.ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                         max_len=64)


def _loss_and_grads(cfg, tokens_BxL, segment_ids_BxL=None):
  with nnx.use_eager_sharding(False):
    graphdef, state = nnx.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))
  params = nnx.to_pure_dict(state)

  def loss(p):
    logits, aux = nnx.merge(graphdef, p)(tokens_BxL, segment_ids_BxL)
    return (jnp.mean(jax.nn.logsumexp(logits, -1) - logits[..., 1]),
            jnp.stack(list(aux["max_logits"].values())))

  return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("scan", [False, True])
def test_chunked_attention_matches_whole(packed, scan):
  tokens = jax.random.randint(jax.random.key(1), (2, 64), 0, 64)
  segments = jnp.repeat(jnp.arange(4), 16)[None].repeat(2, 0) if packed else None
  base = dataclasses.replace(CFG, scan_layers=scan)
  (loss, max_logits), grads = _loss_and_grads(base, tokens, segments)
  (loss_c, max_c), grads_c = _loss_and_grads(
      dataclasses.replace(base, attention_chunk=16), tokens, segments)
  np.testing.assert_allclose(loss_c, loss, rtol=1e-5)
  np.testing.assert_allclose(max_c, max_logits, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads_c,
               grads)


def test_attention_chunk_must_divide_the_sequence():
  tokens = jnp.zeros((1, 48), jnp.int32)
  with pytest.raises(ValueError, match="attention_chunk"):
    _loss_and_grads(dataclasses.replace(CFG, attention_chunk=32), tokens)


@pytest.mark.parametrize("policy", ["full", "minimal"])
def test_remat_policies_keep_the_gradients(policy):
  tokens = jax.random.randint(jax.random.key(2), (2, 32), 0, 64)
  _, grads = _loss_and_grads(dataclasses.replace(CFG, scan_layers=True), tokens)
  _, grads_r = _loss_and_grads(
      dataclasses.replace(CFG, scan_layers=True, remat=True, remat_policy=policy), tokens)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads_r,
               grads)


def test_unknown_remat_policy_names_the_field():
  with pytest.raises(ValueError, match="remat_policy"):
    dataclasses.replace(CFG, remat_policy="everything")


def test_chunked_losses_match_whole():
  w_DxV = jax.random.normal(jax.random.key(3), (32, 64))
  x_BxLxD = jax.random.normal(jax.random.key(4), (2, 64, 32))
  t_BxL = jax.random.randint(jax.random.key(5), (2, 64), 0, 64)
  head = lambda x: x @ w_DxV

  def total(w, chunk):
    return chunked_losses(lambda x: x @ w, x_BxLxD, t_BxL, chunk).sum()

  whole = optax.softmax_cross_entropy_with_integer_labels(head(x_BxLxD), t_BxL)
  np.testing.assert_allclose(chunked_losses(head, x_BxLxD, t_BxL, 16), whole, rtol=1e-5)
  np.testing.assert_allclose(jax.grad(total)(w_DxV, 16), jax.grad(total)(w_DxV, 0), rtol=1e-4,
                             atol=1e-5)
