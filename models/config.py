"""Model configuration and size presets."""

import dataclasses
from typing import Any

import jax.numpy as jnp


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
  tie_embeddings: bool = False
  mup_init: bool = False
  zero_init_proj: bool = False  # Output projections (attn o, mlp down) start at 0 (modded-nanogpt).
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

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    "cpu192": ModelConfig(d_model=192, n_layers=4, n_heads=6, n_kv_heads=2, d_ff=512),
    "small": ModelConfig(d_model=512, n_layers=8, n_heads=8, n_kv_heads=4, d_ff=1536,
                         max_len=1024),
    "base": ModelConfig(d_model=768, n_layers=12, n_heads=12, n_kv_heads=4, d_ff=2048,
                        max_len=1024, scan_layers=True),
    "medium": ModelConfig(d_model=1024, n_layers=24, n_heads=16, n_kv_heads=8, d_ff=2816,
                          max_len=2048, scan_layers=True, remat=True),
    "1b": ModelConfig(d_model=2048, n_layers=22, n_heads=16, n_kv_heads=8, d_ff=5632,
                      max_len=2048, scan_layers=True, remat=True, dtype=jnp.bfloat16),
}


def get_config(preset: str, **overrides) -> ModelConfig:
  """The preset `preset` with fields replaced by `overrides`."""
  if preset not in PRESETS:
    raise ValueError(f"unknown model preset {preset!r}; choose from {sorted(PRESETS)}")
  return dataclasses.replace(PRESETS[preset], **overrides)
