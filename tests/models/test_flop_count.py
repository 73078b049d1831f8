"""What XLA's `cost_analysis()` counts of a training step, against the equations.

`benchmarks/pod_scale.py` reads a step's flops from `cost_analysis()`; the 70B step it counts
is 1.15x the model's 6·N·tokens + attention, not the 1.33x a full recompute would give. Both
reasons are checked here on a one-layer model, its matmul flops written out by hand:
- remat recomputes only the projections whose outputs the backward pass needs (q, k, v, gate,
  up), not the attention output and MLP down projections, whose inputs are all it needs;
- blockwise attention is a `lax.map` whose body is counted once: one query block of `n`.
"""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import models

D, FF, HEADS, KV_HEADS, VOCAB, SEQ, BATCH, CHUNKS = 256, 1024, 4, 2, 512, 512, 2, 4
TOKENS = BATCH * SEQ
HEAD_DIM = D // HEADS
# One layer's projections, in parameters: q and o [D, D], k and v [D, KV_HEADS·HEAD_DIM],
# gate, up and down [D, FF].
Q, KV, O, MLP_IN, DOWN = D * D, 2 * D * KV_HEADS * HEAD_DIM, D * D, 2 * D * FF, D * FF
# Forward flops per token of attention over the whole sequence: Q Kᵀ and P V.
ATTENTION = 4 * SEQ * D


def _step_flops(**options) -> float:
  cfg = models.ModelConfig(vocab_size=VOCAB, d_model=D, n_layers=1, n_heads=HEADS,
                           n_kv_heads=KV_HEADS, d_ff=FF, max_len=SEQ, **options)
  with nnx.use_eager_sharding(False):
    graphdef, state = nnx.split(models.Transformer(cfg, rngs=nnx.Rngs(0)))

  def loss(params, tokens_BxL):
    logits, _ = nnx.merge(graphdef, params)(tokens_BxL)
    return jnp.mean(jnp.square(logits.astype(jnp.float32)))

  tokens = jnp.zeros((BATCH, SEQ), jnp.int32)
  compiled = jax.jit(jax.grad(loss)).lower(nnx.to_pure_dict(state), tokens).compile()
  return compiled.cost_analysis()["flops"]


def test_remat_recomputes_only_the_projections_the_backward_pass_reads():
  plain, remat = _step_flops(), _step_flops(remat=True)
  needed = 2 * (Q + KV + MLP_IN) * TOKENS + ATTENTION * TOKENS  # forward again, less o and down
  whole = needed + 2 * (O + DOWN) * TOKENS
  assert needed <= remat - plain < 0.5 * (needed + whole), (remat - plain, needed, whole)


def test_a_chunked_attention_counts_one_block_of_its_lax_map():
  plain, chunked = _step_flops(), _step_flops(attention_chunk=SEQ // CHUNKS)
  attention = 3 * ATTENTION * TOKENS  # forward and backward
  assert plain - chunked == pytest.approx(attention * (CHUNKS - 1) / CHUNKS, rel=0.1)
