"""Model configuration and size presets."""

import dataclasses
from typing import Any

import jax.numpy as jnp


REMAT_POLICIES = ("full", "minimal")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyperparameters of the decoder-only transformer in `models.transformer`."""

  vocab_size: int = 256
  d_model: int = 128
  n_layers: int = 4
  n_heads: int = 4
  n_kv_heads: int = 2
  d_ff: int = 384
  max_len: int = 128
  qk_norm: bool = True
  scan_layers: bool = False
  remat: bool = False  # Recompute each block's activations in the backward pass (saves memory).
  remat_policy: str = "full"  # With remat: "full" (keep nothing) | "minimal" (keep projections).
  attention_chunk: int = 0  # Queries per attention block (0 = the whole sequence at once).
  logits_chunk: int = 0  # Tokens per head + cross-entropy block in the loss (0 = all at once).
  tie_embeddings: bool = False
  mup_init: bool = False
  zero_init_proj: bool = False  # Output projections (attn o, mlp down) start at 0 (modded-nanogpt).
  # GPT-2's layout and init: one fused `[d, 3d]` QKV kernel (`attn/qkv`; needs n_kv_heads ==
  # n_heads), and every hidden kernel normal(0.02), the output projections 0.02/sqrt(2·n_layers).
  fused_qkv: bool = False
  gpt2_init: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  rope_base: float = 10_000.0

  def __post_init__(self):
    if self.d_model % self.n_heads:
      raise ValueError(f"d_model={self.d_model} not divisible by n_heads={self.n_heads}")
    if self.n_heads % self.n_kv_heads:
      raise ValueError(f"n_heads={self.n_heads} not divisible by n_kv_heads={self.n_kv_heads}")
    if self.head_dim % 2:
      raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy={self.remat_policy!r}: choose from {REMAT_POLICIES}")
    if self.fused_qkv and self.n_kv_heads != self.n_heads:
      raise ValueError(f"fused_qkv needs n_kv_heads == n_heads (a [d, 3d] kernel), got "
                       f"n_kv_heads={self.n_kv_heads}, n_heads={self.n_heads}")
    if self.gpt2_init and self.mup_init:
      raise ValueError("gpt2_init and mup_init are two inits: set one of them")
    for name in ("attention_chunk", "logits_chunk"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name}={getattr(self, name)}: must be >= 0 (0 = off)")

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    "cpu192": ModelConfig(d_model=192, n_layers=4, n_heads=6, n_kv_heads=2, d_ff=512),
    # cpu192's size as GPT-2 lays it out (multi-head, fused QKV, GPT-2's init): a user's model.
    "cpu192_fused": ModelConfig(d_model=192, n_layers=4, n_heads=6, n_kv_heads=6, d_ff=512,
                                fused_qkv=True, gpt2_init=True),
    "small": ModelConfig(d_model=512, n_layers=8, n_heads=8, n_kv_heads=4, d_ff=1536,
                         max_len=1024),
    "base": ModelConfig(d_model=768, n_layers=12, n_heads=12, n_kv_heads=4, d_ff=2048,
                        max_len=1024, scan_layers=True),
    "medium": ModelConfig(d_model=1024, n_layers=24, n_heads=16, n_kv_heads=8, d_ff=2816,
                          max_len=2048, scan_layers=True, remat=True),
    "1b": ModelConfig(d_model=2048, n_layers=22, n_heads=16, n_kv_heads=8, d_ff=5632,
                      max_len=2048, scan_layers=True, remat=True, dtype=jnp.bfloat16),
    # Real shapes, for `python -m train.aot` and pods. The MLP is SwiGLU everywhere (GPT-2's
    # GELU MLP of width 3072 becomes a SwiGLU of 2048: the same 124M params). Float32 params,
    # bfloat16 compute; attention in blocks of 1024 queries and the loss in blocks of 1024
    # tokens (docs/pod_scale.md measures what each saves).
    "gpt2-124m": ModelConfig(vocab_size=50257, d_model=768, n_layers=12, n_heads=12,
                             n_kv_heads=12, d_ff=2048, max_len=1024, qk_norm=False,
                             tie_embeddings=True, scan_layers=True, remat=True,
                             dtype=jnp.bfloat16),
    "llama-1b": ModelConfig(vocab_size=128256, d_model=2048, n_layers=16, n_heads=32,
                            n_kv_heads=8, d_ff=8192, max_len=8192, qk_norm=False,
                            tie_embeddings=True, scan_layers=True, remat=True,
                            dtype=jnp.bfloat16, rope_base=500_000.0, attention_chunk=1024,
                            logits_chunk=1024),
    "llama-8b": ModelConfig(vocab_size=128256, d_model=4096, n_layers=32, n_heads=32,
                            n_kv_heads=8, d_ff=14336, max_len=8192, qk_norm=False,
                            scan_layers=True, remat=True, dtype=jnp.bfloat16,
                            rope_base=500_000.0, attention_chunk=1024, logits_chunk=1024),
    "llama-34b": ModelConfig(vocab_size=32000, d_model=8192, n_layers=48, n_heads=64,
                             n_kv_heads=8, d_ff=22016, max_len=16384, qk_norm=False,
                             scan_layers=True, remat=True, dtype=jnp.bfloat16,
                             rope_base=1_000_000.0, attention_chunk=1024, logits_chunk=1024),
    "llama-70b": ModelConfig(vocab_size=128256, d_model=8192, n_layers=80, n_heads=64,
                             n_kv_heads=8, d_ff=28672, max_len=8192, qk_norm=False,
                             scan_layers=True, remat=True, dtype=jnp.bfloat16,
                             rope_base=500_000.0, attention_chunk=1024, logits_chunk=1024),
}


def get_config(preset: str, **overrides) -> ModelConfig:
  """The preset `preset` with fields replaced by `overrides`."""
  if preset not in PRESETS:
    raise ValueError(f"unknown model preset {preset!r}; choose from {sorted(PRESETS)}")
  return dataclasses.replace(PRESETS[preset], **overrides)
