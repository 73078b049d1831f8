"""Grain input pipeline over a TFDS `array_record` data source.

Records become `seq_len + 1` byte tokens plus a 0/1 loss mask (shorter texts are padded with 0
and masked). The train stream is `source.shuffle(seed).repeat()` cut into per-process batches:
global batch g is records `[g*B, (g+1)*B)` of that stream and process p reads only its rows
`[p*b, (p+1)*b)` (b = B / process_count), so the order does not depend on the number of hosts.
Process-local numpy batches become global `jax.Array`s with `jax.make_array_from_process_local_data`.
"""

import os

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from train.data import stdlib_source

DEFAULT_DATASET = "stdlib_source"
Batch = dict[str, np.ndarray]


def resolve_data_dir(config: ml_collections.ConfigDict) -> str:
  """The TFDS data_dir; a non-default dataset must name one explicitly."""
  if config.data.data_dir:
    return config.data.data_dir
  if config.data.tfds_name != DEFAULT_DATASET:
    raise ValueError(f"data.data_dir is required for TFDS dataset {config.data.tfds_name!r} "
                     "(it must be prepared there already; nothing is downloaded).")
  return os.path.expanduser("~/tensorflow_datasets")


def _builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  data_dir = resolve_data_dir(config)
  if config.data.tfds_name == DEFAULT_DATASET:
    return stdlib_source.StdlibSource(
        config=stdlib_source.make_config(config.seq_len + 1, config.data.max_files),
        data_dir=data_dir, file_format="array_record")
  return tfds.builder(config.data.tfds_name, data_dir=data_dir, try_gcs=False)


def prepare(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """Builds the default corpus once (on process 0) and returns the dataset's builder."""
  builder = _builder(config)
  if config.data.tfds_name == DEFAULT_DATASET and jax.process_index() == 0:
    builder.download_and_prepare()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("data_prepared")
    builder = _builder(config)
  if not builder.is_prepared():
    raise ValueError(f"TFDS dataset {builder.name!r} is not prepared in {builder.data_dir!r}.")
  return builder


class ToTokens(grain.transforms.Map):
  """Record -> `{"tokens": int32[seq_len + 1], "mask": float32[seq_len + 1]}`."""

  def __init__(self, text_field: str, length: int):
    self.text_field, self.length = text_field, length

  def map(self, record) -> Batch:
    value = record[self.text_field]
    if isinstance(value, str):
      value = value.encode("utf-8")
    data_T = np.frombuffer(value, np.uint8) if isinstance(value, bytes) else np.asarray(value)
    data_T = data_T.astype(np.int32)[:self.length]
    n = len(data_T)
    tokens_T = np.zeros(self.length, np.int32)
    tokens_T[:n] = data_T
    mask_T = (np.arange(self.length) < n).astype(np.float32)
    return {"tokens": tokens_T, "mask": mask_T}


def _local_batch_size(batch_size: int) -> int:
  if batch_size % jax.process_count():
    raise ValueError(f"batch_size={batch_size} not divisible by {jax.process_count()} processes")
  return batch_size // jax.process_count()


def _per_process(ds: grain.MapDataset, batch_size: int) -> grain.MapDataset:
  """This process's share (rows) of each global batch."""
  ds = ds.batch(_local_batch_size(batch_size), drop_remainder=True)
  return ds[jax.process_index()::jax.process_count()]


def train_dataset(config: ml_collections.ConfigDict, builder) -> grain.IterDataset:
  """Infinite, shuffled, per-process train batches; its iterator state is checkpointable."""
  source = builder.as_data_source(split=config.data.train_split)
  ds = grain.MapDataset.source(source).shuffle(seed=config.seed).repeat()
  ds = ds.map(ToTokens(config.data.text_field, config.seq_len + 1))
  return _per_process(ds, config.batch_size).to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=8))


def eval_batches(config: ml_collections.ConfigDict, builder) -> list[Batch]:
  """The first `eval_steps` global batches of the eval split (repeated if it is smaller)."""
  source = builder.as_data_source(split=config.data.eval_split)
  if len(source) == 0:
    raise ValueError(f"eval split {config.data.eval_split!r} is empty")
  ds = grain.MapDataset.source(source).repeat()
  ds = _per_process(ds.map(ToTokens(config.data.text_field, config.seq_len + 1)),
                    config.batch_size)
  return [ds[i] for i in range(config.eval_steps)]


def to_global(batch: Batch, sharding: jax.sharding.NamedSharding) -> dict[str, jax.Array]:
  """Process-local numpy batch -> global arrays laid out by `sharding`."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
