"""Bad input gets a clear error naming the parameter path, or a defined behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_muon as om

ALIASES = [om.muon, om.muon_plus_plus, om.muown, om.normuon]


@pytest.mark.parametrize("alias", ALIASES)
def test_out_of_range_dimension_numbers_name_the_path(alias):
  params = {"blocks": {"mlp": jnp.ones((4, 8))}}
  dims = {"blocks": {"mlp": om.MuonDimensionNumbers(0, 5)}}
  with pytest.raises(ValueError, match="blocks/mlp"):
    alias(1e-2, dimension_numbers=dims).init(params)


@pytest.mark.parametrize("alias", ALIASES)
def test_overlapping_dimension_numbers_name_the_path(alias):
  params = {"attn": {"q": jnp.ones((4, 2, 8))}}
  with pytest.raises(ValueError, match="attn/q.*overlap"):
    alias(1e-2, dimension_numbers={r"attn/q": om.MuonDimensionNumbers((0, 1), 1)}).init(params)


def test_rank_one_leaf_with_dimension_numbers_names_the_path():
  with pytest.raises(ValueError, match="norm/scale.*rank >= 2"):
    om.muon(1e-2, dimension_numbers=om.MuonDimensionNumbers(0, 1)).init(
        {"norm": {"scale": jnp.ones(4)}})


@pytest.mark.parametrize("alias", ALIASES)
def test_integer_params_name_the_path(alias):
  with pytest.raises(ValueError, match="step_count"):
    alias(1e-2).init({"w": jnp.ones((4, 4)), "step_count": jnp.zeros((), jnp.int32)})


def test_mismatched_dimension_numbers_tree():
  params = {"a": jnp.ones((4, 4)), "b": jnp.ones((4, 4))}
  with pytest.raises(ValueError, match="does not match"):
    om.muon(1e-2, dimension_numbers={"a": om.MuonDimensionNumbers(), "c": None}).init(params)


def test_mismatched_update_and_param_trees():
  params = {"a": jnp.ones((4, 4)), "b": jnp.ones(4)}
  tx = om.muon(1e-2)
  state = tx.init(params)
  with pytest.raises(ValueError):
    tx.update({"a": jnp.ones((4, 4))}, state, {"a": jnp.ones((4, 4))})


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_gradient_skips_the_step(alias, bad):
  params = {"w": jnp.ones((8, 4)), "b": jnp.ones(4)}
  tx = alias(1e-2)
  state = tx.init(params)
  good = jax.tree.map(jnp.ones_like, params)
  _, state = tx.update(good, state, params)
  grads = {"w": jnp.ones((8, 4)).at[0, 0].set(bad), "b": jnp.ones(4)}
  u, new_state = jax.jit(tx.update)(grads, state, params)
  assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(u))
  assert int(new_state.skipped_steps) == 1 == int(om.skipped_steps(new_state))
  jax.tree.map(np.testing.assert_array_equal, new_state._replace(skipped_steps=0),
               state._replace(skipped_steps=0))


@pytest.mark.parametrize("alias", [om.muon, om.muown, om.muon_plus_plus])
def test_nonfinite_check_holds_no_extra_memory(alias):
  # The check reads the gradients before the update, so each keep-or-skip select
  # fuses into the kernel writing the new value: peak temporary memory stays that
  # of the same update without the check (checking the outputs instead would hold every
  # update and the whole new state).
  params = {f"l{i}": {"w": jnp.ones((64, 256)), "v": jnp.ones((256, 64)), "b": jnp.ones(64)}
            for i in range(4)}
  params["embed"] = {"embedding": jnp.ones((512, 64))}

  def temp_bytes(tx):
    state = jax.eval_shape(tx.init, params)

    def step(p, s, g):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  assert temp_bytes(alias(1e-2)) <= 1.12 * temp_bytes(alias(1e-2, skip_nonfinite=False))


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("magnitude", [0.0, 1e-30, 1e30])
def test_extreme_gradients_give_finite_updates(alias, magnitude):
  params = {"w": jax.random.normal(jax.random.key(0), (8, 4)), "b": jnp.ones(4)}
  tx = alias(1e-2)
  state = tx.init(params)
  for i in range(2):
    grads = jax.tree.map(lambda p: jnp.full_like(p, magnitude) * (1 + jnp.arange(p.shape[-1])),
                         params)
    u, state = tx.update(grads, state, params)
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(u))
    assert int(state.skipped_steps) == 0
    params = optax.apply_updates(params, u)


@pytest.mark.parametrize("alias", ALIASES)
def test_odd_shapes_work_or_route_to_adamw(alias):
  params = {"row": jnp.ones((1, 16)), "col": jnp.ones((16, 1)), "tall": jnp.ones((32, 4)),
            "wide": jnp.ones((4, 32)), "empty": jnp.ones((0, 8)), "scalar": jnp.ones(())}
  tx = alias(1e-2)
  state = tx.init(params)
  grads = jax.tree.map(lambda p: jnp.arange(p.size, dtype=p.dtype).reshape(p.shape) + 1, params)
  u, state = jax.jit(tx.update)(grads, state, params)
  for name, x in u.items():
    assert x.shape == params[name].shape
    assert bool(jnp.isfinite(x).all()), name
  assert float(jnp.abs(u["row"]).max()) > 0 and float(jnp.abs(u["col"]).max()) > 0


def test_unknown_names_list_the_valid_choices():
  with pytest.raises(ValueError, match="polar_express"):
    om.newton_schulz("newton")
  with pytest.raises(ValueError, match="schatten4"):
    om.newton_schulz(normalization="svd")
  with pytest.raises(ValueError, match="moonlight"):
    om.spectral_scale("adam")
  with pytest.raises(ValueError, match="ema_debiased"):
    om.muon_momentum(form="polyak")
  with pytest.raises(ValueError, match=">= 1"):
    om.ns_coefficients("jordan", 0)
  with pytest.raises(ValueError, match=r"\(n, 3\)"):
    om.ns_coefficients([[1.0, 2.0], [3.0, 4.0]], 3)


def test_regex_mapping_routes_per_head_layout():
  # [d_model, heads, head_dim] query kernel: one matrix d_model x (heads*head_dim).
  params = {"attn": {"query": jnp.ones((8, 2, 4))}, "mlp": jnp.ones((8, 8))}
  dims = {r"attn/query": om.MuonDimensionNumbers(0, (1, 2))}
  leaves = om.resolve_dimension_numbers(dims, params, om.default_matrix_rule)
  assert leaves[0] == om.MuonDimensionNumbers(0, (1, 2))
  assert leaves[1] == om.MuonDimensionNumbers(0, 1)
