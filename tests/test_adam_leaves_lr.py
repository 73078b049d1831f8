"""The AdamW leaves' learning rate is in AdamW's units, whatever the matrices' units are.

Muon++ and ``muon(scale="mup")`` take a spectral lr (``‖ΔW‖₂/s``), which is no AdamW lr:
unset, their leaves (embeddings, head, norms) run at ``SPECTRAL_ADAM_LR_RATIO`` times it.
Checked against ``optax.adamw`` itself on an embedding leaf.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_muon as om
from optax_muon._src import alias_parts


def _params():
  emb = jnp.cos(jnp.arange(32 * 8, dtype=jnp.float32)).reshape(32, 8)
  return {"embed": {"embedding": emb}, "mlp": {"kernel": jnp.eye(8)}}


def _grads(params):
  return jax.tree.map(lambda x: jnp.sin(jnp.arange(x.size, dtype=x.dtype) + 1.0).reshape(x.shape),
                      params)


def _embed_updates(tx, steps=3):
  params = _params()
  grads, state, out = _grads(params), tx.init(params), []
  for _ in range(steps):
    updates, state = tx.update(grads, state, params)
    out.append(updates["embed"]["embedding"])
  return np.stack(out)


def _adamw(lr, wd):
  # The reference: optax's AdamW with the aliases' betas on the embedding alone.
  tx = optax.adamw(lr, b1=0.9, b2=0.95, eps=1e-8, weight_decay=wd)
  params = _params()["embed"]
  grads, state, out = _grads(params), tx.init(params), []
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    out.append(updates["embedding"])
  return np.stack(out)


def test_the_ratio_is_the_measured_one():
  assert alias_parts.SPECTRAL_ADAM_LR_RATIO == 0.5


@pytest.mark.parametrize("make, wd", [
    (lambda lr, **k: om.muon_plus_plus(lr, **k), 0.1),
    (lambda lr, **k: om.muon(lr, scale="mup", **k), 0.1),
])
def test_spectral_lr_aliases_hand_their_leaves_an_adamw_lr(make, wd):
  lr = 0.02
  expected = _adamw(alias_parts.SPECTRAL_ADAM_LR_RATIO * lr, wd)
  np.testing.assert_allclose(_embed_updates(make(lr)), expected, rtol=1e-5, atol=1e-9)
  assert not np.allclose(_embed_updates(make(lr)), _adamw(lr, wd))  # not the spectral lr
  # A schedule keeps its shape, at the ratio.
  sched = optax.linear_schedule(0.0, lr, 4)
  ref = optax.adamw(lambda t: alias_parts.SPECTRAL_ADAM_LR_RATIO * sched(t), b1=0.9, b2=0.95,
                    weight_decay=wd)
  p = _params()["embed"]
  g, st, want = _grads(p), ref.init(p), []
  for _ in range(3):
    u, st = ref.update(g, st, p)
    want.append(u["embedding"])
  np.testing.assert_allclose(_embed_updates(make(sched)), np.stack(want), rtol=1e-5, atol=1e-9)
  # Set explicitly, the leaves take exactly that lr.
  np.testing.assert_allclose(_embed_updates(make(lr, adam_learning_rate=3e-3)), _adamw(3e-3, wd),
                             rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("make", [om.muon, om.muown, om.normuon])
def test_adamw_unit_aliases_hand_their_leaves_their_lr(make):
  # Their defaults decay the leaves with 0.1 (Muon and NorMuon: weight_decay; Muown:
  # adam_weight_decay).
  np.testing.assert_allclose(_embed_updates(make(0.01)), _adamw(0.01, 0.1), rtol=1e-5, atol=1e-9)
