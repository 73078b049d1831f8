"""Transformer: shapes, causality, GQA grouping, scan equivalence, max logits, init."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from models import transformer


def make(cfg: models.ModelConfig, seed: int = 0) -> models.Transformer:
  """Builds the model under jit (eager NNX init is slow: one dispatch per op)."""
  @nnx.jit
  def build():
    with nnx.use_eager_sharding(False):
      return models.Transformer(cfg, rngs=nnx.Rngs(seed))
  return build()


@nnx.jit
def forward(model: models.Transformer, tokens_BxL: jax.Array):
  return model(tokens_BxL)


def tokens(b: int = 2, l: int = 16, seed: int = 0) -> jax.Array:
  return jax.random.randint(jax.random.key(seed), (b, l), 0, 256)


@pytest.mark.parametrize("scan,tie", [(False, False), (True, True)])
def test_shapes(scan, tie):
  cfg = models.get_config("tiny", n_layers=2, scan_layers=scan, tie_embeddings=tie)
  logits_BxLxV, aux = forward(make(cfg), tokens(3, 10))
  assert logits_BxLxV.shape == (3, 10, 256)
  assert logits_BxLxV.dtype == jnp.float32
  assert set(aux["max_logits"]) == {"layers_0", "layers_1"}
  assert all(v.shape == (cfg.n_heads,) for v in aux["max_logits"].values())
  assert hasattr(make(cfg), "lm_head") == (not tie)


  if not tie:  # Untied head starts near-uniform: loss ~ ln 256.
    assert abs(float(jax.nn.logsumexp(logits_BxLxV, -1).mean()) - math.log(256)) < 0.1


def test_causal():
  model = make(models.get_config("tiny", n_layers=2))
  t = tokens(1, 16)
  changed = t.at[0, 9].set((t[0, 9] + 1) % 256)
  a, _ = forward(model, t)
  b, _ = forward(model, changed)
  np.testing.assert_allclose(a[0, :9], b[0, :9], atol=1e-6)
  assert not np.allclose(a[0, 9:], b[0, 9:])


def _reference_attention(attn: transformer.Attention, x_BxLxD, rope):
  """Plain multi-head attention with each KV head repeated for its H/G query heads."""
  cfg = attn.cfg
  b, l, _ = x_BxLxD.shape
  h, g, k = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
  q = attn.q_norm(attn.q(x_BxLxD).reshape(b, l, h, k))
  kk = attn.k_norm(attn.k(x_BxLxD).reshape(b, l, g, k))
  q, kk = transformer.apply_rope(q, rope), transformer.apply_rope(kk, rope)
  v = attn.v(x_BxLxD).reshape(b, l, g, k)
  kk, v = jnp.repeat(kk, h // g, axis=2), jnp.repeat(v, h // g, axis=2)
  logits_BxHxLxM = jnp.einsum("blhk,bmhk->bhlm", q, kk) / math.sqrt(k)
  mask = jnp.tril(jnp.ones((l, l), bool))
  logits_BxHxLxM = jnp.where(mask, logits_BxHxLxM, -jnp.inf)
  out = jnp.einsum("bhlm,bmhk->blhk", jax.nn.softmax(logits_BxHxLxM, -1), v)
  return attn.o(out.reshape(b, l, h * k)), logits_BxHxLxM.max(axis=(0, 2, 3))


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_gqa_grouping_and_max_logits(n_kv_heads):
  cfg = models.get_config("tiny", n_kv_heads=n_kv_heads)
  with nnx.use_eager_sharding(False):
    attn = transformer.Attention(cfg, rngs=nnx.Rngs(1))
  x_BxLxD = jax.random.normal(jax.random.key(2), (2, 12, cfg.d_model))
  rope = transformer.rope_tables(12, cfg.head_dim, cfg.rope_base)
  out, max_logits_H = attn(x_BxLxD, rope)
  ref_out, ref_max_H = _reference_attention(attn, x_BxLxD, rope)
  np.testing.assert_allclose(out, ref_out, atol=1e-5)
  np.testing.assert_allclose(max_logits_H, ref_max_H, rtol=1e-5)


def test_max_logits_match_direct_computation_in_model():
  """aux max logits of layer 0 == max over (batch, causal pairs) of q.k/sqrt(d) per head."""
  cfg = models.get_config("tiny", n_layers=1, qk_norm=False)
  model = make(cfg)
  t = tokens(2, 16)
  _, aux = forward(model, t)
  block = model.layers[0]
  x_BxLxD = block.attn_norm(model.embed(t))
  rope = transformer.rope_tables(16, cfg.head_dim, cfg.rope_base)
  q = transformer.apply_rope(block.attn.q(x_BxLxD).reshape(2, 16, cfg.n_heads, -1), rope)
  k = transformer.apply_rope(block.attn.k(x_BxLxD).reshape(2, 16, cfg.n_kv_heads, -1), rope)
  k = jnp.repeat(k, cfg.n_heads // cfg.n_kv_heads, axis=2)
  s = jnp.einsum("blhk,bmhk->bhlm", q, k) / math.sqrt(cfg.head_dim)
  s = jnp.where(jnp.tril(jnp.ones((16, 16), bool)), s, -jnp.inf)
  np.testing.assert_allclose(aux["max_logits"]["layers_0"], s.max(axis=(0, 2, 3)), rtol=1e-5)


def test_scanned_equals_unscanned_for_same_weights():
  cfg = models.get_config("tiny", n_layers=3)
  flat = make(cfg)
  with nnx.use_eager_sharding(False):
    graphdef, _ = nnx.split(nnx.eval_shape(
        lambda: models.Transformer(models.get_config("tiny", n_layers=3, scan_layers=True),
                                   rngs=nnx.Rngs(0))))
  params = nnx.to_pure_dict(nnx.state(flat))
  stacked = dict(params)
  stacked["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs),
                                   *[params["layers"][i] for i in range(cfg.n_layers)])
  scanned = nnx.merge(graphdef, stacked)
  t = tokens()
  a, aux_a = forward(flat, t)
  b, aux_b = forward(scanned, t)
  np.testing.assert_allclose(a, b, atol=1e-5)
  for name in aux_a["max_logits"]:
    np.testing.assert_allclose(aux_a["max_logits"][name], aux_b["max_logits"][name], rtol=1e-5)
  shapes = jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(scanned)))
  assert shapes["layers"]["attn"]["q"]["kernel"] == (3, cfg.d_model, cfg.d_model)
  assert shapes["layers"]["mlp"]["down"]["kernel"] == (3, cfg.d_ff, cfg.d_model)


def test_mup_init_spectral_norm():
  cfg = models.get_config("tiny", n_layers=1, mup_init=True)
  params = nnx.to_pure_dict(nnx.state(make(cfg)))
  for name in ("gate", "down"):
    w = params["layers"][0]["mlp"][name]["kernel"]
    fan_in, fan_out = w.shape
    # Every singular value (numpy's SVD) is sqrt(fan_out/fan_in): semi-orthogonal, scaled.
    np.testing.assert_allclose(np.linalg.svd(np.asarray(w, np.float64), compute_uv=False),
                               math.sqrt(fan_out / fan_in), rtol=1e-4)


def test_mup_init_uses_no_lapack():
  # Batched LAPACK QR (what nnx.initializers.orthogonal calls) deadlocks when several CPU
  # devices run it at once: a trainer on a multi-device CPU mesh hung in it. The μP init must
  # compile to matrix products only.
  hlo = jax.jit(lambda k: transformer.orthogonal_init(2.0)(k, (64, 16))).lower(jax.random.key(0)).as_text()
  assert "lapack" not in hlo.lower() and "custom_call" not in hlo
  reference = jax.jit(lambda k: nnx.initializers.orthogonal()(k, (64, 16))).lower(
      jax.random.key(0)).as_text()
  assert "lapack" in reference.lower()  # the check can fail: the old init is caught


def test_presets_param_counts():
  counts = {}
  for name, cfg in models.PRESETS.items():
    with nnx.use_eager_sharding(False):
      abstract = nnx.eval_shape(lambda c=cfg: models.Transformer(c, rngs=nnx.Rngs(0)))
    shapes = nnx.to_pure_dict(nnx.state(abstract))
    counts[name] = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
    assert counts[name] > 0, name
  assert 0.8e9 < counts["1b"] < 1.3e9
  # The real shapes (GPT-2 124M, Llama-3.2-1B, Llama-3-8B, CodeLlama-34B), in billions.
  for name, (low, high) in {"gpt2-124m": (0.123, 0.125), "llama-1b": (1.2, 1.3),
                            "llama-8b": (7.9, 8.1), "llama-34b": (33.5, 34.5)}.items():
    assert low < counts[name] / 1e9 < high, (name, counts[name])


def _loss_and_grad(cfg: models.ModelConfig, t: jax.Array, compute: bool = True):
  """(loss, grads) of a toy loss, and whether the grad jaxpr recomputes (remat/checkpoint)."""
  graphdef, state = nnx.split(make(cfg))

  def loss(params):
    logits_BxLxV, _ = nnx.merge(graphdef, params)(t)
    return jnp.mean(jax.nn.logsumexp(logits_BxLxV, -1) - logits_BxLxV[..., 0])

  params = nnx.to_pure_dict(state)
  jaxpr = str(jax.make_jaxpr(jax.grad(loss))(params))
  value = jax.jit(jax.value_and_grad(loss))(params) if compute else None
  return value, "remat" in jaxpr or "checkpoint" in jaxpr


def test_remat_recomputes_with_same_loss_and_grads():
  t = tokens()
  cfg = models.get_config("tiny", n_layers=2, scan_layers=True)
  (loss_a, grads_a), remat_a = _loss_and_grad(cfg, t)
  (loss_b, grads_b), remat_b = _loss_and_grad(dataclasses.replace(cfg, remat=True), t)
  assert (remat_a, remat_b) == (False, True)
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  unscanned = models.get_config("tiny", n_layers=2, remat=True)
  assert _loss_and_grad(unscanned, t, compute=False)[1]


def test_one_segment_at_default_positions_is_the_plain_forward():
  """The packed path (segment ids, per-row positions) with one document == no packing."""
  model = make(models.get_config("tiny", n_layers=2))
  t = tokens(2, 16)
  plain, aux_plain = forward(model, t)
  packed, aux_packed = nnx.jit(lambda m, x, s, p: m(x, s, p))(
      model, t, jnp.ones_like(t), jnp.broadcast_to(jnp.arange(16), t.shape))
  np.testing.assert_allclose(packed, plain, atol=1e-6)
  for name in aux_plain["max_logits"]:
    np.testing.assert_allclose(aux_packed["max_logits"][name], aux_plain["max_logits"][name],
                               rtol=1e-6)
