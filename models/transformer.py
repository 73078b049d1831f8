"""Decoder-only transformer LM in Flax NNX.

Pre-norm blocks of grouped-query attention (RoPE, optional QK-norm) and a SwiGLU MLP. Every
projection is a 2-D kernel `[fan_in, fan_out]` (`[L, fan_in, fan_out]` with `scan_layers`) carrying
logical axis names for `models.sharding.LOGICAL_RULES`. The forward pass also returns, per layer,
the max pre-softmax attention logit of each query head (for QK-clip and monitoring). With
`remat`, each block's activations are recomputed in the backward pass instead of stored.

Packed rows (several documents in one row) pass `segment_ids_BxL` (attention stays inside a
segment: block-diagonal causal mask) and `positions_BxL` (RoPE positions restarting at 0 in each
document); without them the row is one causal sequence at positions `0..L-1`.

Activations carry sharding constraints at every block boundary and inside attention and the MLP
(`models.sharding.constrain`: batch over ("data", "fsdp")), so a scanned or rematerialized stack
keeps the batch sharded. `remat_policy` picks what the backward pass keeps ("full": nothing,
"minimal": the projections' outputs, MaxText's names). With `attention_chunk`, attention runs
over blocks of that many queries (each block's scores recomputed in the backward pass), so
`[B, H, L, L]` scores are never held at once.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from models.config import ModelConfig
from models.sharding import constrain

Array = jax.Array
Rope = tuple[Array, Array]  # (sin, cos), each [L, K/2] or per row [B, L, K/2].

_RESIDUAL = ("batch", "length", "act_embed")
# Names of the values `remat_policy="minimal"` keeps for the backward pass (MaxText's).
_MINIMAL_SAVED = ("query_proj", "key_proj", "value_proj", "out_proj", "mlpwi_0", "mlpwi_1",
                  "mlpwo")


def remat_policy(name: str):
  """The `jax.checkpoint` policy of `ModelConfig.remat_policy`.

  "full" saves nothing (each block is recomputed whole in the backward pass); "minimal" saves
  the outputs of the q/k/v/o and MLP projections and recomputes the rest (norms, RoPE,
  attention scores, activations), as MaxText's policies of the same names.
  """
  if name == "full":
    return jax.checkpoint_policies.nothing_saveable
  if name == "minimal":
    return jax.checkpoint_policies.save_only_these_names(*_MINIMAL_SAVED)
  raise ValueError(f"remat_policy={name!r}: choose from ('full', 'minimal')")


def _kernel_init(cfg: ModelConfig, fan_in: int, fan_out: int, proj: bool = False):
  """Init for hidden kernels: fan-in scaled normal, spectral (μP) with ‖W‖₂ = √(out/in), or
  GPT-2's (normal(0.02); output projections 0.02/sqrt(2·n_layers)).

  With `zero_init_proj`, the residual branches' output projections (`proj=True`) start at 0.
  """
  if proj and cfg.zero_init_proj:
    return nnx.initializers.zeros_init()
  if cfg.gpt2_init:
    return nnx.initializers.normal(stddev=0.02 / (math.sqrt(2 * cfg.n_layers) if proj else 1.0))
  if cfg.mup_init:
    return orthogonal_init(math.sqrt(fan_out / fan_in))
  return nnx.initializers.normal(stddev=1.0 / math.sqrt(fan_in))


# Quintic Newton–Schulz p(σ) = (15σ − 10σ³ + 3σ⁵)/8: p(1) = 1 with p'(1) = 0, p'(0) = 15/8.
_POLAR_COEFFS = (15 / 8, -10 / 8, 3 / 8)
_POLAR_STEPS = 40  # σ_min/‖G‖_F ≥ 1e-10 reaches 1: a square Gaussian's is ~n^-1.5


def orthogonal_init(scale: float):
  """Semi-orthogonal init with every singular value `scale`: the polar factor of a Gaussian.

  The polar factor of a Gaussian matrix is distributed like `nnx.initializers.orthogonal`'s
  (Haar), but is computed by Newton–Schulz, matrix products only: LAPACK's batched QR, which
  that initializer calls, deadlocks when several CPU devices run it at once (a trainer on a
  multi-device CPU mesh).

  Examples:
    >>> import jax, numpy as np
    >>> w = orthogonal_init(2.0)(jax.random.key(0), (16, 64))
    >>> np.allclose(np.asarray(w @ w.T), 4.0 * np.eye(16), atol=1e-4)
    True
  """
  def init(key, shape, dtype=jnp.float32):
    x = jax.random.normal(key, shape, jnp.float32)
    wide = shape[-2] <= shape[-1]
    x = x if wide else jnp.swapaxes(x, -1, -2)  # short side first: x xᵀ is the small Gram
    x = x / jnp.linalg.norm(x, axis=(-2, -1), keepdims=True)  # every σ in (0, 1]
    a, b, c = _POLAR_COEFFS

    def step(_, x):
      gram = x @ jnp.swapaxes(x, -1, -2)
      return a * x + (b * gram + c * gram @ gram) @ x

    x = jax.lax.fori_loop(0, _POLAR_STEPS, step, x)
    x = x if wide else jnp.swapaxes(x, -1, -2)
    return (scale * x).astype(dtype)

  return init


def _fused(init, parts: int):
  """An init of `parts` matrices side by side along the last axis, each drawn as its own."""
  def fused_init(key, shape, dtype=jnp.float32):
    part = (*shape[:-1], shape[-1] // parts)
    return jnp.concatenate([init(k, part, dtype) for k in jax.random.split(key, parts)], -1)

  return fused_init


def _linear(cfg: ModelConfig, fan_in: int, fan_out: int, names: tuple[str, str], rngs: nnx.Rngs,
            proj: bool = False, parts: int = 1):
  init = _kernel_init(cfg, fan_in, fan_out // parts, proj)
  return nnx.Linear(
      fan_in, fan_out, use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
      kernel_init=nnx.with_partitioning(init if parts == 1 else _fused(init, parts), names),
      rngs=rngs)


def _rms_norm(cfg: ModelConfig, dim: int, axis_name: str, rngs: nnx.Rngs) -> nnx.RMSNorm:
  return nnx.RMSNorm(
      dim, epsilon=1e-6, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
      scale_init=nnx.with_partitioning(nnx.initializers.ones, (axis_name,)), rngs=rngs)


def rope_tables(length: int, head_dim: int, base: float) -> Rope:
  """`(sin_LxK2, cos_LxK2)` rotary tables for positions `0..length-1` (K2 = head_dim/2)."""
  inv_freq_K2 = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  angle_LxK2 = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq_K2[None, :]
  return jnp.sin(angle_LxK2), jnp.cos(angle_LxK2)


def rope_tables_at(positions_BxL: Array, head_dim: int, base: float) -> Rope:
  """`(sin_BxLxK2, cos_BxLxK2)` rotary tables for per-row positions."""
  inv_freq_K2 = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  angle_BxLxK2 = positions_BxL.astype(jnp.float32)[..., None] * inv_freq_K2
  return jnp.sin(angle_BxLxK2), jnp.cos(angle_BxLxK2)


def apply_rope(x_BxLxHxK: Array, rope: Rope) -> Array:
  """Rotates the two halves of the head dimension by position-dependent angles."""
  sin_LxK2, cos_LxK2 = (t[None, :, None, :] if t.ndim == 2 else t[:, :, None, :] for t in rope)
  x1, x2 = jnp.split(x_BxLxHxK.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos_LxK2 - x2 * sin_LxK2, x2 * cos_LxK2 + x1 * sin_LxK2], axis=-1)
  return out.astype(x_BxLxHxK.dtype)


class Attention(nnx.Module):
  """Causal grouped-query attention; query head h uses key/value head h // (H / G)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d, h, g, k = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    if cfg.fused_qkv:  # GPT-2's c_attn: [q | k | v] in one [d, 3·h·k] kernel
      self.qkv = _linear(cfg, d, 3 * h * k, ("embed", "heads"), rngs, parts=3)
    else:
      self.q = _linear(cfg, d, h * k, ("embed", "heads"), rngs)
      self.k = _linear(cfg, d, g * k, ("embed", "kv"), rngs)
      self.v = _linear(cfg, d, g * k, ("embed", "kv"), rngs)
    self.o = _linear(cfg, h * k, d, ("heads", "embed"), rngs, proj=True)
    if cfg.qk_norm:
      self.q_norm = _rms_norm(cfg, k, "head_dim", rngs)
      self.k_norm = _rms_norm(cfg, k, "head_dim", rngs)

  def __call__(self, x_BxLxD: Array, rope: Rope,
               mask_BxLxM: Array | None = None) -> tuple[Array, Array]:
    """Returns the attention output and the max pre-softmax logit per query head `[H]`.

    `mask_BxLxM` (True = may attend) replaces the plain causal mask, e.g. for packed rows.
    """
    cfg = self.cfg
    b, l, _ = x_BxLxD.shape
    g, r, k = cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads, cfg.head_dim
    heads = ("batch", "length", "heads", None)
    kv = ("batch", "length", "kv", None)
    if cfg.fused_qkv:
      q_BxLxD, k_BxLxD, v_BxLxD = jnp.split(self.qkv(x_BxLxD), 3, axis=-1)
    else:
      q_BxLxD, k_BxLxD, v_BxLxD = self.q(x_BxLxD), self.k(x_BxLxD), self.v(x_BxLxD)
    q_BxLxHxK = checkpoint_name(q_BxLxD, "query_proj").reshape(b, l, g * r, k)
    k_BxLxGxK = checkpoint_name(k_BxLxD, "key_proj").reshape(b, l, g, k)
    v_BxLxGxK = constrain(checkpoint_name(v_BxLxD, "value_proj").reshape(b, l, g, k), kv)
    if cfg.qk_norm:
      q_BxLxHxK, k_BxLxGxK = self.q_norm(q_BxLxHxK), self.k_norm(k_BxLxGxK)
    q_BxLxHxK = constrain(apply_rope(q_BxLxHxK, rope), heads)
    k_BxLxGxK = constrain(apply_rope(k_BxLxGxK, rope), kv)
    q_BxLxGxRxK = q_BxLxHxK.reshape(b, l, g, r, k)
    chunk = cfg.attention_chunk
    if chunk and l > chunk:
      if l % chunk:
        raise ValueError(f"attention_chunk={chunk} does not divide the sequence length {l}")
      out_BxLxGxRxK, max_logits_GxR = _chunked_attention(
          q_BxLxGxRxK, k_BxLxGxK, v_BxLxGxK, mask_BxLxM, chunk, cfg.dtype)
    else:
      rows_L = jnp.arange(l)
      out_BxLxGxRxK, max_logits_GxR = _attend(
          q_BxLxGxRxK, k_BxLxGxK, v_BxLxGxK, rows_L,
          None if mask_BxLxM is None else mask_BxLxM, cfg.dtype)
    out_BxLxD = out_BxLxGxRxK.reshape(b, l, g * r * k)
    out_BxLxD = constrain(out_BxLxD, ("batch", "length", "heads"))
    return checkpoint_name(self.o(out_BxLxD), "out_proj"), max_logits_GxR.reshape(g * r)


def _attend(q_BxCxGxRxK: Array, k_BxMxGxK: Array, v_BxMxGxK: Array, rows_C: Array,
            mask_BxCxM: Array | None, dtype) -> tuple[Array, Array]:
  """Softmax attention of `C` query rows (at positions `rows_C`) over all `M` keys.

  Causal (key position <= `rows_C`) unless `mask_BxCxM` (True = may attend) is given. Returns
  the output `[B, C, G, R, K]` and the max pre-softmax logit per head `[G, R]`.
  """
  k = q_BxCxGxRxK.shape[-1]
  logits_BxGxRxCxM = jnp.einsum(
      "blgrk,bmgk->bgrlm", q_BxCxGxRxK, k_BxMxGxK,
      preferred_element_type=jnp.float32) / math.sqrt(k)
  logits_BxGxRxCxM = constrain(logits_BxGxRxCxM, ("batch", "kv", None, None, None))
  if mask_BxCxM is None:
    allowed = rows_C[:, None] >= jnp.arange(k_BxMxGxK.shape[1])[None, :]
  else:
    allowed = mask_BxCxM[:, None, None]
  logits_BxGxRxCxM = jnp.where(allowed, logits_BxGxRxCxM, -jnp.inf)
  max_logits_GxR = jax.lax.stop_gradient(logits_BxGxRxCxM.max(axis=(0, 3, 4)))
  probs_BxGxRxCxM = jax.nn.softmax(logits_BxGxRxCxM, axis=-1).astype(dtype)
  out_BxCxGxRxK = jnp.einsum("bgrlm,bmgk->blgrk", probs_BxGxRxCxM, v_BxMxGxK)
  return constrain(out_BxCxGxRxK, ("batch", "length", "kv", None, None)), max_logits_GxR


def _chunked_attention(q_BxLxGxRxK: Array, k_BxLxGxK: Array, v_BxLxGxK: Array,
                       mask_BxLxM: Array | None, chunk: int, dtype) -> tuple[Array, Array]:
  """`_attend` over blocks of `chunk` queries (a `lax.map`); each block is rematerialized.

  Holds one block's `[B, H, chunk, L]` scores at a time, in the forward and the backward pass,
  instead of `[B, H, L, L]`. Same flops as the whole-sequence attention.
  """
  b, l, g, r, k = q_BxLxGxRxK.shape
  n = l // chunk
  q_NxBxCxGxRxK = jnp.moveaxis(q_BxLxGxRxK.reshape(b, n, chunk, g, r, k), 1, 0)
  rows_NxC = jnp.arange(l).reshape(n, chunk)
  masks = None if mask_BxLxM is None else jnp.moveaxis(mask_BxLxM.reshape(b, n, chunk, l), 1, 0)

  @jax.checkpoint
  def block(xs):
    q_BxCxGxRxK, rows_C, mask_BxCxM = xs
    q_BxCxGxRxK = constrain(q_BxCxGxRxK, ("batch", "length", "kv", None, None))
    return _attend(q_BxCxGxRxK, k_BxLxGxK, v_BxLxGxK, rows_C, mask_BxCxM, dtype)

  out_NxBxCxGxRxK, max_NxGxR = jax.lax.map(block, (q_NxBxCxGxRxK, rows_NxC, masks))
  out_BxLxGxRxK = jnp.moveaxis(out_NxBxCxGxRxK, 0, 1).reshape(b, l, g, r, k)
  return out_BxLxGxRxK, max_NxGxR.max(axis=0)


class Mlp(nnx.Module):
  """SwiGLU MLP: down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.gate = _linear(cfg, cfg.d_model, cfg.d_ff, ("embed", "mlp"), rngs)
    self.up = _linear(cfg, cfg.d_model, cfg.d_ff, ("embed", "mlp"), rngs)
    self.down = _linear(cfg, cfg.d_ff, cfg.d_model, ("mlp", "embed"), rngs, proj=True)

  def __call__(self, x_BxLxD: Array) -> Array:
    hidden = ("batch", "length", "mlp")
    gate_BxLxF = constrain(checkpoint_name(self.gate(x_BxLxD), "mlpwi_0"), hidden)
    up_BxLxF = constrain(checkpoint_name(self.up(x_BxLxD), "mlpwi_1"), hidden)
    return checkpoint_name(self.down(jax.nn.silu(gate_BxLxF) * up_BxLxF), "mlpwo")


class Block(nnx.Module):
  """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.attn_norm = _rms_norm(cfg, cfg.d_model, "embed", rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.mlp_norm = _rms_norm(cfg, cfg.d_model, "embed", rngs)
    self.mlp = Mlp(cfg, rngs=rngs)

  def __call__(self, x_BxLxD: Array, rope: Rope,
               mask_BxLxM: Array | None = None) -> tuple[Array, Array]:
    x_BxLxD = constrain(x_BxLxD, _RESIDUAL)
    attn_BxLxD, max_logits_H = self.attn(self.attn_norm(x_BxLxD), rope, mask_BxLxM)
    x_BxLxD = constrain(x_BxLxD + attn_BxLxD, _RESIDUAL)
    return constrain(x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD)), _RESIDUAL), max_logits_H


def _stacked_blocks(cfg: ModelConfig, rngs: nnx.Rngs) -> Block:
  """One `Block` whose params are stacked `[L, ...]` along a leading "layers" axis."""

  @nnx.split_rngs(splits=cfg.n_layers)
  @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
  def create(rngs: nnx.Rngs) -> Block:
    return Block(cfg, rngs=rngs)

  return create(rngs)


def _apply_block(block: Block, x_BxLxD: Array, rope: Rope,
                 mask_BxLxM: Array | None) -> tuple[Array, Array]:
  """`block(x, rope, mask)`; wrapped in `nnx.remat` when `cfg.remat` (activations recomputed)."""
  return block(x_BxLxD, rope, mask_BxLxM)


def segment_mask(segment_ids_BxL: Array) -> Array:
  """`[B, L, M]` causal mask that also keeps each query inside its own segment."""
  l = segment_ids_BxL.shape[1]
  same_BxLxM = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
  return same_BxLxM & jnp.tril(jnp.ones((l, l), dtype=bool))


def layer_name(i: int) -> str:
  """The key of layer `i` in `aux["max_logits"]` (and in QK-clip specs)."""
  return f"layers_{i}"


class Transformer(nnx.Module):
  """Decoder-only LM: `tokens_BxL -> (logits_BxLxV, aux)` (bytes or any tokenizer's ids)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    embed_std = 1.0 / math.sqrt(cfg.d_model) if cfg.tie_embeddings else 1.0
    self.embed = nnx.Embed(
        cfg.vocab_size, cfg.d_model, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        embedding_init=nnx.with_partitioning(
            nnx.initializers.normal(stddev=embed_std), ("vocab", "embed")),
        rngs=rngs)
    if cfg.scan_layers:
      self.layers = _stacked_blocks(cfg, rngs)
    else:
      self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
    self.final_norm = _rms_norm(cfg, cfg.d_model, "embed", rngs)
    if not cfg.tie_embeddings:
      self.lm_head = nnx.Linear(
          cfg.d_model, cfg.vocab_size, use_bias=False, dtype=cfg.dtype,
          param_dtype=cfg.param_dtype,
          kernel_init=nnx.with_partitioning(
              nnx.initializers.normal(stddev=1.0 / cfg.d_model), ("embed", "vocab")),
          rngs=rngs)

  def __call__(self, tokens_BxL: Array, segment_ids_BxL: Array | None = None,
               positions_BxL: Array | None = None) -> tuple[Array, dict]:
    """Returns float32 logits and `aux = {"max_logits": {layer_name: [n_heads]}}`.

    With `segment_ids_BxL`, a token attends only to earlier tokens of its own segment; with
    `positions_BxL`, those are its RoPE positions (default `0..L-1`).
    """
    x_BxLxD, aux = self.hidden(tokens_BxL, segment_ids_BxL, positions_BxL)
    return self.head(x_BxLxD), aux

  def head(self, x_BxLxD: Array) -> Array:
    """Float32 logits `[B, L, V]` of final hidden states (see `hidden`)."""
    if self.cfg.tie_embeddings:
      logits_BxLxV = self.embed.attend(x_BxLxD)
    else:
      logits_BxLxV = self.lm_head(x_BxLxD)
    return constrain(logits_BxLxV.astype(jnp.float32), ("batch", "length", "vocab"))

  def hidden(self, tokens_BxL: Array, segment_ids_BxL: Array | None = None,
             positions_BxL: Array | None = None) -> tuple[Array, dict]:
    """The final-normed hidden states `[B, L, D]` (the head's input) and the aux outputs.

    `head(hidden(...)[0])` is `__call__`; a loss may apply the head in chunks instead.
    """
    cfg = self.cfg
    if positions_BxL is None:
      rope = rope_tables(tokens_BxL.shape[1], cfg.head_dim, cfg.rope_base)
    else:
      rope = rope_tables_at(positions_BxL, cfg.head_dim, cfg.rope_base)
    mask_BxLxM = None if segment_ids_BxL is None else segment_mask(segment_ids_BxL)
    x_BxLxD = constrain(self.embed(tokens_BxL), _RESIDUAL)
    apply = (nnx.remat(_apply_block, policy=remat_policy(cfg.remat_policy)) if cfg.remat
             else _apply_block)
    if cfg.scan_layers:
      @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
      def run(x_BxLxD: Array, block: Block) -> tuple[Array, Array]:
        return apply(block, x_BxLxD, rope, mask_BxLxM)

      x_BxLxD, max_logits_NxH = run(x_BxLxD, self.layers)
      max_logits = {layer_name(i): max_logits_NxH[i] for i in range(cfg.n_layers)}
    else:
      max_logits = {}
      for i, block in enumerate(self.layers):
        x_BxLxD, max_logits[layer_name(i)] = apply(block, x_BxLxD, rope, mask_BxLxM)
    x_BxLxD = constrain(self.final_norm(x_BxLxD), _RESIDUAL)
    return x_BxLxD, {"max_logits": max_logits}
