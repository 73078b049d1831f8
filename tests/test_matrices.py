"""The per-matrix primitive itself: plans, stacks, unstacking, routing, per-group work.

References are numpy (transposes, reshapes, the routed arithmetic written out by
hand); the last test checks the structural promise of the design, that the
per-matrix work in a Muon update is emitted once per shape group, not per layer.
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_muon
from optax_muon import MuonDimensionNumbers as DN
from optax_muon._src import matrices


def _tree(seed=0):
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
  return {"a": f(4, 8), "b": f(4, 8), "c": f(8, 4), "heads": f(3, 4, 8), "bias": f(8),
          "t": f(8, 4)}


def test_plan_groups_same_shaped_matrices_and_counts_batched_rows():
  tree = _tree()
  plan = matrices.plan_matrices(tree, {"^t$": DN(reduction_axis=1, output_axis=0)})
  groups = {g.name: g for g in plan.groups}
  # a, b, the 3 heads and t (read as [fan_in=4, fan_out=8]) share one group; c is 8x4.
  assert sorted(groups) == ["4x8", "8x4"]
  g = groups["4x8"]
  assert g.rows == 6 and [m.path for m in g.members] == ["a", "b", "heads", "t"]
  assert [m.start for m in g.members] == [0, 1, 2, 5]
  assert g.row_paths() == ("a", "b", "heads", "heads", "heads", "t")
  assert [m.path for m in groups["8x4"].members] == ["c"]
  layouts = dict(zip(plan.paths, plan.layouts))
  assert layouts["bias"] is None


def test_stack_holds_each_matrix_in_fan_in_by_fan_out_orientation():
  tree = _tree()
  plan = matrices.plan_matrices(tree, {"^t$": DN(reduction_axis=1, output_axis=0)})
  stack = np.asarray(plan.stack(tree)["4x8"])
  want = np.concatenate([np.asarray(tree["a"])[None], np.asarray(tree["b"])[None],
                         np.asarray(tree["heads"]), np.asarray(tree["t"]).T[None]])
  np.testing.assert_array_equal(stack, want)


@pytest.mark.parametrize("jit", [False, True])
def test_unstack_with_runtime_rows_gives_back_every_leaf(jit):
  tree = _tree()
  plan = matrices.plan_matrices(tree, {"^t$": DN(reduction_axis=1, output_axis=0)})
  rows = tuple(jnp.asarray(m.start, jnp.int32) for m in plan.members)

  def roundtrip(tree, rows):
    stacks = plan.stack(tree).map(lambda g, x: 2.0 * x)
    return plan.treedef.unflatten(plan.unstack(stacks, plan.leaves(tree), rows))

  out = (jax.jit(roundtrip) if jit else roundtrip)(tree, rows)
  for k, v in tree.items():
    want = np.asarray(v) if k == "bias" else 2.0 * np.asarray(v)
    np.testing.assert_array_equal(np.asarray(out[k]), want, err_msg=k)


def test_by_path_returns_each_parameter_in_its_own_shape():
  tree = _tree()
  plan = matrices.plan_matrices(tree, {"^t$": DN(reduction_axis=1, output_axis=0)})
  parts = plan.stack(tree).by_path()
  assert sorted(parts) == ["a", "b", "c", "heads", "t"]
  for k, v in parts.items():
    np.testing.assert_array_equal(np.asarray(v), np.asarray(tree[k]), err_msg=k)


def test_row_mask_and_row_runs_follow_the_row_paths():
  plan = matrices.plan_matrices(_tree())
  g = next(g for g in plan.groups if g.name == "4x8")
  np.testing.assert_array_equal(matrices.row_mask(g, lambda p: p == "heads"),
                                [False, False, True, True, True])
  runs = dict((k, r.tolist()) for k, r in matrices.row_runs(g, lambda p: p.startswith("h")))
  assert runs == {False: [0, 1], True: [2, 3, 4]}


@pytest.mark.parametrize("stack_others", [False, True])
def test_matrix_partition_routes_every_leaf_once(stack_others):
  tree = _tree()
  tx = optax_muon.matrix_partition(optax.scale(2.0), optax.scale(-3.0), None,
                                   stack_others=stack_others)
  out, _ = jax.jit(tx.update)(tree, tx.init(tree), tree)
  for k, v in tree.items():
    want = (-3.0 if k == "bias" else 2.0) * np.asarray(v)
    np.testing.assert_allclose(np.asarray(out[k]), want, rtol=1e-6, err_msg=k)
    assert out[k].dtype == v.dtype


def test_per_matrix_sees_whole_stacks_inside_and_outside_a_partition():
  tree = _tree()

  def frobenius_normalize(u, state, param):
    return u / jnp.linalg.norm(u, axis=(1, 2), keepdims=True), state

  alone = optax_muon.per_matrix(frobenius_normalize)
  inside = optax_muon.matrix_partition(alone, optax.identity(), None)
  for tx in (alone, inside):
    out, _ = tx.update(tree, tx.init(tree), tree)
    for k in ("a", "c"):
      v = np.asarray(tree[k])
      np.testing.assert_allclose(np.asarray(out[k]), v / np.linalg.norm(v), rtol=1e-5)
    heads = np.asarray(tree["heads"])
    np.testing.assert_allclose(
        np.asarray(out["heads"]),
        heads / np.linalg.norm(heads, axis=(1, 2), keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["bias"]), np.asarray(tree["bias"]))


def _layers(n, d=16):
  rng = np.random.default_rng(n)
  f = lambda *s: jnp.asarray(rng.normal(size=s) * 0.1, jnp.float32)
  tree = {"embed": {"embedding": f(32, d)}, "head": {"kernel": f(d, 32)}}
  for i in range(n):
    tree[f"layer{i}"] = {"q": {"kernel": f(d, d)}, "up": {"kernel": f(d, 4 * d)},
                         "down": {"kernel": f(4 * d, d)}, "norm": {"scale": f(d)}}
  return tree


def _primitive_counts(tx, tree):
  jaxpr = jax.make_jaxpr(lambda g, s, p: tx.update(g, s, p))(tree, tx.init(tree), tree)
  counts = {}

  def subjaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
      yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
      yield value
    elif isinstance(value, (tuple, list)):
      for v in value:
        yield from subjaxprs(v)

  def walk(jx):
    for eqn in jx.eqns:
      counts[eqn.primitive.name] = counts.get(eqn.primitive.name, 0) + 1
      for value in eqn.params.values():
        for sub in subjaxprs(value):
          walk(sub)

  walk(jaxpr.jaxpr)
  return counts


@pytest.mark.parametrize("name", ["muon", "muown", "muon_plus_plus", "normuon"])
def test_per_matrix_work_is_emitted_once_per_shape_group(name):
  """Matrix products and reductions do not grow with depth; only the per-leaf
  stacking and slicing do (about the handful of ops p − η·g itself needs)."""
  tx = getattr(optax_muon, name)(1e-3)
  shallow, deep = _primitive_counts(tx, _layers(2)), _primitive_counts(tx, _layers(6))
  for prim in ("dot_general", "reduce_sum", "reduce_max", "sqrt", "while", "cond"):
    assert deep.get(prim, 0) == shallow.get(prim, 0), (prim, shallow.get(prim), deep.get(prim))
  extra_leaves = 4 * (6 - 2)
  growth = sum(deep.values()) - sum(shallow.values())
  assert growth <= 8 * extra_leaves, (growth, extra_leaves)
