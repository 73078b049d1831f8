"""The batch stays sharded over ("data", "fsdp") in the compiled train step, scanned or not.

Read from the compiled HLO of the trainer's own jitted step on the 8-device CPU mesh (1, 8, 1):
every per-device attention-score and MLP-activation array carries batch = 16 / 8 = 2. Inside
`nnx.scan` the partitioner used to replicate the batch (each device computed all 16 sequences)
until the model pinned its activations (`models.sharding.constrain`).
"""

import re

import jax
import jax.numpy as jnp
import pytest

import models
from train import mesh as mesh_lib
from train import optimizer as optimizer_lib
from train import trainer
from train.configs import default
from train.state import abstract_state
from train.step import jit_steps

GLOBAL_BATCH, SEQ = 16, 128


def _compiled_hlo(**model_overrides) -> str:
  config = default.get_config()  # cpu192: 6 heads in 2 KV groups of 3, d_ff 512
  config.batch_size, config.seq_len = GLOBAL_BATCH, SEQ
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 8, 1
  for key, value in model_overrides.items():
    config.model[key] = value
  mesh = mesh_lib.make_mesh(config.mesh)
  model_cfg = trainer.model_config(config.model)
  tx, qk = optimizer_lib.make_optimizer(config.optimizer, model_cfg, 10)
  graphdef, state, shardings, _ = abstract_state(model_cfg, tx, mesh)
  batch_sharding = models.sharding.batch_sharding(mesh)
  train_fn, _ = jit_steps(graphdef, tx, qk, shardings, batch_sharding)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       state, shardings)
  shape = (GLOBAL_BATCH, SEQ + 1)
  batch = {"tokens": jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding),
           "mask": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch_sharding)}
  return train_fn.lower(state, batch).compile().as_text()


def _leading_dims(hlo: str, tail: str) -> set[int]:
  """First dims of every array shaped `[n, *tail]` in the HLO (e.g. tail "2,3,128,128")."""
  return {int(n) for n in re.findall(r"\[(\d+)," + re.escape(tail) + r"\]", hlo)}


@pytest.mark.parametrize("overrides", [
    {"scan_layers": False},
    {"scan_layers": True},
    {"scan_layers": True, "remat": True},
], ids=["unscanned", "scanned", "scanned_remat"])
def test_per_device_batch_is_global_over_data_fsdp(overrides):
  hlo = _compiled_hlo(**overrides)
  per_device = GLOBAL_BATCH // 8
  scores = _leading_dims(hlo, f"2,3,{SEQ},{SEQ}")  # [B, G, R, L, M] attention scores
  mlp = _leading_dims(hlo, f"{SEQ},512")  # [B, L, d_ff] MLP activations
  assert scores == {per_device}, scores
  assert mlp == {per_device}, mlp
