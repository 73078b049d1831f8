"""Impossible hyperparameters and wrongly shaped gradients: a ValueError that names them."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_muon as om

ALIASES = {"muon": om.muon, "muon_plus_plus": om.muon_plus_plus, "muown": om.muown,
           "normuon": om.normuon}
BAD_LR = [-1e-2, float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("name", ALIASES)
@pytest.mark.parametrize("lr", BAD_LR)
def test_bad_learning_rate_is_named(name, lr):
  with pytest.raises(ValueError, match="learning_rate"):
    ALIASES[name](lr)


@pytest.mark.parametrize("name", ALIASES)
@pytest.mark.parametrize("schedule", [
    lambda count: jnp.nan * count,                     # NaN from step 0
    optax.linear_schedule(1e-3, -1e-3, 100),           # negative after step 50
    lambda count: jnp.where(count > 1000, jnp.inf, 1e-3),
], ids=["nan", "negative_later", "inf_later"])
def test_non_finite_or_negative_schedule_fails_at_construction(name, schedule):
  with pytest.raises(ValueError, match="learning_rate schedule returns"):
    ALIASES[name](schedule)


@pytest.mark.parametrize("name", ALIASES)
@pytest.mark.parametrize("beta", [1.0, 1.5, -0.1, float("nan")])
def test_bad_beta_is_named(name, beta):
  with pytest.raises(ValueError, match="beta"):
    ALIASES[name](1e-2, beta=beta)


@pytest.mark.parametrize("name", ALIASES)
def test_negative_weight_decay_is_named(name):
  with pytest.raises(ValueError, match="weight_decay"):
    ALIASES[name](1e-2, weight_decay=-0.1)


@pytest.mark.parametrize("kwargs,name", [
    (dict(adam_b1=1.0), "adam_b1"), (dict(adam_b2=-0.5), "adam_b2"),
    (dict(adam_eps=-1e-8), "adam_eps"), (dict(adam_weight_decay=-1.0), "adam_weight_decay"),
    (dict(adam_learning_rate=float("nan")), "adam_learning_rate"),
])
def test_bad_adam_arguments_are_named(kwargs, name):
  for alias in (om.muon, om.muon_plus_plus, om.muown):
    with pytest.raises(ValueError, match=name):
      alias(1e-2, **kwargs)


@pytest.mark.parametrize("radius", [-1.0, 0.0, float("nan")])
def test_muon_plus_plus_weight_radius(radius):
  with pytest.raises(ValueError, match="weight_radius"):
    om.muon_plus_plus(1e-2, weight_radius=radius)
  om.muon_plus_plus(1e-2, weight_radius=None)  # None: no bound, accepted


@pytest.mark.parametrize("make,name", [
    (lambda: om.muon_plus_plus(1e-2, update_scale=0.0), "update_scale"),
    (lambda: om.muon_plus_plus(1e-2, power_iterations=0), "power_iterations"),
    (lambda: om.muon_plus_plus(1e-2, bound_vectors=0), "bound_vectors"),
    (lambda: om.muown(1e-2, magnitude_b2=1.0), "magnitude_b2"),
    (lambda: om.muown(1e-2, magnitude_learning_rate=-1.0), "magnitude_learning_rate"),
    (lambda: om.muown(1e-2, magnitude="lion"), "adam"),
    (lambda: om.normuon(1e-2, b2=1.0), "b2"),
    (lambda: om.muon(1e-2, rms=0.0), "rms"),
    (lambda: om.muon(1e-2, ns_steps=0), "steps"),
])
def test_other_alias_arguments_are_named(make, name):
  with pytest.raises(ValueError, match=name):
    make()


@pytest.mark.parametrize("make,name", [
    (lambda: om.newton_schulz(eps=-1.0), "eps"),
    (lambda: om.newton_schulz(steps=0), "steps"),
    (lambda: om.spectral_scale("moonlight", rms=-0.2), "rms"),
    (lambda: om.spectral_scale("mup", exact=True, power_iterations=0), "power_iterations"),
    (lambda: om.spectral_weight_decay(0.0), "weight_radius"),
    (lambda: om.decoupled_weight_decay(-0.1), "weight_decay"),
    (lambda: om.decoupled_weight_decay(0.1, float("inf")), "learning_rate"),
    (lambda: om.muon_momentum(1.0), "beta"),
    (lambda: om.normalize_neurons(b2=-0.1), "b2"),
    (lambda: om.normalize_neurons(eps=-1.0), "eps"),
    (lambda: om.scale_by_muon(beta=2.0), "beta"),
])
def test_public_transforms_reject_impossible_values(make, name):
  with pytest.raises(ValueError, match=name):
    make()


def test_valid_edge_values_are_accepted():
  om.muon(0.0)  # a zero learning rate is a no-op, not an error
  om.muon(1e-2, beta=0.0, weight_decay=0.0)
  om.muon(optax.cosine_decay_schedule(1e-2, 100))


@pytest.mark.parametrize("name", ALIASES)
def test_gradient_shaped_unlike_its_parameter_names_the_path(name):
  params = {"layers": {"0": {"mlp": {"up": {"kernel": jnp.ones((8, 4))}}}}, "norm": jnp.ones(4)}
  tx = ALIASES[name](1e-2)
  state = tx.init(params)
  grads = {"layers": {"0": {"mlp": {"up": {"kernel": jnp.ones((4, 8))}}}}, "norm": jnp.ones(4)}
  with pytest.raises(ValueError, match="layers/0/mlp/up/kernel"):
    tx.update(grads, state, params)
  grads = {"layers": {"0": {"mlp": {"up": {"kernel": jnp.ones((8, 4))}}}}, "norm": jnp.ones(5)}
  with pytest.raises(ValueError, match="norm"):
    tx.update(grads, state, params)


def test_traced_hyperparameters_are_not_checked_but_work():
  # inject_hyperparams hands traced values to the factory inside jit.
  tx = optax.inject_hyperparams(om.muon)(learning_rate=1e-2, beta=0.9)
  params = {"w": jnp.ones((4, 4))}
  u, _ = jax.jit(tx.update)(params, tx.init(params), params)
  assert np.all(np.isfinite(np.asarray(u["w"])))
