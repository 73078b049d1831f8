"""One-step golden test: pins the first three train steps' numerics on the tiny config."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from train import mesh as mesh_lib
from train import optimizer as optimizer_lib
from train import trainer
from train.configs import tiny
from train.state import init_state
from train.step import jit_steps
from models.sharding import batch_sharding

# Stored from a CPU run (float32); update only for an intended numerics change.
GOLDEN_LOSSES = (5.545701026916504, 5.545701026916504, 5.454775810241699)
GOLDEN_GRAD_NORMS = (0.699221670627594, 0.699221670627594, 0.6981977224349976)


def test_first_steps_match_golden_numbers():
  config = tiny.get_config()
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3
  config.mesh.data = 1
  model_cfg = trainer.model_config(config.model)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  tx, use_qk_clip = optimizer_lib.make_optimizer(config.optimizer, model_cfg, 40)
  graphdef, state, shardings = init_state(model_cfg, tx, mesh, seed=0)
  train_fn, _ = jit_steps(graphdef, tx, use_qk_clip, shardings, batch_sharding(mesh))
  tokens = (np.arange(8 * 65) * 7919 % 256).reshape(8, 65).astype(np.int32)
  batch = {"tokens": jnp.asarray(tokens), "mask": jnp.ones((8, 65), jnp.float32)}
  losses, norms = [], []
  for _ in range(3):  # Warmup starts at lr=0: step 2 is the first with an update.
    state, metrics = train_fn(state, batch)
    losses.append(float(metrics["loss"]))
    norms.append(float(metrics["grad_norm"]))
  assert abs(losses[0] - math.log(256)) < 0.05
  np.testing.assert_allclose(losses, GOLDEN_LOSSES, rtol=2e-5)
  np.testing.assert_allclose(norms, GOLDEN_GRAD_NORMS, rtol=2e-4)
