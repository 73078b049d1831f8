"""Compiles the tiny model for 2 slices of v5e:2x2 (data over DCN) with three optimizers and
prints what each sends across slices, as JSON. Run by tests/train/test_aot.py in its own
process (libtpu is loaded here, never in the test process).

`muon_all_axes` is the control: its Newton–Schulz gets a device-less mesh, so it cannot tell
which axis crosses slices and spreads matrices over every axis, DCN included.
"""

import importlib.util
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from train import aot  # pylint: disable=wrong-import-position  # sets libtpu's environment
import jax  # pylint: disable=wrong-import-position,g-import-not-at-top
from train import optimizer as optimizer_lib  # pylint: disable=wrong-import-position


def tiny_config(optimizer: str):
  path = os.path.join(os.path.dirname(aot.__file__), "configs", "tiny.py")
  spec = importlib.util.spec_from_file_location("tiny_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.mesh.data, config.mesh.fsdp = 2, -1  # one data row per slice
  config.optimizer.name = optimizer
  return config


def deviceless_mesh_tx(config, model_cfg):
  mesh = jax.sharding.AbstractMesh((2, 4, 1), ("data", "fsdp", "tensor"))
  with config.optimizer.unlocked():
    config.optimizer.options = {**config.optimizer.get("options", {}), "mesh": mesh}
  return optimizer_lib.make_optimizer(config.optimizer, model_cfg, config.train_steps)


def main() -> None:
  out = {}
  for name, optimizer, make_tx in (("adamw", "adamw", None), ("muon", "muon", None),
                                   ("muon_all_axes", "muon", deviceless_mesh_tx)):
    report = aot.compile_report(tiny_config(optimizer), "v5e:2x2", num_slices=2, make_tx=make_tx)
    out[name] = report["dcn_transfers"]
  print(json.dumps(out))


if __name__ == "__main__":
  main()
