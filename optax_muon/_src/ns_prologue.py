"""What both Newton–Schulz kernels (standard and Gram) do before their first step.

Orient short side first, prescale exactly by the max-abs entry, cast to the
compute dtype, and apply one of the first-step normalizations
(docs/algorithms.md, "Newton–Schulz"), keeping the first Gram ``A = XXᵀ`` (and
``A²`` for ``"spectral"``) that the normalization computed, so the first step
reuses it.
"""

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from optax_muon._src import power_iteration as pi

__all__ = ["NORMALIZATIONS", "Prepared", "acc_dtype", "bmm", "check_normalization", "gram",
           "prepare"]

NORMALIZATIONS = ("frobenius", "spectral", "schatten4", "aol")
Normalization = Literal["frobenius", "spectral", "schatten4", "aol"]

_SPECTRAL_POWER_ITERS = 4  # rounds on A², each a matvec pair
_SPECTRAL_SAFETY = 1.05


def check_normalization(normalization: str) -> None:
  if normalization not in NORMALIZATIONS:
    raise ValueError(
        f"unknown normalization {normalization!r}; valid choices: {NORMALIZATIONS}.")


def acc_dtype(dtype):
  """The accumulation dtype of a product: at least float32."""
  return jnp.promote_types(dtype, jnp.float32)


def gram(x):
  """``[B, r, c] -> [B, r, r]``, accumulated in >= f32, without materializing ``xᵀ``."""
  return jax.lax.dot_general(x, x, (((2,), (2,)), ((0,), (0,))),
                             preferred_element_type=acc_dtype(x.dtype))


def bmm(a, b):
  """Batched ``a @ b``, accumulated in >= f32."""
  return jax.lax.dot_general(a, b, (((2,), (1,)), ((0,), (0,))),
                             preferred_element_type=acc_dtype(a.dtype))


class Prepared(NamedTuple):
  x: jax.Array  # [B, m, n] with m <= n, normalized, in the compute dtype
  transposed: bool  # the input was tall
  first_gram: jax.Array | None  # the normalized XXᵀ (float32) when computed
  first_gram_sq: jax.Array | None  # its square, for "spectral"


def prepare(x: jax.Array, normalization: Normalization, input_scale: float, eps: float,
            compute_dtype: Any) -> Prepared:
  """Orient, prescale, cast and normalize a ``[B, m, n]`` stack (non-empty)."""
  check_normalization(normalization)
  transposed = x.shape[1] > x.shape[2]
  if transposed:
    x = jnp.swapaxes(x, 1, 2)
  x = x.astype(jnp.float32) if compute_dtype is None and x.dtype != jnp.float64 else x
  # Exact max-abs prescale: keeps 1e30 and 1e-30 inputs in range of the norms
  # below; Newton–Schulz is scale invariant, so this changes nothing else.
  amax = jnp.max(jnp.abs(x), axis=(1, 2), keepdims=True)
  x = x / jnp.where(amax > 0, amax, 1.0)
  if compute_dtype is not None:
    x = x.astype(compute_dtype)
  if normalization == "frobenius":
    norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=(1, 2), keepdims=True))
    return Prepared((x / (input_scale * norm + eps)).astype(x.dtype), transposed, None, None)
  a32 = gram(x).astype(jnp.float32)
  a_sq = None
  if normalization == "spectral":
    # λ_max(A²) by power iteration on A² (which step 1 needs anyway); the
    # estimate is a lower bound, so a safety factor keeps σ₁ below 1, and
    # ‖A²‖_F^{1/2} >= λ_max(A) caps it from above.
    sq32 = bmm(a32, a32)
    lam_sq = pi.top_singular_triplet(sq32, iters=_SPECTRAL_POWER_ITERS)[0]
    upper = jnp.sqrt(jnp.sqrt(jnp.sum(jnp.square(sq32), axis=(1, 2))))
    sigma = jnp.minimum(_SPECTRAL_SAFETY * jnp.sqrt(jnp.sqrt(jnp.maximum(lam_sq, 0.0))),
                        jnp.sqrt(upper))
    s = (1.0 / jnp.maximum(sigma, eps))[:, None, None]
    a_sq = sq32 * s**4
  elif normalization == "schatten4":
    s = jax.lax.rsqrt(jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(a32), axis=(1, 2),
                                                  keepdims=True)), eps))
  else:  # "aol": a row scaling D, X ← DX
    s = jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.abs(a32), axis=2), eps))[:, :, None]
  # s is [B,1,1] (a scalar per matrix) or [B,m,1] (AOL's row scaling D).
  return Prepared((x * s).astype(x.dtype), transposed, a32 * s * jnp.swapaxes(s, 1, 2), a_sq)
