"""End-to-end trainer: learning, exact resume, interrupted saves, NaN stop, config errors."""

import json
import math
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from train import trainer


def rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def final_params(workdir: str, step: int) -> dict:
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(os.path.abspath(path))["params"]


def test_loss_falls_well_below_uniform(make_config, tmp_path, capsys):
  config = make_config(train_steps=60, eval_every=30, checkpoint_every=60,
                       optimizer__qk_clip=30.0)  # Also exercises the QK-clip wiring.
  last = trainer.train_and_evaluate(config, str(tmp_path))
  history = rows(str(tmp_path))
  assert history[0]["loss"] > 4.5  # ~ ln 256 = 5.55 at init.
  assert last["loss"] < 3.0 and last["eval_loss"] < 3.3
  for key in ("step", "loss", "lr", "tokens_per_sec", "update_rms/attn", "update_rms/mlp",
              "update_rms/embed", "max_attn_logit"):
    assert key in history[-1], key
  assert os.path.exists(tmp_path / "loss.png")
  out = capsys.readouterr().out
  assert "final eval loss" in out and str(tmp_path / "loss.png") in out


def test_exact_resume_and_interrupted_save(make_config, tmp_path):
  config = make_config(train_steps=12, checkpoint_every=6, eval_every=6, log_every=1)
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  trainer.train_and_evaluate(config, straight)
  trainer.train_and_evaluate(config, resumed, stop_at=6)
  # A save killed before orbax finalized it leaves a tmp dir that must be ignored.
  os.makedirs(os.path.join(resumed, "checkpoints", "9.orbax-checkpoint-tmp-1234", "state"))
  trainer.train_and_evaluate(config, resumed)
  a, b = rows(straight), rows(resumed)
  assert [r["step"] for r in b] == list(range(1, 13))
  assert [r["loss"] for r in a] == [r["loss"] for r in b]
  assert a[-1]["eval_loss"] == b[-1]["eval_loss"]
  for x, y in zip(jax.tree.leaves(final_params(straight, 12)),
                  jax.tree.leaves(final_params(resumed, 12))):
    np.testing.assert_array_equal(x, y)
  # Rerunning a finished run does no more steps.
  assert trainer.train_and_evaluate(config, resumed)["step"] == 12


def test_nan_loss_stops_with_step(make_config, tmp_path):
  config = make_config(train_steps=10, optimizer__name="adamw", optimizer__learning_rate=math.nan)
  with pytest.raises(FloatingPointError, match="at step 2"):
    trainer.train_and_evaluate(config, str(tmp_path))


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


@pytest.mark.parametrize("name,scan", [("muown", False), ("muon_plus_plus", True)])
def test_other_optimizers_and_scanned_layers(make_config, tmp_path, name, scan):
  config = make_config(train_steps=3, eval_every=3, checkpoint_every=3, log_every=1,
                       optimizer__name=name, model__scan_layers=scan)
  last = trainer.train_and_evaluate(config, str(tmp_path))
  assert last["step"] == 3 and math.isfinite(last["eval_loss"])
  assert rows(str(tmp_path))[-1]["loss"] < rows(str(tmp_path))[0]["loss"]
