"""Config validation and CLI checks: each bad field is one message naming it; unknown keys
name the nearest valid ones; torn metrics lines and bad checksums are reported."""

import json
import logging
import math
import os

import pytest
from etils import epath

from train import cli
from train import integrity
from train import config_checks as validation
from train.configs import tiny
from train.errors import ConfigError
from train.metrics import MetricsWriter
from train.metrics import read_rows

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("field,value,message", [
    ("optimizer.learning_rate", -1.0, "optimizer.learning_rate=-1.0: must be finite and > 0"),
    ("optimizer.learning_rate", math.nan, "optimizer.learning_rate=nan: must be finite and > 0"),
    ("optimizer.learning_rate", math.inf, "optimizer.learning_rate=inf: must be finite and > 0"),
    ("optimizer.learning_rate", 0.0, "optimizer.learning_rate=0.0: must be finite and > 0"),
    ("seq_len", 0, "seq_len=0: must be an integer >= 1"),
    ("train_steps", 0, "train_steps=0: must be an integer >= 1"),
    ("batch_size", -8, "batch_size=-8: must be an integer >= 1"),
    ("eval_steps", 0, "eval_steps=0: must be an integer >= 1"),
    ("max_checkpoints", 0, "max_checkpoints=0: must be an integer >= 1"),
    ("max_consecutive_skipped", 0, "max_consecutive_skipped=0: must be an integer >= 1"),
    ("seed", -1, "seed=-1: must be an integer >= 0"),
    ("optimizer.warmup_steps", -5, "optimizer.warmup_steps=-5: must be an integer >= 0"),
    ("optimizer.decay_fraction", 1.5, "optimizer.decay_fraction=1.5: must be finite and >= 0 "
     "and <= 1"),
    ("optimizer.final_lr_fraction", -0.1, "optimizer.final_lr_fraction=-0.1: must be finite"),
    ("optimizer.weight_decay", math.nan, "optimizer.weight_decay=nan: must be finite and >= 0"),
    ("optimizer.grad_clip", -1.0, "optimizer.grad_clip=-1.0: must be finite and >= 0"),
    ("optimizer.qk_clip", math.inf, "optimizer.qk_clip=inf: must be finite and >= 0"),
    ("optimizer.schedule", "linear", "optimizer.schedule='linear': must be one of"),
    ("model.preset", "huge", "model.preset='huge': must be one of"),
    ("model.d_model", 0, "model.d_model=0: must be an integer >= 1"),
    ("model.dtype", "float64", "model.dtype='float64': must be one of"),
    ("mesh.data", 0, "mesh.data=0: must be -1 (fill) or an integer >= 1"),
    ("diagnostics.level", 0.0, "diagnostics.level=0.0: must be finite and > 0 and <= 1"),
    ("diagnostics.which", "(", "diagnostics.which='(': not a regex"),
    ("data.txt_docs", "paragraph", "data.txt_docs='paragraph': must be one of"),
    ("data.tokenizer", "vocab.txt", "data.tokenizer='vocab.txt': must be 'bytes' or the path"),
    ("data.max_files", -1, "data.max_files=-1: must be an integer >= 0"),
])
def test_each_bad_field_is_named(field, value, message):
  config = tiny.get_config()
  *parents, name = field.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[name] = value
  with pytest.raises(ConfigError) as e:
    validation.check_config(config)
  assert str(e.value).startswith(message), str(e.value)
  assert "\n" not in str(e.value)


def test_defaults_pass():
  validation.check_config(tiny.get_config())


def test_unknown_keys_name_the_nearest_valid_ones():
  default = os.path.join(REPO_ROOT, "train", "configs", "default.py")
  with pytest.raises(ConfigError, match=r"unknown config key 'optimizer.learning_rte'; nearest "
                                        r"valid keys: optimizer.learning_rate, "):
    cli.check_overrides(["--config.optimizer.learning_rte=1", "--config.seq_len=3"], default)
  with pytest.raises(ConfigError, match="unknown config key 'model.qknorm'.*model.qk_norm"):
    cli.check_overrides(["--noconfig.model.qknorm"], default)
  tiny_path = os.path.join(REPO_ROOT, "train", "configs", "tiny.py")
  cli.check_overrides(["--config", tiny_path, "--config.model.qk_norm=False",
                       "--config.data.packing=True", "--workdir=/x"], default)


def test_torn_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
  rows = [{"step": s, "loss": 1.0 / s} for s in range(1, 5)]
  text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "lo'
  (tmp_path / "metrics.jsonl").write_text(text)
  with caplog.at_level(logging.WARNING):
    assert read_rows(str(tmp_path / "metrics.jsonl")) == rows
  assert "line 5: dropped a half-written last line" in caplog.text
  writer = MetricsWriter(str(tmp_path), start_step=3)  # Resume at 3: rows 4 and the torn 5 go.
  writer.write({"step": 4, "loss": 0.5})
  assert read_rows(writer.path) == rows[:3] + [{"step": 4, "loss": 0.5}]


def test_checksums_find_the_damaged_file(tmp_path):
  step = epath.Path(tmp_path)
  (tmp_path / "state").mkdir()
  (tmp_path / "state" / "a.bin").write_bytes(bytes(range(256)) * 64)
  (tmp_path / "meta.json").write_text('{"x": 1}')
  assert not integrity.verify_checksums(step)  # No record yet: unverified, not an error.
  integrity.write_checksums(step)
  assert integrity.verify_checksums(step)
  data = bytearray((tmp_path / "state" / "a.bin").read_bytes())
  data[100] ^= 0x01  # One bit.
  (tmp_path / "state" / "a.bin").write_bytes(bytes(data))
  with pytest.raises(integrity.ChecksumError, match=r"state/a\.bin: checksum mismatch"):
    integrity.verify_checksums(step)
  os.truncate(tmp_path / "meta.json", 3)
  with pytest.raises(integrity.ChecksumError, match=r"meta\.json: 3 bytes, expected 8"):
    integrity.verify_checksums(step)
  (tmp_path / "meta.json").unlink()
  with pytest.raises(integrity.ChecksumError, match=r"meta\.json: missing"):
    integrity.verify_checksums(step)
  (tmp_path / integrity.CHECKSUMS).write_text('{"files": {"a')
  with pytest.raises(integrity.ChecksumError, match="checksums.json: unreadable"):
    integrity.verify_checksums(step)


def test_alias_options_and_lr_ratios_are_open_ended_flags():
  # ml_collections cannot add keys to a sub-dict from the command line: these flags are taken
  # out before parsing and set on the config after it (literals parsed, bare words as strings).
  argv = ["--workdir=/tmp/x", "--config.optimizer.options.scale=mup",
          "--config.optimizer.options.weight_radius=None",
          "--config.optimizer.lr_ratios.adam_learning_rate=0.3", "--config.train_steps=5"]
  rest, found = cli.split_open_overrides(argv)
  assert rest == ["--workdir=/tmp/x", "--config.train_steps=5"]
  assert found == {"optimizer.options.scale": "mup", "optimizer.options.weight_radius": None,
                   "optimizer.lr_ratios.adam_learning_rate": 0.3}
  config = tiny.get_config()
  cli.apply_open_overrides(config, found)
  assert config.optimizer.options.scale == "mup"
  assert config.optimizer.options.weight_radius is None
  assert config.optimizer.lr_ratios.adam_learning_rate == 0.3
  cli.check_overrides(rest, os.path.join(os.path.dirname(cli.__file__), "configs", "tiny.py"))
