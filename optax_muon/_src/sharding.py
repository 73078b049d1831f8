"""Shardings for optimizer states: every per-parameter buffer lives with its parameter.

Under ``jax.jit`` a freshly made buffer (``zeros_like`` momentum, a
power-iteration start vector) has no data dependence on the parameter, so the
compiler is free to replicate it: ZeRO/FSDP memory is lost and the state's
sharding changes at the first update. ``state_shardings`` gives each state leaf
a sharding derived from the parameter it belongs to (found by path suffix):

* same shape as the parameter: the parameter's sharding (momenta, Adam moments);
* a per-neuron vector ``[batch, fan_out]`` of a ``[..., fan_in, fan_out]``
  parameter (Muown magnitudes, Muon++ power-iteration vectors): the parameter's
  batch-axis and output-axis shardings;
* anything else (counters, scalars): replicated.
"""

from __future__ import annotations

import math
from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from optax_muon._src import dimension_numbers as dn

__all__ = ["state_shardings", "init_sharded"]


def _spec_entries(sharding: NamedSharding, ndim: int) -> list[Any]:
  spec = list(sharding.spec)
  return spec + [None] * (ndim - len(spec))


def _vector_spec(param_shape, param_sharding, shape) -> P | None:
  """Spec of a ``[batch, fan_out]`` vector of a ``[..., fan_in, fan_out]`` param."""
  if len(shape) != 2 or len(param_shape) < 2:
    return None
  lead = param_shape[:-2]
  if shape != (math.prod(lead), param_shape[-1]):
    return None
  entries = _spec_entries(param_sharding, len(param_shape))
  batch = entries[0] if len(lead) == 1 else None
  return P(batch, entries[-1])


def state_shardings(abstract_state: Any, params: Any, param_shardings: Any) -> Any:
  """``NamedSharding`` per leaf of an optimizer state, following the parameters.

  Args:
    abstract_state: the state or its shapes (``jax.eval_shape(tx.init, params)``).
    params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``).
    param_shardings: a ``NamedSharding`` per parameter (same tree).

  Returns:
    A tree like ``abstract_state`` of ``NamedSharding``; use it as the
    ``out_shardings`` of ``jax.jit(tx.init)`` and the state's in/out shardings
    of the train step.

  Examples:
    >>> import jax, jax.numpy as jnp, optax_muon
    >>> from jax.sharding import NamedSharding, PartitionSpec as P
    >>> mesh = jax.make_mesh((1,), ("fsdp",))
    >>> params = {"w": jnp.ones((8, 4))}
    >>> shardings = {"w": NamedSharding(mesh, P("fsdp", None))}
    >>> tx = optax_muon.muon(1e-3)
    >>> specs = optax_muon.state_shardings(jax.eval_shape(tx.init, params), params, shardings)
    >>> specs.inner_state.inner_states["matrix"][0].mu["w"].spec
    P('fsdp', None)
  """
  by_path = {}
  for (path, x), s in zip(jax.tree_util.tree_leaves_with_path(params),
                          jax.tree.leaves(param_shardings)):
    by_path[tuple(dn.path_to_str((k,)) for k in path)] = (tuple(x.shape), s)
  mesh = jax.tree.leaves(param_shardings)[0].mesh
  replicated = NamedSharding(mesh, P())

  def sharding(path, x):
    names = tuple(dn.path_to_str((k,)) for k in path)
    shape = tuple(x.shape)
    for start in range(len(names)):
      param_shape, s = by_path.get(names[start:], (None, None))
      if s is None:
        continue
      if shape == param_shape:
        return s
      spec = _vector_spec(param_shape, s, shape)
      if spec is not None:
        return NamedSharding(mesh, spec)
    return replicated

  return jax.tree_util.tree_map_with_path(sharding, abstract_state)


def init_sharded(tx, params: Any, param_shardings: Any) -> Any:
  """``tx.init(params)`` with every buffer created where its parameter lives."""
  shardings = state_shardings(jax.eval_shape(tx.init, params), params, param_shardings)
  return jax.jit(tx.init, out_shardings=shardings)(params)
