"""``normalize_neurons``: NorMuon's per-neuron second-moment normalization (docs/algorithms.md, "NorMuon").

After Newton–Schulz every output neuron (Flax: a column of ``[fan_in, fan_out]``)
of ``O`` gets an EMA of its mean square, ``v ← β₂v + (1−β₂)·mean_fan_in(O²)``,
and is divided by ``sqrt(v) + ε``; the result is rescaled to the Frobenius norm
of an exact polar factor, ``sqrt(min(fan_in, fan_out))``, so that a following
``spectral_scale("moonlight")`` restores update RMS 0.2 exactly, as NorMuon's
learning-rate rule does.

References:
  Li et al., `NorMuon: Making Muon more efficient and scalable
  <https://arxiv.org/abs/2510.05491>`_, 2025.
"""

import math

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import matrices
from optax_muon._src import validation

__all__ = ["normalize_neurons"]


def normalize_neurons(b2: jax.typing.ArrayLike = 0.95,
                      eps: jax.typing.ArrayLike = 1e-8) -> optax.GradientTransformationExtraArgs:
  """Divides each output neuron of a matrix update by the root of its running mean square.

  Args:
    b2: decay of the per-neuron second moment, in [0, 1).
    eps: added to its square root.

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = normalize_neurons()
    >>> o = {"w": jnp.array([[1.0, 0.1], [1.0, 0.1]])}  # neuron 0 ten times louder
    >>> u, _ = tx.update(o, tx.init(o))
    >>> [round(float(x), 3) for x in u["w"][0]]  # equal neurons, ‖u‖_F = sqrt(2)
    [0.707, 0.707]
  """
  validation.check_beta(b2, "b2")
  validation.check_nonnegative(eps, "eps")

  def fn(o, v, param):
    del param
    o32 = o.astype(jnp.float32)
    v = b2 * v + (1 - b2) * jnp.mean(jnp.square(o32), axis=1)
    normed = o32 / (jnp.sqrt(v)[:, None, :] + eps)
    target = math.sqrt(min(o.shape[1], o.shape[2]))
    norm = jnp.sqrt(jnp.sum(jnp.square(normed), axis=(1, 2), keepdims=True))
    return (normed * (target / jnp.maximum(norm, 1e-30))).astype(o.dtype), v

  return matrices.per_matrix(fn, lambda p: jnp.zeros((p.shape[0], p.shape[2]), jnp.float32))
