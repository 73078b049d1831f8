"""Mesh-aware Newton–Schulz on 8 CPU devices: same updates as one device, no
collectives inside the iteration, each device doing its share of the work.

The reference is the same optimizer run unsharded on one device (a path that
never looks for a mesh), so a placement bug that permutes, drops or mixes
matrices shows up as a mismatch.
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import optax_muon as om
from optax_muon._src import distributed
from optax_muon._src import gram_newton_schulz


def step_flops(m: int, n: int) -> int:
  """Flops of one standard Newton–Schulz step on an ``m × n`` matrix (the library's model)."""
  return round(gram_newton_schulz.flops(m, n, 1))

L, D, FF, VOCAB = 3, 24, 36, 32  # FF=36 splits over 2 or 4 devices, not 8; 3 layers over 8.

OPTIMIZERS = {
    "muon": lambda **kw: om.muon(0.02, **kw),
    "muon_plus_plus": lambda **kw: om.muon_plus_plus(0.02, **kw),
    "muown": lambda **kw: om.muown(0.02, weight_decay=0.1, **kw),
    "normuon": lambda **kw: om.normuon(0.02, **kw),
}
MESHES = {
    "fsdp8": ((8,), ("fsdp",)),
    "fsdp4_tensor2": ((4, 2), ("fsdp", "tensor")),
    "data2_fsdp2_tensor2": ((2, 2, 2), ("data", "fsdp", "tensor")),
}


def make_params(stacked: bool, seed: int = 0) -> dict:
  keys = iter(jax.random.split(jax.random.key(seed), 64))
  normal = lambda *shape: 0.3 * jax.random.normal(next(keys), shape)
  if stacked:
    layers = {"attn": {"q": normal(L, D, D), "o": normal(L, D, D)},
              "mlp": {"up": normal(L, D, FF), "down": normal(L, FF, D)}}
  else:
    layers = {str(i): {"attn": {"q": normal(D, D), "o": normal(D, D)},
                       "mlp": {"up": normal(D, FF), "down": normal(FF, D)}} for i in range(L)}
  return {"embed": normal(VOCAB, D), "layers": layers, "final_norm": {"scale": 1 + normal(D)}}


def grads_at(params: dict, step: int) -> dict:
  """Deterministic gradients that depend on the params (so state matters)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(100 + step), len(leaves))
  return treedef.unflatten([0.5 * x + jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def spec_for(shape: tuple[int, ...], mesh: jax.sharding.Mesh) -> P:
  """FSDP on the fan_in axis and tensor parallel on the last axis, where they divide."""
  spec = [None] * len(shape)
  if len(shape) >= 2:
    fan_in = len(shape) - 2
    if "fsdp" in mesh.shape and shape[fan_in] % mesh.shape["fsdp"] == 0:
      spec[fan_in] = "fsdp"
    if "tensor" in mesh.shape and shape[-1] % mesh.shape["tensor"] == 0:
      spec[-1] = "tensor"
  return P(*spec)


def shardings_for(tree, mesh):
  return jax.tree.map(lambda x: NamedSharding(mesh, spec_for(x.shape, mesh)), tree)


def run_steps(tx, params, steps=3, shardings=None):
  """``steps`` jitted optimizer steps; returns the final params and state.

  With ``shardings`` the state is created sharded like the params and the step
  is jitted with pinned in/out shardings, as a trainer does.
  """
  def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  if shardings is None:
    state, step = jax.jit(tx.init)(params), jax.jit(step)
  else:
    state = om.init_sharded(tx, params, shardings)
    state_sh = jax.tree.map(lambda x: x.sharding, state)
    step = jax.jit(step, in_shardings=(shardings, state_sh, shardings),
                   out_shardings=(shardings, state_sh))
  for t in range(steps):
    grads = grads_at(params, t)
    if shardings is not None:
      grads = jax.device_put(grads, shardings)
    params, state = step(params, state, grads)
  return params, state


@functools.cache
def reference(name, stacked, steps=3):
  single = jax.devices()[0]
  params = jax.device_put(make_params(stacked), single)
  with jax.default_device(single):
    return run_steps(OPTIMIZERS[name](mesh=False), params, steps)[0]


def sharded_run(name, stacked, mesh_key, axis_type=AxisType.Auto, steps=3):
  shape, names = MESHES[mesh_key]
  mesh = jax.make_mesh(shape, names, axis_types=(axis_type,) * len(shape))
  params = make_params(stacked)
  shardings = shardings_for(params, mesh)
  params = jax.device_put(params, shardings)
  explicit = axis_type == AxisType.Explicit  # shardings are in the types: nothing to pin
  with jax.set_mesh(mesh):
    out, state = run_steps(OPTIMIZERS[name](), params, steps, None if explicit else shardings)
  return out, state, shardings


def assert_trees_close(got, want, atol=2e-5):
  for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=atol, rtol=1e-5,
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("mesh_key", list(MESHES))
@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "unstacked"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_sharded_updates_equal_single_device(name, stacked, mesh_key):
  got, _, _ = sharded_run(name, stacked, mesh_key)
  assert_trees_close(got, reference(name, stacked))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_explicit_axis_mesh_equals_single_device(name):
  got, state, shardings = sharded_run(name, True, "fsdp4_tensor2", axis_type=AxisType.Explicit)
  assert_trees_close(got, reference(name, True))
  # Sharding in types: the updated params come back in their own sharding unpinned.
  for g, s in zip(jax.tree.leaves(got), jax.tree.leaves(shardings)):
    assert g.sharding.spec == s.spec, (g.sharding, s)


def test_mesh_argument_without_context_mesh():
  """An Auto-axis mesh under jit without ``jax.set_mesh``: pass ``mesh=``."""
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(AxisType.Auto,))
  params = make_params(True)
  shardings = shardings_for(params, mesh)
  tx = om.muon(0.02, mesh=mesh)
  got, _ = run_steps(tx, jax.device_put(params, shardings), 3, shardings)
  assert_trees_close(got, reference("muon", True))


@pytest.mark.parametrize("axes", [(("fsdp", 4), ("tensor", 2)), (("fsdp", 4),)],
                         ids=["fsdp_tensor", "fsdp_only"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_keeps_param_sharding_and_dtype(name, axes):
  """ZeRO/FSDP memory: per-parameter buffers live with their parameter, and a
  jitted update with the state's shardings pinned hands them back unchanged.
  With FSDP alone (fan-out unsharded) per-neuron vectors are split too, not
  replicated on every device."""
  params = make_params(True)
  mesh = jax.make_mesh(tuple(n for _, n in axes), tuple(a for a, _ in axes),
                       axis_types=(AxisType.Auto,) * len(axes))
  shardings = shardings_for(params, mesh)
  params = jax.device_put(params, shardings)
  tx = OPTIMIZERS[name]()
  with jax.set_mesh(mesh):
    state0 = om.init_sharded(tx, params, shardings)
    state_sh = jax.tree.map(lambda x: x.sharding, state0)
    step = jax.jit(lambda s, g, p: tx.update(g, s, p)[1], in_shardings=(state_sh, shardings, shardings),
                   out_shardings=state_sh)
    state = step(state0, grads_at(params, 0), params)
    state = step(state, grads_at(params, 1), params)
  sharded = 0
  for path, x in jax.tree_util.tree_leaves_with_path(state0):
    if x.ndim >= 2 and x.size >= 64:  # every real buffer is split across devices
      sharded += 1
      assert not x.sharding.is_fully_replicated, jax.tree_util.keystr(path)
  assert sharded >= 4
  for a, b in zip(jax.tree.leaves(state0), jax.tree.leaves(state)):
    assert a.dtype == b.dtype
    assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (a.sharding, b.sharding)
  # Same answer as the unsharded optimizer.
  ref_state = jax.jit(tx.init)(jax.device_get(params))
  for t in range(2):
    ref_state = tx.update(grads_at(jax.device_get(params), t), ref_state, jax.device_get(params))[1]
  assert_trees_close(state, ref_state)


# ---------------------------------------------------------------------------
# The compiled program: collectives outside the iteration, work split evenly.

_COLLECTIVES = ("all-gather", "all-to-all", "collective-permute", "all-reduce",
                "reduce-scatter")


def compiled_update(ns_steps, mesh_arg, n_layers=8, d=32, ff=64):
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(AxisType.Auto,))
  keys = jax.random.split(jax.random.key(0), 2)
  params = {"q": jax.random.normal(keys[0], (n_layers, d, d)),
            "up": jax.random.normal(keys[1], (n_layers, d, ff))}
  shardings = jax.tree.map(lambda x: NamedSharding(mesh, P(None, "fsdp", None)), params)
  params = jax.device_put(params, shardings)
  tx = om.newton_schulz("jordan", ns_steps, mesh=mesh_arg)
  fn = jax.jit(lambda g: tx.update(g, tx.init(None))[0])
  with jax.set_mesh(mesh):
    return fn.lower(params).compile()


def collective_count(compiled) -> int:
  text = compiled.as_text()
  return sum(len(re.findall(rf"\b{op}(?:-start)?\(", text)) for op in _COLLECTIVES)


def test_no_collectives_inside_newton_schulz_iterations():
  few, many = collective_count(compiled_update(2, None)), collective_count(compiled_update(7, None))
  assert few == many, (few, many)  # more iterations, not one collective more


def test_per_device_flops_are_total_over_devices():
  """Per-device flops of the distributed update ≈ single-device flops / 8."""
  single = jax.jit(lambda g: om.newton_schulz("jordan", 5, mesh=False).update(g, ())[0])
  keys = jax.random.split(jax.random.key(0), 2)
  params = {"q": jax.random.normal(keys[0], (8, 32, 32)),
            "up": jax.random.normal(keys[1], (8, 32, 64))}
  total = single.lower(params).compile().cost_analysis()["flops"]
  per_device = compiled_update(5, None).cost_analysis()["flops"]
  assert 0.85 * total / 8 <= per_device <= 1.15 * total / 8, (per_device, total)


def test_compiler_placement_puts_collectives_in_the_iterations():
  """The contrast that makes the test above meaningful: left to GSPMD, every
  extra Newton–Schulz step on FSDP-sharded matrices adds collectives."""
  few, many = collective_count(compiled_update(2, False)), collective_count(compiled_update(7, False))
  assert many > few, (few, many)


def loads_by_hand(counts, costs) -> np.ndarray:
  return np.array([sum(c[d] * w for c, w in zip(counts, costs)) for d in range(len(counts[0]))])


@pytest.mark.parametrize("sizes,costs,devices", [
    ([12], [1], 8), ([3, 5, 7], [9, 4, 1], 8), ([96, 64, 64], [7, 2, 1], 128),
    ([1], [5], 8), ([0, 10], [3, 3], 4), ([240, 160, 160], [30, 10, 1], 64)])
def test_balance_places_every_matrix_and_stays_within_one_matrix_of_ideal(sizes, costs, devices):
  plan = distributed.balance(sizes, costs, devices)
  assert [sum(c) for c in plan.counts] == sizes
  assert all(len(c) == devices and min(c) >= 0 for c in plan.counts)
  loads = loads_by_hand(plan.counts, costs)
  ideal = sum(n * w for n, w in zip(sizes, costs)) / devices
  assert loads.max() <= ideal + max(costs)  # the greedy (LPT) bound
  assert plan.imbalance == pytest.approx(loads.max() / ideal)


@pytest.mark.parametrize("devices", [64, 128])
def test_llama_8b_matrices_balance_within_15_percent(devices):
  """224 hidden matrices in 3 shapes: padding each shape to the chips gave 1.28 / 1.45."""
  cost = step_flops
  sizes, costs = [96, 64, 64], [cost(4096, 14336), cost(4096, 4096), cost(1024, 4096)]
  padded = sum(-(-n // devices) * w for n, w in zip(sizes, costs))
  ideal = sum(n * w for n, w in zip(sizes, costs)) / devices
  assert padded / ideal > 1.25
  assert distributed.balance(sizes, costs, devices).imbalance <= 1.15


def test_one_step_costs_what_its_three_products_do():
  m, n = 24, 40  # X Xᵀ (m×n·n×m), A² (m×m·m×m), B X (m×m·m×n), 2 flops per multiply-add
  assert step_flops(m, n) == 2 * m * n * m + 2 * m * m * m + 2 * m * m * n
  assert step_flops(m, n) == step_flops(n, m)


def test_newton_schulz_balances_the_flops_each_matrix_runs(monkeypatch):
  """The plan weighs a matrix by its whole orthogonalization, not one standard iteration: a
  64 x 256 matrix runs the Gram form (2 blocks for Jordan's 5 steps), a 96 x 96 one the
  standard iteration."""
  seen = []
  real = distributed.map_buckets

  def spy(fns, stacks, mesh, costs=None):
    seen.extend(zip((x.shape[1:] for x in stacks), costs))
    return real(fns, stacks, mesh, costs)

  monkeypatch.setattr(distributed, "map_buckets", spy)
  tree = {"long": jnp.ones((2, 64, 256)), "square": jnp.ones((3, 96, 96))}
  om.newton_schulz("jordan", 5).update(tree, ())
  steps, blocks = 5, 2
  gram = 4 * blocks * 64**2 * 256 + (8 * steps - 6 * blocks) * 64**3
  standard = steps * (4 * 96**3 + 2 * 96**3)
  assert sorted(seen) == [((64, 256), gram), ((96, 96), standard)]


def test_uneven_plan_skips_padding_and_matches_one_device():
  """Buckets whose devices hold different counts (0, 1 or 2 matrices) take the
  skipping path; the result equals the unsharded one, matrix by matrix."""
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(AxisType.Auto,))
  keys = jax.random.split(jax.random.key(5), 2)
  tree = {"q": jax.random.normal(keys[0], (6, 64, 64)),
          "up": jax.random.normal(keys[1], (6, 64, 96))}
  plan = distributed.balance([6, 6], [step_flops(64, 96), step_flops(64, 64)], 8)
  assert {len(set(c)) for c in plan.counts} != {1}  # some bucket is uneven
  tx = om.newton_schulz("jordan", 5, mesh=mesh)
  fn = jax.jit(lambda g: tx.update(g, ())[0])
  sharded = jax.device_put(tree, jax.tree.map(
      lambda x: NamedSharding(mesh, P(None, "fsdp", None)), tree))
  with jax.set_mesh(mesh):
    got = fn(sharded)
    text = fn.lower(sharded).compile().as_text()
  assert "conditional" in text
  want = om.newton_schulz("jordan", 5, mesh=False).update(tree, ())[0]
  assert_trees_close(got, want, atol=1e-5)


def test_small_matrix_buckets_are_exact():
  """Zero-padding small matrices into one bucket equals orthogonalizing each."""
  keys = jax.random.split(jax.random.key(3), 4)
  tree = {"a": jax.random.normal(keys[0], (5, 9)), "b": jax.random.normal(keys[1], (12, 7)),
          "c": jax.random.normal(keys[2], (2, 8, 8)), "d": jax.random.normal(keys[3], (40, 64))}
  bucketed = om.newton_schulz("polar_express", 8, small_matrix_size=16).update(tree, ())[0]
  for k, x in tree.items():
    u, _, vt = np.linalg.svd(np.asarray(x, np.float64), full_matrices=False)
    np.testing.assert_allclose(bucketed[k], u @ vt, atol=0.02, err_msg=k)
  plain = om.newton_schulz("polar_express", 8).update(tree, ())[0]
  for k in tree:
    np.testing.assert_allclose(bucketed[k], plain[k], atol=1e-5, err_msg=k)


def test_per_leaf_schedules_follow_paths():
  x = jax.random.normal(jax.random.key(1), (16, 32))
  tree = {"attn": {"q": x}, "mlp": {"up": x}}
  tx = om.newton_schulz(steps={"mlp": 2, "": 5})
  out = tx.update(tree, ())[0]
  np.testing.assert_allclose(out["attn"]["q"], om.orthogonalize(x, steps=5), atol=1e-6)
  np.testing.assert_allclose(out["mlp"]["up"], om.orthogonalize(x, steps=2), atol=1e-6)
  assert not np.allclose(out["attn"]["q"], out["mlp"]["up"], atol=1e-3)
  with pytest.raises(ValueError, match="no pattern"):
    om.newton_schulz(steps={"mlp": 2}).update(tree, ())
  with pytest.raises(ValueError):
    om.newton_schulz(steps={"mlp": 0, "": 5})


def test_find_mesh_sources():
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(AxisType.Auto,))
  x = jax.device_put(jnp.ones((8, 8)), NamedSharding(mesh, P("fsdp")))
  assert distributed.find_mesh([x]) is not None  # concrete sharded array
  assert distributed.find_mesh([x], mesh=False) is None
  assert distributed.find_mesh([jnp.ones((8, 8))]) is None  # one device
  with jax.set_mesh(mesh):
    assert distributed.find_mesh([jnp.ones(3)]) is not None
  assert math.prod(mesh.shape.values()) == 8
