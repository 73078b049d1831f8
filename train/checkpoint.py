"""Orbax checkpoints of the train state together with the grain iterator state.

`CheckpointManager` writes each step into a temporary directory and renames it on completion, so
an interrupted save is never picked up: `latest_step()` only sees finalized checkpoints.
"""

import os

import grain
import jax
import orbax.checkpoint as ocp

from train.state import TrainState


class Checkpointer:
  """Saves/restores `{"state": TrainState, "data": grain iterator}` under `directory`."""

  def __init__(self, directory: str, max_to_keep: int = 3):
    local = "://" not in directory  # Remote (gs://...) paths are used as they are.
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory) if local else directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "data"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: TrainState, data_iter: grain.DatasetIterator) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)),
                      force=True)

  def restore(self, step: int, state_shardings: TrainState, abstract_state: TrainState,
              data_iter: grain.DatasetIterator) -> TrainState:
    """Restores onto `state_shardings` (any mesh) and rewinds `data_iter` in place."""
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          abstract_state, state_shardings)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=grain.checkpoint.CheckpointRestore(data_iter)))
    return restored["state"]

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
