"""8-device CPU mesh: fsdp x tensor sharded training, checkpoint, restore onto another mesh."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import PartitionSpec as P

from train import mesh as mesh_lib
from train import optimizer as optimizer_lib
from train import trainer
from train.checkpoint import Checkpointer
from train.data import pipeline
from train.state import init_state


def _state_on(config, mesh_sizes):
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_sizes
  model_cfg = trainer.model_config(config.model)
  tx, _ = optimizer_lib.make_optimizer(config.optimizer, model_cfg, config.train_steps)
  return init_state(model_cfg, tx, mesh_lib.make_mesh(config.mesh), config.seed)


def test_fsdp_tensor_training_and_restore_on_other_mesh(make_config, tmp_path):
  assert len(jax.devices()) == 8
  workdir = str(tmp_path)
  config = make_config(train_steps=6, checkpoint_every=6, eval_every=6, log_every=1,
                       mesh__data=2, mesh__fsdp=2, mesh__tensor=2)
  first = trainer.train_and_evaluate(config, workdir)
  assert first["step"] == 6

  _, state, _ = _state_on(make_config(), (2, 2, 2))
  q = state.params["layers"][0]["attn"]["q"]["kernel"]
  assert q.sharding.spec == P("fsdp", "tensor")

  # Restore onto a (1, 4, 2) mesh and compare with the raw saved arrays.
  config_b = make_config(train_steps=9, checkpoint_every=3, eval_every=3, log_every=1)
  _, state_b, shardings_b = _state_on(config_b, (1, 4, 2))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state_b)
  data_iter = iter(pipeline.train_dataset(config_b, pipeline.prepare(config_b)))
  restored = Checkpointer(os.path.join(workdir, "checkpoints")).restore(
      6, shardings_b, abstract, data_iter)
  saved = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", "6", "state"))
  kernel = restored.params["layers"][1]["mlp"]["up"]["kernel"]
  assert kernel.sharding.spec == P("fsdp", "tensor") and kernel.sharding.mesh.shape["fsdp"] == 4
  for x, y in zip(jax.tree.leaves(restored.params), jax.tree.leaves(saved["params"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert data_iter.get_state() == {"next_index": 6}

  # And the trainer itself continues on the new mesh.
  assert trainer.train_and_evaluate(config_b, workdir)["step"] == 9
