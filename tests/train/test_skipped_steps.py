"""The trainer on the default model (cpu192: 192×192 to 192×512 matrices) skips a step whose
gradients hold a NaN, and stops with exit 4 when every step does.

The NaN is put into one row of one MLP matrix's gradient, not into the whole tree: a check that
trusted NaN to propagate through ``max`` saw an all-NaN gradient but missed a NaN row from 64×64
up (XLA:CPU). A batch is marked for poisoning by a mask value no real batch has.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from train import step as train_step_module
from train import trainer
from train.configs import default
from train.data import pipeline
from train.errors import TooManySkippedSteps

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARK = 2.0  # Loss-mask value that marks a batch to poison (real masks hold 0 and 1).

# Defines `_poisoned`: `loss + NaN * sum(one MLP row)` on marked batches, so the loss and one row
# of one hidden matrix's gradient are NaN and every other entry is finite.
POISONED_LOSS = """
import jax.numpy as jnp
import jax.tree_util as tu
from train import step

_real = step.loss_fn

def _poisoned(params, graphdef, batch):
  loss, aux = _real(params, graphdef, batch)
  row = next(x for p, x in tu.tree_leaves_with_path(params)
             if "mlp" in tu.keystr(p) and x.ndim >= 2 and min(x.shape[-2:]) >= 64)[..., 0, :]
  flag = jnp.where(jnp.any(batch["mask"] == {mark}), jnp.nan, 0.0)
  return loss + flag * jnp.sum(row), aux
"""


def _config(data_dir: str, **overrides):
  config = default.get_config()  # The default model.
  config.data.data_dir = data_dir
  config.data.max_files = 60
  config.update({"train_steps": 4, "eval_every": 4, "eval_steps": 1, "checkpoint_every": 1,
                 "max_checkpoints": 4, "log_every": 1, **overrides})
  return config


def _mark(to_global, train_step: int, eval_steps: int = 1):
  """`pipeline.to_global` that marks the batch of train step `train_step` (eval batches come
  first)."""
  calls = []

  def marked(batch, sharding):
    calls.append(1)
    if len(calls) == eval_steps + train_step:
      batch = dict(batch, mask=np.array(batch["mask"]))
      batch["mask"][0, -1] = MARK
    return to_global(batch, sharding)
  return marked


@pytest.fixture
def poisoned_loss(monkeypatch):
  namespace = {}
  exec(POISONED_LOSS.format(mark=MARK), namespace)  # pylint: disable=exec-used
  monkeypatch.setattr(train_step_module, "loss_fn", namespace["_poisoned"])


def _params(workdir, step: int) -> list[np.ndarray]:
  path = os.path.abspath(os.path.join(workdir, "checkpoints", str(step), "state"))
  return jax.tree.leaves(ocp.StandardCheckpointer().restore(path)["params"])


def test_one_nan_row_skips_the_step_and_keeps_the_weights(data_dir, tmp_path, monkeypatch,
                                                          poisoned_loss):
  monkeypatch.setattr(trainer.pipeline, "to_global", _mark(pipeline.to_global, 3))
  trainer.train_and_evaluate(_config(data_dir), str(tmp_path))
  with open(tmp_path / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert [r["skipped_steps"] for r in rows] == [0, 0, 1, 1]
  before, after, next_ = (_params(tmp_path, s) for s in (2, 3, 4))
  for b, a in zip(before, after):
    np.testing.assert_array_equal(a, b)  # Step 3 changed no weight.
  assert all(np.isfinite(x).all() for x in next_)
  assert any(not np.array_equal(a, n) for a, n in zip(after, next_))  # Step 4 trained.


def test_only_nan_batches_stop_the_run_with_exit_4(data_dir, tmp_path):
  """From the command line, every batch poisoned: the run stops after 3 skipped steps."""
  driver = POISONED_LOSS.format(mark=MARK) + (
      "step.loss_fn = _poisoned\n"
      "from train import trainer\n"
      "from train.data import pipeline\n"
      "_to_global = pipeline.to_global\n"
      "def _all(batch, sharding):\n"
      "  if 'mask' in batch:\n"
      "    batch = dict(batch, mask=batch['mask'].copy())\n"
      f"    batch['mask'][0, -1] = {MARK}\n"
      "  return _to_global(batch, sharding)\n"
      "trainer.pipeline.to_global = _all\n"
      "import runpy, sys\n"
      "sys.argv = ['train'] + sys.argv[1:]\n"
      "runpy.run_module('train', run_name='__main__', alter_sys=True)\n")
  out = subprocess.run(
      [sys.executable, "-c", driver, f"--workdir={tmp_path}", f"--config.data.data_dir={data_dir}",
       "--config.data.max_files=60", "--config.train_steps=6", "--config.eval_steps=1",
       "--config.max_consecutive_skipped=3"],
      cwd=REPO_ROOT, capture_output=True, text=True,
      env=dict({k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))},
               JAX_PLATFORMS="cpu"))
  assert out.returncode == 4, out.stderr[-3000:]
  line = out.stderr.strip().splitlines()[-1]
  assert line.startswith("non-finite training: 3 consecutive steps skipped (steps 1..3"), line
  assert "mlp" in line, line  # The report names the poisoned matrix's gradient.
