"""The jitted train and eval steps (pure functions of the train state and a token batch)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import optax_muon as om
from train import diagnostics
from train.state import TrainState

Batch = dict[str, jax.Array]


def loss_fn(params: dict, graphdef: nnx.GraphDef, batch: Batch) -> tuple[jax.Array, dict]:
  """Mean next-token cross-entropy over unmasked targets, and the model's aux outputs."""
  tokens_BxT = batch["tokens"]
  logits_BxLxV, aux = nnx.merge(graphdef, params)(tokens_BxT[:, :-1])
  weights_BxL = batch["mask"][:, 1:]
  losses_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, tokens_BxT[:, 1:])
  loss = (losses_BxL * weights_BxL).sum() / jnp.maximum(weights_BxL.sum(), 1.0)
  return loss, aux


def update_rms(updates: dict) -> dict[str, jax.Array]:
  """RMS of the optimizer's updates per param family (attn, mlp, embed, norm; `om.path_family`)."""
  sums, counts = {}, {}
  for path, u in jax.tree_util.tree_leaves_with_path(updates):
    g = om.path_family(om.path_to_str(path))
    sums[g] = sums.get(g, 0.0) + jnp.sum(jnp.square(u.astype(jnp.float32)))
    counts[g] = counts.get(g, 0) + u.size
  return {f"update_rms/{g}": jnp.sqrt(sums[g] / counts[g]) for g in sums}


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
  params = optax.apply_updates(state.params, updates)
  metrics = {
      "loss": loss,
      "grad_norm": optax.tree.norm(grads),
      "max_attn_logit": jnp.max(jnp.stack(list(max_logits.values()))),
      **update_rms(updates),
      **diagnostics.logit_metrics(max_logits),
  }
  return TrainState(state.step + 1, params, opt_state), metrics


def eval_step(params: dict, batch: Batch, *, graphdef: nnx.GraphDef) -> jax.Array:
  return loss_fn(params, graphdef, batch)[0]


def jit_steps(graphdef, tx, use_qk_clip: bool, state_shardings: TrainState,
              batch_sharding) -> tuple[Callable, Callable]:
  """`(train_step, eval_step)` jitted with explicit shardings; the state is donated."""
  batch_shardings = {"tokens": batch_sharding, "mask": batch_sharding}
  train = jax.jit(
      functools.partial(train_step, graphdef=graphdef, tx=tx, use_qk_clip=use_qk_clip),
      in_shardings=(state_shardings, batch_shardings),
      out_shardings=(state_shardings, None),
      donate_argnums=0)
  evaluate = jax.jit(functools.partial(eval_step, graphdef=graphdef),
                     in_shardings=(state_shardings.params, batch_shardings))
  return train, evaluate
