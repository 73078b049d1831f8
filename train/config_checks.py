"""Config validation: every field checked before any mesh, data or state is built.

`check_config` needs only the config; `check_for_mesh` adds what depends on the mesh, the process
count and the resolved model. Both raise `errors.ConfigError` naming the field, its value and what
it must be.
"""

import math
import os
import re

import jax
import ml_collections

import models
from models.config import ModelConfig
from train import optimizer as optimizer_lib
from train.errors import ConfigError

_DTYPES = ("float32", "bfloat16", "float16")
_POSITIVE_INTS = ("train_steps", "batch_size", "seq_len", "eval_every", "eval_steps",
                  "checkpoint_every", "max_checkpoints", "log_every", "max_consecutive_skipped")
_MODEL_INTS = ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_len")


def _require(ok: bool, field: str, value, requirement: str) -> None:
  if not ok:
    raise ConfigError(f"{field}={value!r}: {requirement}")


def _number(config: ml_collections.ConfigDict, field: str):
  value = config
  for name in field.split("."):
    if name not in value:
      raise ConfigError(f"{field}: missing from the config (derive config files from "
                        "train/configs/default.py)")
    value = value[name]
  return value


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(config, field: str, low: int) -> None:
  value = _number(config, field)
  _require(_is_int(value) and value >= low, field, value, f"must be an integer >= {low}")


def _finite_in(config, field: str, low: float, high: float = math.inf,
               low_open: bool = False) -> None:
  value = _number(config, field)
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  ok = ok and (value > low if low_open else value >= low) and value <= high
  bounds = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")
  _require(ok, field, value, f"must be finite and {bounds}")


def _one_of(config, field: str, choices) -> None:
  value = _number(config, field)
  _require(value in choices, field, value, f"must be one of {tuple(choices)}")


def _check_model(config: ml_collections.ConfigDict) -> None:
  _one_of(config, "model.preset", sorted(models.PRESETS))
  for name in _MODEL_INTS:
    if config.model[name] is not None:
      _int_at_least(config, f"model.{name}", 1)
  for name in ("dtype", "param_dtype"):
    if config.model[name] is not None:
      _one_of(config, f"model.{name}", _DTYPES)


def _check_data(config: ml_collections.ConfigDict) -> None:
  data = config.data
  _int_at_least(config, "data.max_files", 0)
  _int_at_least(config, "data.piece_bytes", 0)
  _require(bool(data.text_field), "data.text_field", data.text_field, "must not be empty")
  _one_of(config, "data.txt_docs", ("file", "line"))
  if data.tokenizer != "bytes":
    _require(str(data.tokenizer).endswith(".model"), "data.tokenizer", data.tokenizer,
             "must be 'bytes' or the path of a SentencePiece .model file")
    _require(os.path.isfile(data.tokenizer), "data.tokenizer", data.tokenizer,
             "no such file (train one with `python -m train.train_tokenizer`)")
  if data.files:
    from train.data import local_files  # pylint: disable=g-import-not-at-top
    _require(bool(local_files.matching_files(data.files)), "data.files", data.files,
             f"matches no {'/'.join(local_files.EXTENSIONS)} file")
  elif not data.data_dir and data.tfds_name != "stdlib_source":
    raise ConfigError(f"data.data_dir is required for TFDS dataset {data.tfds_name!r} "
                      "(it must be prepared there already; nothing is downloaded).")


def _check_diagnostics(config: ml_collections.ConfigDict) -> None:
  _int_at_least(config, "diagnostics.every", 0)
  _finite_in(config, "diagnostics.level", 0.0, 1.0, low_open=True)
  _one_of(config, "diagnostics.method", ("svd", "gram"))
  _one_of(config, "diagnostics.weight_norm", ("power", "svd", "none"))
  try:
    re.compile(config.diagnostics.which)
  except re.error as e:
    raise ConfigError(f"diagnostics.which={config.diagnostics.which!r}: not a regex ({e})") from e


def check_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field that does not depend on the devices; raises `ConfigError`."""
  _int_at_least(config, "seed", 0)
  for name in _POSITIVE_INTS:
    _int_at_least(config, name, 1)
  _one_of(config, "optimizer.name", optimizer_lib.OPTIMIZERS)
  _one_of(config, "optimizer.schedule", optimizer_lib.SCHEDULES)
  if config.optimizer.learning_rate is not None:  # None: the optimizer's default
    _finite_in(config, "optimizer.learning_rate", 0.0, low_open=True)
  _int_at_least(config, "optimizer.warmup_steps", 0)
  _finite_in(config, "optimizer.decay_fraction", 0.0, 1.0)
  _finite_in(config, "optimizer.final_lr_fraction", 0.0, 1.0)
  for name in ("weight_decay", "grad_clip", "qk_clip"):
    if not (name == "weight_decay" and config.optimizer.weight_decay is None):
      _finite_in(config, f"optimizer.{name}", 0.0)
  _check_model(config)
  _check_data(config)
  for axis in models.MESH_AXES:
    value = config.mesh[axis]
    _require(_is_int(value) and (value == -1 or value >= 1), f"mesh.{axis}", value,
             "must be -1 (fill) or an integer >= 1")
  _check_diagnostics(config)
  _int_at_least(config, "distributed.num_processes", -1)
  _int_at_least(config, "distributed.process_id", -1)


def check_for_mesh(config: ml_collections.ConfigDict, model_cfg: ModelConfig,
                   mesh: jax.sharding.Mesh) -> None:
  """Checks what depends on the mesh, the process count and the resolved model."""
  batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.batch_size % batch_shards:
    raise ConfigError(f"batch_size={config.batch_size} is not divisible by the data axes "
                      f"(data*fsdp={batch_shards})")
  if config.batch_size % jax.process_count():
    raise ConfigError(f"batch_size={config.batch_size} is not divisible by "
                      f"{jax.process_count()} processes")
  if config.seq_len > model_cfg.max_len:
    raise ConfigError(f"seq_len={config.seq_len} exceeds model max_len={model_cfg.max_len} "
                      "(set model.max_len)")
  chunk = model_cfg.attention_chunk
  if chunk and config.seq_len > chunk and config.seq_len % chunk:
    raise ConfigError(f"model.attention_chunk={chunk} does not divide seq_len={config.seq_len}")
  if config.optimizer.qk_clip > 0:
    if model_cfg.scan_layers:
      raise ConfigError("optimizer.qk_clip needs model.scan_layers=False")
    if model_cfg.qk_norm:
      raise ConfigError("optimizer.qk_clip has no effect with QK-norm: set model.qk_norm=False")
