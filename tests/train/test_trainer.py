"""End-to-end trainer: learning, exact resume (SIGTERM, killed save), NaN stop, config errors."""

import json
import math
import os
import re
import shutil
import signal
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from train import trainer
from train.checkpoint import Checkpointer


def rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def final_params(workdir: str, step: int) -> dict:
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(os.path.abspath(path))["params"]


def test_loss_falls_well_below_uniform(make_config, tmp_path, capsys):
  config = make_config(train_steps=60, eval_every=30, checkpoint_every=60,
                       optimizer__qk_clip=30.0, model__qk_norm=False)  # QK-clip wiring.
  last = trainer.train_and_evaluate(config, str(tmp_path))
  history = rows(str(tmp_path))
  assert history[0]["loss"] > 4.5  # ~ ln 256 = 5.55 at init.
  assert last["loss"] < 3.0 and last["eval_loss"] < 3.3
  for key in ("step", "loss", "eval_loss", "eval_bpb", "lr", "tokens_per_sec", "update_rms/attn",
              "update_rms/mlp", "update_rms/embed", "update_rms/norm", "max_attn_logit",
              "skipped_steps"):
    assert key in history[-1], key
  assert all(r["skipped_steps"] == 0 for r in history)
  assert last["eval_bpb"] == pytest.approx(last["eval_loss"] / math.log(2))  # 1 token = 1 byte.
  assert [r["step"] for r in history if "eval_loss" in r] == [30, 60]  # Only when evaluated.
  assert all(r["tokens_per_sec"] > 0 and r["lr"] >= 0 for r in history)
  assert os.path.exists(tmp_path / "loss.png")
  out, err = capsys.readouterr()
  assert re.search(r"train: 100%.*skipped=0, tok_s=\d+", err)  # Bar: skipped steps, tokens/s.
  assert out.splitlines()[-2:] == [  # The run ends with the eval loss and the plot's path.
      f"final eval loss: {last['eval_loss']:.4f} (step 60), {last['eval_bpb']:.4f} bits/byte",
      f"loss plot: {tmp_path / 'loss.png'}"]


def _interrupt_save(checkpoints: str, step: int) -> None:
  """Turns finished checkpoint `step` into what a process killed mid-save leaves behind.

  Orbax writes a step into `<step>.orbax-checkpoint-tmp-<timestamp>/` and renames it to `<step>/`
  only when every item is written; a kill before that leaves the tmp dir, partly written.
  """
  tmp = os.path.join(checkpoints, f"{step}.orbax-checkpoint-tmp-1767225600000000")
  os.rename(os.path.join(checkpoints, str(step)), tmp)
  shutil.rmtree(os.path.join(tmp, "data"))  # The data item was never written ...
  for root, _, files in os.walk(os.path.join(tmp, "state")):
    for name in files:  # ... and the state item only half.
      path = os.path.join(root, name)
      os.truncate(path, os.path.getsize(path) // 2)


def test_exact_resume_after_sigterm_and_interrupted_save(make_config, tmp_path, monkeypatch):
  """12 steps straight == 4 steps + SIGTERM, resume to 9 + kill mid-save of 9, resume to 12."""
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("SIGTERM handlers run only in the main thread")
  config = make_config(train_steps=12, checkpoint_every=6, eval_every=6, log_every=1)
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  trainer.train_and_evaluate(config, straight)

  # Run 1: SIGTERM arrives while step 4's batch is being read (eval batches come first).
  calls = []
  def to_global_then_sigterm(batch, sharding):
    calls.append(1)
    if len(calls) == config.eval_steps + 4:
      os.kill(os.getpid(), signal.SIGTERM)
    return to_global(batch, sharding)
  to_global, handler = trainer.pipeline.to_global, signal.getsignal(signal.SIGTERM)
  monkeypatch.setattr(trainer.pipeline, "to_global", to_global_then_sigterm)
  assert trainer.train_and_evaluate(config, resumed)["step"] == 4
  monkeypatch.setattr(trainer.pipeline, "to_global", to_global)
  assert signal.getsignal(signal.SIGTERM) == handler  # The trainer's handler is removed again.
  checkpoints = os.path.join(resumed, "checkpoints")
  assert Checkpointer(checkpoints).latest_step() == 4

  # Run 2 saves 6 and 9; then the save of 9 is "killed": run 3 must resume from 6.
  trainer.train_and_evaluate(config, resumed, stop_at=9)
  assert [r["step"] for r in rows(resumed)] == list(range(1, 10))
  _interrupt_save(checkpoints, 9)
  assert Checkpointer(checkpoints).latest_step() == 6
  trainer.train_and_evaluate(config, resumed)

  a, b = rows(straight), rows(resumed)
  assert [r["step"] for r in b] == list(range(1, 13))  # Rows 7..9 of run 2 were replaced.
  assert [r["loss"] for r in a] == [r["loss"] for r in b]
  assert a[-1]["eval_loss"] == b[-1]["eval_loss"]
  for x, y in zip(jax.tree.leaves(final_params(straight, 12)),
                  jax.tree.leaves(final_params(resumed, 12))):
    np.testing.assert_array_equal(x, y)
  # Rerunning a finished run does no more steps.
  assert trainer.train_and_evaluate(config, resumed)["step"] == 12


@pytest.mark.parametrize("overrides,message", [
    ({"optimizer__name": "sgd"}, "optimizer.name"),
    ({"optimizer__schedule": "linear"}, "optimizer.schedule"),
    ({"batch_size": 12}, "not divisible by the data axes"),
    ({"mesh__data": 3}, "devices"),
    ({"data__tfds_name": "lm1b", "data__data_dir": ""}, "data_dir is required"),
    ({"optimizer__qk_clip": 50.0, "model__scan_layers": True}, "scan_layers=False"),
    ({"seq_len": 4096}, "max_len"),
])
def test_bad_config_fails_at_start(make_config, tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    trainer.train_and_evaluate(make_config(**overrides), str(tmp_path))


class SnippetsForTest(tfds.core.GeneratorBasedBuilder):
  """A prepared non-default TFDS dataset: variable-length `Text` records, train/validation."""

  VERSION = tfds.core.Version("1.0.0")
  code_path = None

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict({"body": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(300), "validation": self._generate_examples(20)}

  def _generate_examples(self, n):
    for i in range(n):
      yield str(i), {"body": f"def f_{i}(x):\n  return x * {i}\n" * (1 + i % 4)}


def test_trains_on_another_tfds_dataset(make_config, tmp_path):
  data_dir = str(tmp_path / "tfds")
  SnippetsForTest(data_dir=data_dir, file_format="array_record").download_and_prepare()
  config = make_config(train_steps=4, eval_every=4, checkpoint_every=4, log_every=1,
                       data__tfds_name="snippets_for_test", data__data_dir=data_dir,
                       data__text_field="body", data__eval_split="validation")
  last = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert last["step"] == 4 and math.isfinite(last["eval_loss"])
  with pytest.raises(ValueError, match="not prepared"):  # Nothing is downloaded.
    trainer.train_and_evaluate(make_config(data__tfds_name="snippets_for_test",
                                           data__data_dir=str(tmp_path / "empty")),
                               str(tmp_path / "run2"))


@pytest.mark.parametrize("name,scan", [
    pytest.param("muown", False, marks=pytest.mark.slow),  # By name: test_optimizer.py.
    ("muon_plus_plus", True),
])
def test_other_optimizers_and_scanned_layers(make_config, tmp_path, name, scan):
  config = make_config(train_steps=3, eval_every=3, checkpoint_every=3, log_every=1,
                       optimizer__name=name, model__scan_layers=scan)
  last = trainer.train_and_evaluate(config, str(tmp_path))
  assert last["step"] == 3 and math.isfinite(last["eval_loss"])
  assert rows(str(tmp_path))[-1]["loss"] < rows(str(tmp_path))[0]["loss"]


def test_zero_initialized_output_projections_train_under_muown(make_config, tmp_path):
  # modded-nanogpt-style zero init of attn/o and mlp/down (model.zero_init_proj): Muown
  # must move them (a zero neuron has no direction and no magnitude gradient; it takes a
  # plain Muon step). Muon and Muon++ move them by construction.
  config = make_config(train_steps=6, eval_every=6, checkpoint_every=6, log_every=2,
                       optimizer__name="muown", optimizer__warmup_steps=1,
                       model__zero_init_proj=True)
  model_cfg = trainer.model_config(config.model)
  import optax
  from train.state import init_state
  mesh = jax.make_mesh((1, 1, 1), ("data", "fsdp", "tensor"), devices=jax.devices()[:1])
  _, state, _ = init_state(model_cfg, optax.identity(), mesh, 0)
  assert not np.asarray(state.params["layers"][0]["mlp"]["down"]["kernel"]).any()  # starts at 0
  last = trainer.train_and_evaluate(config, str(tmp_path))
  assert math.isfinite(last["eval_loss"])
  params = final_params(str(tmp_path), 6)
  for i in range(model_cfg.n_layers):
    for block, name in (("attn", "o"), ("mlp", "down")):
      w = np.asarray(params["layers"][str(i)][block][name]["kernel"])
      assert np.isfinite(w).all() and np.linalg.norm(w, axis=0).min() > 0  # every neuron moved
