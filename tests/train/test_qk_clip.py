"""QK-clip in the train step: a low τ caps every head's max logit, a huge τ changes nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.sharding import batch_sharding
from train import mesh as mesh_lib
from train import optimizer as optimizer_lib
from train import trainer
from train.configs import tiny
from train.state import init_state
from train.step import jit_steps
from train.step import loss_fn

TOKENS_BxT = (np.arange(8 * 65) * 7919 % 256).reshape(8, 65).astype(np.int32)


def _train(tau: float, steps: int = 3):
  """Muon (+ QK-clip at `tau`, 0 = off) on one fixed batch; the max logits after each step."""
  config = tiny.get_config()
  config.model.qk_norm = False  # QK-norm would undo the clip (see test below).
  config.optimizer.qk_clip = tau
  config.optimizer.warmup_steps = 0
  config.mesh.data = 1
  model_cfg = trainer.model_config(config.model)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  tx, use_qk_clip = optimizer_lib.make_optimizer(config.optimizer, model_cfg, 40)
  assert use_qk_clip == (tau > 0)
  graphdef, state, shardings = init_state(model_cfg, tx, mesh, seed=0)
  train_fn, _ = jit_steps(graphdef, tx, use_qk_clip, shardings, batch_sharding(mesh))
  batch = {"tokens": jnp.asarray(TOKENS_BxT), "mask": jnp.ones(TOKENS_BxT.shape, jnp.float32)}
  max_logits = jax.jit(lambda p: loss_fn(p, graphdef, batch)[1]["max_logits"])
  before, after, losses = max_logits(state.params), [], []
  for _ in range(steps):
    state, metrics = train_fn(state, batch)
    losses.append(float(metrics["loss"]))
    after.append(max_logits(state.params))
  return before, after, losses, state


def test_low_tau_clips_every_head_after_each_step():
  tau = 2.0
  before, after, losses, _ = _train(tau)
  assert min(float(v.min()) for v in before.values()) > 1.5 * tau  # Every head needs clipping.
  for step_logits in after:
    for layer, logits_H in step_logits.items():
      assert float(logits_H.max()) <= tau * 1.15, (layer, logits_H)
  assert losses[-1] < losses[0]  # Still trains.


def test_huge_tau_changes_nothing():
  _, after_huge, losses_huge, state_huge = _train(1e9)
  _, after_off, losses_off, state_off = _train(0.0)
  assert losses_huge == losses_off
  assert max(float(v.max()) for v in after_off[-1].values()) > 3.0  # Unclipped logits stay big.
  for a, b in zip(jax.tree.leaves(state_huge.params), jax.tree.leaves(state_off.params)):
    np.testing.assert_array_equal(a, b)


def test_qk_clip_with_qk_norm_is_rejected():
  config = tiny.get_config()
  config.optimizer.qk_clip = 30.0
  with pytest.raises(ValueError, match="qk_norm=False"):
    optimizer_lib.make_optimizer(config.optimizer, trainer.model_config(config.model), 40)
