"""Orbax checkpoints of the train state and the data iterator, checksummed and verified.

`CheckpointManager` writes each step into a temporary directory and renames it on completion, so
an interrupted save is never picked up: `latest_step()` only sees finalized checkpoints. After the
rename, `save` writes `<step>/checksums.json` (size and CRC32 of every file, `integrity.py`).

`restore_latest` walks the steps newest first and takes the first that passes three checks: its
files match the checksums, orbax restores it, and every params/optimizer value is finite. Rejected
newer steps are logged with the offending file or leaves and moved to `<directory>.rejected/` (so
the run can save those steps again); if no step passes, `NoUsableCheckpoint` is raised.
"""

import logging
import os

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from train import integrity
from train import nonfinite_leaves as nonfinite
from train.errors import NoUsableCheckpoint
from train.state import TrainState


class Checkpointer:
  """Saves/restores `{"state": TrainState, "data": grain iterator}` under `directory`."""

  def __init__(self, directory: str, max_to_keep: int = 3):
    local = "://" not in directory  # Remote (gs://...) paths are used as they are.
    self.directory = epath.Path(os.path.abspath(directory) if local else directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "data"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def step_dir(self, step: int) -> epath.Path:
    return self.directory / str(step)

  def save(self, step: int, state: TrainState, data_iter: grain.DatasetIterator) -> None:
    """Saves, waits for orbax to commit, then writes the step's checksums (process 0)."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)),
                      force=True)
    self.manager.wait_until_finished()
    if jax.process_index() == 0:
      integrity.write_checksums(self.step_dir(step))

  def restore(self, step: int, state_shardings: TrainState, abstract_state: TrainState,
              data_iter: grain.DatasetIterator) -> TrainState:
    """Restores onto `state_shardings` (any mesh) and rewinds `data_iter` in place."""
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          abstract_state, state_shardings)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=grain.checkpoint.CheckpointRestore(data_iter)))
    return restored["state"]

  def _checked_restore(self, step: int, state_shardings: TrainState,
                       abstract_state: TrainState, data_iter) -> TrainState:
    """`restore` after verifying the checksums, then checks finiteness; raises `_Rejected`."""
    step_dir = self.step_dir(step)
    try:
      if not integrity.verify_checksums(step_dir):
        logging.warning("Checkpoint step %d has no %s (saved before checksums existed, or the "
                        "run was killed right after orbax committed it); checking it by restoring.",
                        step, integrity.CHECKSUMS)
    except integrity.ChecksumError as e:
      raise _Rejected(step, str(e)) from e
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          abstract_state, state_shardings)
    for item, args in (("state", ocp.args.StandardRestore(target)),
                       ("data", grain.checkpoint.CheckpointRestore(data_iter))):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(**{item: args}))
      except Exception as e:  # pylint: disable=broad-except  # Any failure rejects the step.
        first_line = (str(e).strip().splitlines() or [""])[0][:300]
        raise _Rejected(step, f"{step_dir / item}: restore failed: {type(e).__name__}: "
                              f"{first_line}") from e
      if item == "state":
        state = restored["state"]
    bad = nonfinite.state_report(state)
    if bad:
      shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
      raise _Rejected(step, f"{step_dir / 'state'}: restored non-finite values in {shown}")
    return state

  def restore_latest(self, state_shardings: TrainState, abstract_state: TrainState,
                     data_iter: grain.DatasetIterator) -> tuple[int, TrainState | None]:
    """`(step, state)` of the newest checkpoint that passes every check; `(0, None)` if none
    exists. Raises `NoUsableCheckpoint` when checkpoints exist but all fail."""
    rejected = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        state = self._checked_restore(step, state_shardings, abstract_state, data_iter)
      except _Rejected as e:
        logging.warning("Checkpoint rejected: %s. Falling back to an earlier checkpoint.", e)
        rejected.append(e)
        continue
      if rejected:
        moved = self._set_aside([e.step for e in rejected])
        logging.warning("Resuming from step %d, the newest checkpoint that passes; rejected "
                        "step(s) %s moved to %s.", step, ", ".join(str(e.step) for e in rejected),
                        moved)
      return step, state
    if rejected:
      raise NoUsableCheckpoint(
          f"no usable checkpoint in {self.directory}: " + "; ".join(map(str, rejected)) +
          ". Move the directory away to start from scratch.")
    return 0, None

  def _set_aside(self, steps: list[int]) -> epath.Path:
    """Moves rejected steps out of the manager's directory (process 0), then reloads."""
    aside = epath.Path(str(self.directory) + ".rejected")
    if jax.process_index() == 0:
      aside.mkdir(parents=True, exist_ok=True)
      for step in steps:
        target, n = aside / str(step), 1
        while target.exists():
          target, n = aside / f"{step}.{n}", n + 1
        try:
          self.step_dir(step).rename(target)
        except (OSError, NotImplementedError):  # Object stores may not rename directories.
          self.step_dir(step).rmtree()
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("checkpoints_set_aside")
    self.manager.reload()
    return aside

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


class _Rejected(Exception):
  """A checkpoint step that failed a check, with the reason (naming the file or leaves)."""

  def __init__(self, step: int, reason: str):
    super().__init__(f"step {step}: {reason}")
    self.step = step
