"""The jitted train and eval steps (pure functions of the train state and a token batch)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optax_muon as om
from train import spectral_metrics as diagnostics
from train.state import TrainState

Batch = dict[str, jax.Array]


def token_losses(params: dict, graphdef: nnx.GraphDef, batch: Batch) -> tuple[jax.Array, dict]:
  """Per-target cross-entropy `[B, T-1]` (unweighted) and the model's aux outputs.

  Packed batches carry `segment_ids` and `positions`: attention stays inside each document, and
  their `mask` is 0 on each document's first token, so no loss term crosses a boundary either.
  With the model's `logits_chunk`, the head and the loss run over blocks of that many positions
  (`chunked_losses`): the `[B, T-1, V]` float32 logits are never held whole.
  """
  tokens_BxT = batch["tokens"]
  packed = {k: batch[k][:, :-1] for k in ("segment_ids", "positions") if k in batch}
  packed = {f"{k}_BxL": v for k, v in packed.items()}
  model = nnx.merge(graphdef, params)
  x_BxLxD, aux = model.hidden(tokens_BxT[:, :-1], **packed)
  return chunked_losses(model.head, x_BxLxD, tokens_BxT[:, 1:], model.cfg.logits_chunk), aux


def chunked_losses(head: Callable[[jax.Array], jax.Array], x_BxLxD: jax.Array,
                   targets_BxL: jax.Array, chunk: int) -> jax.Array:
  """Cross-entropy `[B, L]` of `head(x)` against `targets`, `chunk` positions at a time.

  Each block's logits are recomputed in the backward pass (`jax.checkpoint`), so a 128k
  vocabulary costs `[B, chunk, V]` of logits instead of `[B, L, V]`. `chunk=0`, or one that
  does not divide `L`, computes everything at once (the same numbers).
  """
  l = x_BxLxD.shape[1]
  ce = optax.softmax_cross_entropy_with_integer_labels
  if not chunk or l <= chunk or l % chunk:
    return ce(head(x_BxLxD), targets_BxL)
  b, n = x_BxLxD.shape[0], l // chunk
  x_NxBxCxD = jnp.moveaxis(x_BxLxD.reshape(b, n, chunk, -1), 1, 0)
  t_NxBxC = jnp.moveaxis(targets_BxL.reshape(b, n, chunk), 1, 0)

  @jax.checkpoint
  def block(xs):
    x_BxCxD, t_BxC = xs
    return ce(head(x_BxCxD), t_BxC)

  return jnp.moveaxis(jax.lax.map(block, (x_NxBxCxD, t_NxBxC)), 0, 1).reshape(b, l)


def loss_fn(params: dict, graphdef: nnx.GraphDef, batch: Batch) -> tuple[jax.Array, dict]:
  """Mean next-token cross-entropy over unmasked targets, and the model's aux outputs."""
  losses_BxL, aux = token_losses(params, graphdef, batch)
  weights_BxL = batch["mask"][:, 1:]
  loss = (losses_BxL * weights_BxL).sum() / jnp.maximum(weights_BxL.sum(), 1.0)
  return loss, aux


def update_rms(updates: dict) -> dict[str, jax.Array]:
  """RMS of the optimizer's updates per param family (attn, mlp, embed, norm; `om.path_family`)."""
  sums, counts = {}, {}
  for path, u in jax.tree_util.tree_leaves_with_path(updates):
    g = om.path_family(om.path_to_str(path))
    sums[g] = sums.get(g, 0.0) + jnp.sum(jnp.square(u.astype(jnp.float32)))
    counts[g] = counts.get(g, 0) + u.size
  # A float count: an 8B model's MLP family has more than 2**31 entries (int32 overflows).
  return {f"update_rms/{g}": jnp.sqrt(sums[g] / float(counts[g])) for g in sums}


def train_step(state: TrainState, batch: Batch, *, graphdef: nnx.GraphDef,
               tx: optax.GradientTransformationExtraArgs,
               use_qk_clip: bool) -> tuple[TrainState, dict]:
  """One optimizer step; returns the new state and scalar metrics."""
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, graphdef, batch)
  max_logits = aux["max_logits"]
  if use_qk_clip:
    updates, opt_state = tx.update(grads, state.opt_state, state.params, max_logits=max_logits)
  else:
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
  # The weights read by the update wait for it: otherwise XLA may keep the copy of a weight it
  # made for the forward pass (another layout) alive through the whole step to reuse here.
  updates, params = jax.lax.optimization_barrier((updates, state.params))
  params = optax.apply_updates(params, updates)
  skipped_steps = opt_state.skipped_steps  # `make_optimizer` wraps the chain in skip_nonfinite.
  metrics = {
      "loss": loss,
      "skipped": skipped_steps - state.opt_state.skipped_steps,  # 1 if this step was skipped.
      "skipped_steps": skipped_steps,
      "grad_norm": optax.tree.norm(grads),
      **update_rms(updates),
      **diagnostics.logit_metrics(max_logits),
  }
  return TrainState(state.step + 1, params, opt_state), metrics


def eval_step(params: dict, batch: Batch, *, graphdef: nnx.GraphDef,
              byte_lengths_V: np.ndarray) -> dict[str, jax.Array]:
  """Mean loss of the batch, and the sums behind bits per byte.

  `loss_sum` is the summed loss (nats) of the unmasked targets and `bytes` the UTF-8 bytes those
  targets stand for (`byte_lengths_V[token]`), so bits/byte = sum(loss_sum) / ln 2 / sum(bytes).
  """
  losses_BxL, _ = token_losses(params, graphdef, batch)
  weights_BxL = batch["mask"][:, 1:]
  loss_sum = (losses_BxL * weights_BxL).sum()
  bytes_BxL = jnp.asarray(byte_lengths_V, jnp.float32)[batch["tokens"][:, 1:]]
  return {"loss": loss_sum / jnp.maximum(weights_BxL.sum(), 1.0), "loss_sum": loss_sum,
          "bytes": (bytes_BxL * weights_BxL).sum()}


def on_mesh(mesh: jax.sharding.Mesh, fn: Callable) -> Callable:
  """`fn` traced with `mesh` as the abstract mesh in context.

  The model's activation constraints (`models.sharding.constrain`) read the mesh from context;
  with it set here they hold whether or not the caller entered `jax.set_mesh`.
  """
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args, **kwargs)
  return wrapped


def jit_steps(graphdef, tx, use_qk_clip: bool, state_shardings: TrainState, batch_sharding,
              byte_lengths_V: np.ndarray | None = None) -> tuple[Callable, Callable]:
  """`(train_step, eval_step)` jitted with explicit shardings; the state is donated.

  Every array of a batch (tokens, mask and, when packed, segment ids and positions) is laid out
  by `batch_sharding`. `byte_lengths_V` (bytes per token id, default 1 per byte) feeds bits/byte.
  """
  if byte_lengths_V is None:
    byte_lengths_V = np.ones(256, np.float32)
  mesh = batch_sharding.mesh
  train = jax.jit(
      on_mesh(mesh, functools.partial(train_step, graphdef=graphdef, tx=tx,
                                      use_qk_clip=use_qk_clip)),
      in_shardings=(state_shardings, batch_sharding),
      out_shardings=(state_shardings, None),
      donate_argnums=0)
  evaluate = jax.jit(on_mesh(mesh, functools.partial(eval_step, graphdef=graphdef,
                                                     byte_lengths_V=byte_lengths_V)),
                     in_shardings=(state_shardings.params, batch_sharding))
  return train, evaluate
