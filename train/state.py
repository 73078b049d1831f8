"""Train state (step, params, opt_state) and its abstract-first sharded initialization.

Params are a pure nested dict of arrays (`nnx.to_pure_dict(state)`); the forward pass rebuilds
the module with `nnx.merge(graphdef, params)`. Shardings come from the params' logical axis names
(`models.sharding.LOGICAL_RULES`); optimizer-state buffers follow their param
(`optax_muon.state_shardings`), every other leaf is replicated.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax_muon as om
from flax import nnx

import models
from models.config import ModelConfig


class TrainState(NamedTuple):
  step: jax.Array  # shape=(), dtype=int32
  params: dict
  opt_state: optax.OptState


def _build(model_cfg: ModelConfig, seed: int) -> tuple[nnx.GraphDef, nnx.State]:
  with nnx.use_eager_sharding(False):
    return nnx.split(models.Transformer(model_cfg, rngs=nnx.Rngs(seed)))


def abstract_model(model_cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
  """The module's graphdef and abstract state (with logical axis metadata)."""
  return nnx.eval_shape(lambda: _build(model_cfg, 0))


def opt_state_shardings(abstract_opt_state: Any, abstract_params: dict, param_shardings: dict,
                        mesh: jax.sharding.Mesh) -> Any:
  """Shardings for an optax state: per-parameter buffers follow their param, others replicate
  (`optax_muon.state_shardings`; `mesh` is the params' mesh)."""
  del mesh
  return om.state_shardings(abstract_opt_state, abstract_params, param_shardings)


def abstract_state(model_cfg: ModelConfig, tx: optax.GradientTransformation,
                   mesh: jax.sharding.Mesh, seed: int = 0):
  """`(graphdef, abstract_state, state_shardings, init)` without allocating anything.

  `abstract_state` holds `jax.ShapeDtypeStruct`s; `init()` builds the real state (call it under
  `jax.jit(init, out_shardings=state_shardings)`). `mesh` may hold devices of a topology that
  is not attached (`train.aot`): nothing here runs on it.
  """
  graphdef, abstract = abstract_model(model_cfg)
  abstract_params = nnx.to_pure_dict(abstract)
  param_shardings = models.param_shardings(abstract_params, models.logical_names(abstract), mesh)

  def init():
    params = nnx.to_pure_dict(_build(model_cfg, seed)[1])
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))

  abstract = jax.eval_shape(init)
  shardings = TrainState(
      step=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
      params=param_shardings,
      opt_state=opt_state_shardings(abstract.opt_state, abstract_params, param_shardings,
                                    mesh))
  return graphdef, abstract, shardings, init


def init_state(model_cfg: ModelConfig, tx: optax.GradientTransformation,
               mesh: jax.sharding.Mesh, seed: int) -> tuple[nnx.GraphDef, TrainState, TrainState]:
  """Returns `(graphdef, state, state_shardings)`; the state is created directly sharded."""
  graphdef, _, shardings, init = abstract_state(model_cfg, tx, mesh, seed)
  state = jax.jit(init, out_shardings=shardings)()
  return graphdef, state, shardings
