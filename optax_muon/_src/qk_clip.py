"""QK-Clip (MuonClip, Kimi K2): cap each attention head's max logit at τ (docs/algorithms.md, "QK-clip").

After the optimizer step, for every head ``h`` whose largest pre-softmax logit of
this step ``S_h`` exceeds ``τ``, ``γ_h = τ/S_h`` and the head's weights are
rescaled so its logits shrink by ``γ_h``:

* multi-head attention: query and key heads each by ``sqrt(γ_h)``;
* grouped-query / multi-query attention (keys shared by several query heads):
  query heads by ``γ_h``, shared keys untouched.

In optax's "return updates" form the affected head slices get
``u' = γ ⊙ (W + u) − W``. The per-head max logits arrive as an extra argument:
``tx.update(grads, state, params, max_logits={layer: array[num_query_heads]})``.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_muon._src import dimension_numbers as dn

__all__ = ["QKClipSpec", "QKClipState", "qk_clip"]


class QKClipSpec(NamedTuple):
  """Marks a query or key parameter of one attention layer.

  Attributes:
    layer: key of this layer in the ``max_logits`` mapping.
    role: ``"query"`` or ``"key"``.
    head_axis: the axis indexing heads (for a fused ``[d, H*dh]`` kernel, the
      fused axis, with ``num_heads`` set).
    num_heads: split ``head_axis`` into ``(num_heads, size // num_heads)``;
      ``None`` if the axis already has one index per head.
    shared_keys: keys are shared by several query heads (GQA/MQA): queries
      take all of ``γ``, keys are left alone.
  """

  layer: str
  role: Literal["query", "key"]
  head_axis: int = -1
  num_heads: int | None = None
  shared_keys: bool = False


class QKClipState(NamedTuple):
  clipped_heads: jax.Array  # shape=(), int32: heads clipped at the last step.


def _is_spec(x):
  return x is None or isinstance(x, QKClipSpec)


def _head_factors(x: jax.Array, factor_h: jax.Array, spec: QKClipSpec, path: str):
  axis = spec.head_axis % x.ndim
  size = x.shape[axis]
  heads = spec.num_heads or size
  if size % heads:
    raise ValueError(f"{path}: axis {axis} of size {size} does not split into "
                     f"{heads} heads.")
  if factor_h.shape[-1] != heads:
    raise ValueError(f"{path}: max_logits[{spec.layer!r}] has {factor_h.shape[-1]} "
                     f"heads, the parameter has {heads}.")
  per_index = jnp.repeat(factor_h, size // heads)
  shape = [1] * x.ndim
  shape[axis] = size
  return per_index.reshape(shape)


def qk_clip(
    threshold: jax.typing.ArrayLike,
    specs: Any | Callable[[Any], Any],
) -> optax.GradientTransformationExtraArgs:
  """Rescales query/key heads whose max logit exceeded ``threshold``.

  Chain it after the optimizer: ``optax.chain(muon(...), qk_clip(100.0, specs))``.

  Args:
    threshold: ``τ`` (100 in Kimi K2; 30 costs no loss at small scale).
    specs: tree like the params (or ``params -> tree``) of ``QKClipSpec`` on
      query/key leaves and ``None`` elsewhere.

  Examples:
    >>> import jax.numpy as jnp
    >>> specs = {"q": QKClipSpec("l0", "query", head_axis=1),
    ...          "k": QKClipSpec("l0", "key", head_axis=1)}
    >>> tx = qk_clip(10.0, specs)
    >>> p = {"q": jnp.ones((4, 2)), "k": jnp.ones((4, 2))}
    >>> u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p,
    ...                  max_logits={"l0": jnp.array([40.0, 5.0])})
    >>> (p["q"] + u["q"])[0].tolist()
    [0.5, 1.0]
  """

  def init_fn(params):
    del params
    return QKClipState(clipped_heads=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, *, max_logits=None, **extra):
    del extra
    if params is None:
      raise ValueError("qk_clip needs params in update().")
    if max_logits is None:
      raise ValueError("qk_clip needs the per-head max logits: "
                       "update(..., max_logits={layer: array[num_heads]}).")
    spec_tree = specs(params) if callable(specs) else specs
    flat, treedef = jax.tree_util.tree_flatten_with_path(updates)
    spec_leaves = dn.prefix_to_leaves(spec_tree, updates, _is_spec, "qk_clip specs")
    ws = treedef.flatten_up_to(params)
    out = []
    clipped = {}
    for (path, u), w, spec in zip(flat, ws, spec_leaves):
      if spec is None:
        out.append(u)
        continue
      name = dn.path_to_str(path)
      if spec.layer not in max_logits:
        raise ValueError(f"{name}: no max_logits entry for layer {spec.layer!r}.")
      s_h = jnp.asarray(max_logits[spec.layer], jnp.float32)
      gamma = jnp.where(s_h > threshold, threshold / jnp.maximum(s_h, 1e-30), 1.0)
      clipped[spec.layer] = jnp.sum(s_h > threshold)
      if spec.role == "query":
        power = 1.0 if spec.shared_keys else 0.5
      elif spec.role == "key":
        power = 0.0 if spec.shared_keys else 0.5
      else:
        raise ValueError(f"{name}: QKClipSpec.role must be 'query' or 'key', got {spec.role!r}.")
      if power == 0.0:
        out.append(u)
        continue
      factor = _head_factors(w, gamma**power, spec, name)
      # γ(W + u) − W written as γu + (γ − 1)W: exactly u for unclipped heads.
      new_u = factor * u.astype(jnp.float32) + (factor - 1.0) * w.astype(jnp.float32)
      out.append(new_u.astype(u.dtype))
    total = sum(clipped.values(), jnp.zeros([], jnp.int32)).astype(jnp.int32)
    return treedef.unflatten(out), QKClipState(clipped_heads=total)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
