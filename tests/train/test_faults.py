"""Real faults: a corrupt latest checkpoint falls back to the previous one and still ends
bit-identical to an uninterrupted run; none left is a one-line error (exit 3); a torn metrics
line resumes; non-finite steps are counted and too many in a row stop the run (exit 4)."""

import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import optax_muon as om
import numpy as np
import orbax.checkpoint as ocp
import pytest

from train import trainer
from train.checkpoint import Checkpointer
from train.configs import tiny
from train.data import pipeline
from train.errors import NoUsableCheckpoint
from train.errors import TooManySkippedSteps
from train.state import init_state

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS, EVERY = 12, 4


def _config(data_dir: str, **overrides):
  config = tiny.get_config()
  config.data.data_dir = data_dir
  config.update({"train_steps": STEPS, "checkpoint_every": EVERY, "eval_every": EVERY,
                 "log_every": 1, **overrides})
  return config


def _rows(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _params(workdir, step: int) -> list[np.ndarray]:
  path = os.path.abspath(os.path.join(workdir, "checkpoints", str(step), "state"))
  return jax.tree.leaves(ocp.StandardCheckpointer().restore(path)["params"])


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory) -> str:
  """An uninterrupted run: checkpoints 4, 8, 12 and metrics rows 1..12."""
  workdir = str(tmp_path_factory.mktemp("straight"))
  trainer.train_and_evaluate(_config(data_dir), workdir)
  return workdir


def _killed_after_8(straight: str, workdir) -> str:
  """`straight` as a run killed right after saving step 8 would have left it."""
  shutil.copytree(straight, workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "12"))
  rows = [r for r in _rows(workdir) if r["step"] <= 8]
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return str(workdir)


def _largest_state_file(step_dir: str) -> str:
  files = [os.path.join(root, f) for root, _, names in os.walk(os.path.join(step_dir, "state"))
           for f in names]
  return max(files, key=os.path.getsize)


def flip_4k(step_dir: str) -> str:
  """4 KiB of bits flipped in the middle of the largest state file (size unchanged)."""
  path = _largest_state_file(step_dir)
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    data = f.read(4096)
    f.seek(os.path.getsize(path) // 2)
    f.write(bytes(b ^ 0xFF for b in data))
  return path


def truncate_half(step_dir: str) -> str:
  path = _largest_state_file(step_dir)
  os.truncate(path, os.path.getsize(path) // 2)
  return path


def zero_metadata(step_dir: str) -> str:
  """orbax's `_METADATA` of the state item overwritten with zeros (size unchanged)."""
  path = os.path.join(step_dir, "state", "_METADATA")
  with open(path, "r+b") as f:
    f.write(bytes(os.path.getsize(path)))
  return path


def truncate_data_state(step_dir: str) -> str:
  path = os.path.join(step_dir, "data", "process_0-of-1.json")
  os.truncate(path, os.path.getsize(path) // 2)
  return path


def _assert_same_as_straight(straight: str, resumed: str) -> None:
  a, b = _rows(straight), _rows(resumed)
  assert [r["step"] for r in b] == list(range(1, STEPS + 1))
  assert [r["loss"] for r in a] == [r["loss"] for r in b]
  assert [r.get("eval_loss") for r in a] == [r.get("eval_loss") for r in b]
  for x, y in zip(_params(straight, STEPS), _params(resumed, STEPS)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("corrupt,checksums", [
    (flip_4k, True), (truncate_half, True), (zero_metadata, True), (truncate_data_state, True),
    (zero_metadata, False),  # Without checksums.json the failing restore itself is caught.
])
def test_corrupt_latest_checkpoint_falls_back_and_ends_identical(
    straight, data_dir, tmp_path, caplog, corrupt, checksums):
  workdir = _killed_after_8(straight, tmp_path / "run")
  step_dir = os.path.join(workdir, "checkpoints", "8")
  if not checksums:
    os.remove(os.path.join(step_dir, "checksums.json"))
  bad_file = corrupt(step_dir)
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write('{"step": 9, "loss": 1.2')  # And a half-written metrics row.
  with caplog.at_level(logging.WARNING):
    last = trainer.train_and_evaluate(_config(data_dir), workdir)
  assert last["step"] == STEPS
  rejected = [r.getMessage() for r in caplog.records if "Checkpoint rejected" in r.getMessage()]
  assert len(rejected) == 1 and "step 8: " in rejected[0], rejected
  if checksums:  # The checksums name the damaged file itself.
    assert bad_file in rejected[0], rejected
  else:  # The restore names the item that failed.
    assert os.path.join(step_dir, "state") + ": restore failed" in rejected[0], rejected
  assert any("Resuming from step 4" in r.getMessage() for r in caplog.records)
  assert any("half-written last line" in r.getMessage() for r in caplog.records)
  assert os.path.isdir(os.path.join(workdir, "checkpoints.rejected", "8"))  # Kept aside.
  _assert_same_as_straight(straight, workdir)


def test_nonfinite_checkpoint_is_rejected_by_leaf(straight, data_dir, tmp_path, caplog):
  """A checkpoint that verifies and restores but holds NaN momentum is not resumed from."""
  workdir = _killed_after_8(straight, tmp_path / "run")
  config = _config(data_dir)
  model_cfg, mesh, tokenizer, tx, _ = trainer.setup(config)
  _, state, shardings = init_state(model_cfg, tx, mesh, config.seed)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  data_iter = iter(pipeline.train_dataset(config, pipeline.prepare(config), tokenizer))
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore(8, shardings, abstract, data_iter)
  param = "layers/1/attn/q/kernel"
  # The Muon momentum of that kernel: rows of a stack of same-shaped matrices.
  is_momentum = lambda x: isinstance(x, om.MomentumState)
  (path, momentum), = [(p, x) for p, x in jax.tree_util.tree_flatten_with_path(
      state.opt_state, is_leaf=is_momentum)[0] if is_momentum(x)]
  (group,) = [g for g in momentum.mu.groups if param in [m.path for m in g.members]]
  (member,) = [m for m in group.members if m.path == param]
  target = (jax.tree_util.keystr(path, simple=True, separator="/") + f"/mu/{group.name}[{param}]")
  poisoned = momentum.mu.map(lambda g, x: x.at[member.start, 0, :4].set(jnp.nan)
                             if g is group else x)

  def poison(x):  # 4 NaNs in one Muon momentum buffer.
    return momentum._replace(mu=poisoned) if is_momentum(x) else x

  state = state._replace(opt_state=jax.tree.map(poison, state.opt_state, is_leaf=is_momentum))
  ckpt.manager.delete(8)
  ckpt.save(8, state, data_iter)  # Checksums match: only the values are bad.
  ckpt.close()
  with caplog.at_level(logging.WARNING):
    trainer.train_and_evaluate(config, workdir)
  rejected = [r.getMessage() for r in caplog.records if "Checkpoint rejected" in r.getMessage()]
  assert len(rejected) == 1, rejected
  assert f"restored non-finite values in opt_state/{target} (4 of 16384)" in rejected[0], rejected
  _assert_same_as_straight(straight, workdir)


def test_no_usable_checkpoint_is_one_line(straight, data_dir, tmp_path):
  workdir = _killed_after_8(straight, tmp_path / "run")
  for step in (4, 8):
    zero_metadata(os.path.join(workdir, "checkpoints", str(step)))
  with pytest.raises(NoUsableCheckpoint) as e:
    trainer.train_and_evaluate(_config(data_dir), workdir)
  message = str(e.value)
  assert "\n" not in message and "step 8: " in message and "step 4: " in message
  assert "_METADATA" in message
  # From the command line: that line, exit code 3, no traceback.
  out = subprocess.run(
      [sys.executable, "-m", "train", f"--workdir={workdir}", "--config=train/configs/tiny.py",
       f"--config.data.data_dir={data_dir}", f"--config.train_steps={STEPS}",
       f"--config.checkpoint_every={EVERY}"],
      cwd=REPO_ROOT, capture_output=True, text=True,
      env=dict({k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))},
               JAX_PLATFORMS="cpu"))
  assert out.returncode == 3, out.stderr[-3000:]
  assert "Traceback" not in out.stderr
  assert out.stderr.strip().splitlines()[-1].startswith(
      f"checkpoint error: no usable checkpoint in {os.path.join(workdir, 'checkpoints')}: step 8")


def test_checkpoints_of_another_optimizer_name_the_config_change(straight, data_dir, tmp_path):
  # The optimizer's state has another structure: no step restores, and the error says which
  # config fields differ from the run that wrote them. Nothing is moved or deleted.
  workdir = _killed_after_8(straight, tmp_path / "run")
  config = _config(data_dir)
  config.optimizer.name = "muown"
  with pytest.raises(NoUsableCheckpoint) as e:
    trainer.train_and_evaluate(config, workdir)
  message = str(e.value)
  assert "\n" not in message and "step 8: " in message and "step 4: " in message
  assert 'optimizer.name: "muon" -> "muown"' in message, message
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4", "8"]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["optimizer"]["name"] == "muon"  # The record is not overwritten.


def _nan_mask_from(step: int, to_global):
  """`pipeline.to_global` that poisons the loss mask of every train batch from `step` on."""
  calls = []

  def poisoned(batch, sharding):
    calls.append(1)
    if len(calls) > tiny.get_config().eval_steps + step - 1:  # Eval batches come first.
      batch = dict(batch, mask=np.full_like(batch["mask"], np.nan))
    return to_global(batch, sharding)
  return poisoned


def test_one_skipped_step_is_counted_and_training_goes_on(data_dir, tmp_path, monkeypatch):
  to_global = trainer.pipeline.to_global
  calls = []

  def one_bad_batch(batch, sharding):
    calls.append(1)
    if len(calls) == tiny.get_config().eval_steps + 3:  # Train step 3.
      batch = dict(batch, mask=np.full_like(batch["mask"], np.nan))
    return to_global(batch, sharding)

  monkeypatch.setattr(trainer.pipeline, "to_global", one_bad_batch)
  last = trainer.train_and_evaluate(_config(data_dir), str(tmp_path))  # Compiled as `straight`.
  skipped = [r["skipped_steps"] for r in _rows(tmp_path)]
  assert skipped == [0, 0] + [1] * (STEPS - 2)
  assert last["step"] == STEPS and np.isfinite(last["eval_loss"])


def test_consecutive_skipped_steps_stop_the_run(data_dir, tmp_path, monkeypatch):
  to_global = trainer.pipeline.to_global
  monkeypatch.setattr(trainer.pipeline, "to_global", _nan_mask_from(6, to_global))
  config = _config(data_dir, max_consecutive_skipped=3)
  with pytest.raises(TooManySkippedSteps) as e:
    trainer.train_and_evaluate(config, str(tmp_path))
  message = str(e.value)
  assert message.startswith("3 consecutive steps skipped (steps 6..8")
  assert f"last finite checkpoint: step 4 ({tmp_path / 'checkpoints' / '4'})" in message
  assert "non-finite: loss (nan), grads/" in message
  assert [r["skipped_steps"] for r in _rows(tmp_path)] == [0, 0, 0, 0, 0, 1, 2, 3]


def test_diverging_run_exits_4(data_dir, tmp_path):
  """From the command line: a learning rate of 1e30 blows up; the run says so and exits 4."""
  out = subprocess.run(
      [sys.executable, "-m", "train", f"--workdir={tmp_path}", "--config=train/configs/tiny.py",
       f"--config.data.data_dir={data_dir}", "--config.optimizer.learning_rate=1e30",
       "--config.optimizer.warmup_steps=0", "--config.max_consecutive_skipped=3"],
      cwd=REPO_ROOT, capture_output=True, text=True,
      env=dict({k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))},
               JAX_PLATFORMS="cpu"))
  assert out.returncode == 4, out.stderr[-3000:]
  assert "Traceback" not in out.stderr
  line = out.stderr.strip().splitlines()[-1]
  assert line.startswith("non-finite training: 3 consecutive steps skipped"), line
  named = line.split("; non-finite: ", 1)[1]  # what was non-finite: the loss, then leaves
  assert "grads/" in named and "Lower optimizer.learning_rate" in line, line
