"""Grain input pipeline: corpus -> tokens -> (packed) rows -> per-process batches.

Corpus: the built-in stdlib TFDS dataset, any prepared TFDS dataset, or local `.txt`/`.jsonl`
files (`data.files`). Tokens: UTF-8 bytes or a SentencePiece model (`data.tokenizer`).

Unpacked (the default for bytes): each record becomes `seq_len + 1` tokens plus a 0/1 loss mask
(shorter texts are padded with 0 and masked, longer ones cut). The train stream is
`source.shuffle(seed).repeat()` cut into per-process batches: global batch g is records
`[g*B, (g+1)*B)` of that stream and process p reads only its rows `[p*b, (p+1)*b)`
(b = B / process_count), so the order does not depend on the number of hosts.

Packed (`data.packing`, the default for SentencePiece): documents (long ones cut into pieces of
`data.piece_bytes`, `pieces.py`) joined with an end-of-document token and cut into full rows with
segment ids and positions (`packing.py`); the streams belong to rows of the global batch, so
again the order does not depend on the number of hosts. Eval rows come from one stream over the
eval documents in order.

Process-local numpy batches become global `jax.Array`s with `jax.make_array_from_process_local_data`.
"""

import os

import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from train.data import local_files
from train.data import packing as packing_lib
from train.data import stdlib_source
from train.data import tokenizer as tokenizer_lib
from train.errors import ConfigError

DEFAULT_DATASET = "stdlib_source"
Batch = dict[str, np.ndarray]


def resolve_data_dir(config: ml_collections.ConfigDict) -> str:
  """The TFDS data_dir; a non-default dataset must name one explicitly."""
  if config.data.data_dir:
    return config.data.data_dir
  if config.data.tfds_name != DEFAULT_DATASET:
    raise ConfigError(f"data.data_dir is required for TFDS dataset {config.data.tfds_name!r} "
                      "(it must be prepared there already; nothing is downloaded).")
  return os.path.expanduser("~/tensorflow_datasets")


def is_packed(config: ml_collections.ConfigDict) -> bool:
  """`data.packing`, or when unset (None): packed iff the data is tokenized (not bytes)."""
  if config.data.packing is None:
    return config.data.tokenizer != "bytes"
  return bool(config.data.packing)


def uses_documents(config: ml_collections.ConfigDict) -> bool:
  """Whether the built-in corpus is read as whole files (else as `seq_len + 1` byte chunks)."""
  return is_packed(config) or config.data.tokenizer != "bytes"


def load_tokenizer(config: ml_collections.ConfigDict):
  return tokenizer_lib.load(config.data.tokenizer)


def _builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  data_dir = resolve_data_dir(config)
  if config.data.tfds_name == DEFAULT_DATASET:
    chunk_len = 0 if uses_documents(config) else config.seq_len + 1
    return stdlib_source.StdlibSource(
        config=stdlib_source.make_config(chunk_len, config.data.max_files, config.data.piece_bytes),
        data_dir=data_dir, file_format="array_record")
  return tfds.builder(config.data.tfds_name, data_dir=data_dir, try_gcs=False)


def prepare(config: ml_collections.ConfigDict):
  """The corpus (anything with `as_data_source(split)`): local files, or a TFDS builder whose
  dataset is built once (the default corpus, on process 0) or must be prepared already."""
  if config.data.files:
    return local_files.LocalFiles(config.data.files, config.data.text_field, config.data.txt_docs,
                                  config.data.piece_bytes)
  builder = _builder(config)
  if config.data.tfds_name == DEFAULT_DATASET and jax.process_index() == 0:
    builder.download_and_prepare()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("data_prepared")
    builder = _builder(config)
  if not builder.is_prepared():
    raise ConfigError(f"TFDS dataset {builder.name!r} is not prepared in {builder.data_dir!r}.")
  return builder


def _splits(config: ml_collections.ConfigDict) -> tuple[str, str]:
  if config.data.files:
    return "train", "eval"
  return config.data.train_split, config.data.eval_split


def _text_tokens(value, tokenizer) -> np.ndarray:
  """A record's text field (str, bytes or an array of ids/bytes) as int32 token ids."""
  if isinstance(tokenizer, tokenizer_lib.ByteTokenizer) or tokenizer is None:
    if isinstance(value, str):
      value = value.encode("utf-8")
    data_T = np.frombuffer(value, np.uint8) if isinstance(value, bytes) else np.asarray(value)
    return data_T.astype(np.int32)
  return tokenizer.encode(value)


class ToTokens(grain.transforms.Map):
  """Record -> `{"tokens": int32[length], "mask": float32[length]}` (cut or zero-padded)."""

  def __init__(self, text_field: str, length: int, tokenizer=None):
    self.text_field, self.length, self.tokenizer = text_field, length, tokenizer

  def map(self, record) -> Batch:
    data_T = _text_tokens(record[self.text_field], self.tokenizer)[:self.length]
    n = len(data_T)
    tokens_T = np.zeros(self.length, np.int32)
    tokens_T[:n] = data_T
    mask_T = (np.arange(self.length) < n).astype(np.float32)
    return {"tokens": tokens_T, "mask": mask_T}


class ToDocument(grain.transforms.Map):
  """Record -> its whole text as int32 ids, plus the end-of-document id if it ends a document
  (records without a `last` field are whole documents)."""

  def __init__(self, text_field: str, tokenizer):
    self.text_field, self.tokenizer = text_field, tokenizer

  def map(self, record) -> np.ndarray:
    tokens_N = _text_tokens(record[self.text_field], self.tokenizer)
    if record.get("last", True):
      eod_id = self.tokenizer.eod_id if self.tokenizer is not None else 0
      tokens_N = np.append(tokens_N, np.int32(eod_id))
    return tokens_N


def _local_batch_size(batch_size: int) -> int:
  if batch_size % jax.process_count():
    raise ConfigError(f"batch_size={batch_size} not divisible by {jax.process_count()} processes")
  return batch_size // jax.process_count()


def _per_process(ds: grain.MapDataset, batch_size: int) -> grain.MapDataset:
  """This process's share (rows) of each global batch."""
  ds = ds.batch(_local_batch_size(batch_size), drop_remainder=True)
  return ds[jax.process_index()::jax.process_count()]


def _source(config: ml_collections.ConfigDict, corpus, split: str) -> grain.MapDataset:
  source = corpus.as_data_source(split=split)
  if len(source) == 0:
    raise ConfigError(f"split {split!r} of the corpus is empty")
  return grain.MapDataset.source(source)


def train_dataset(config: ml_collections.ConfigDict, corpus,
                  tokenizer=None) -> grain.IterDataset:
  """Infinite, shuffled, per-process train batches; its iterator state is checkpointable."""
  tokenizer = tokenizer or load_tokenizer(config)
  ds = _source(config, corpus, _splits(config)[0]).shuffle(seed=config.seed).repeat()
  if is_packed(config):
    local = _local_batch_size(config.batch_size)
    docs = ds.map(ToDocument(config.data.text_field, tokenizer))
    return packing_lib.PackedBatches(docs, config.seq_len + 1, config.batch_size,
                                     jax.process_index() * local, local)
  ds = ds.map(ToTokens(config.data.text_field, config.seq_len + 1, tokenizer))
  return _per_process(ds, config.batch_size).to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=8))


def eval_batches(config: ml_collections.ConfigDict, corpus, tokenizer=None) -> list[Batch]:
  """The first `eval_steps` global batches of the eval split (repeated if it is smaller)."""
  tokenizer = tokenizer or load_tokenizer(config)
  ds = _source(config, corpus, _splits(config)[1]).repeat()
  if is_packed(config):
    docs = ds.map(ToDocument(config.data.text_field, tokenizer))
    stream = packing_lib.PackedStream(docs.__getitem__, config.seq_len + 1)
    local = _local_batch_size(config.batch_size)
    rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    batches = []
    for _ in range(config.eval_steps):
      batch = [stream.next_row() for _ in range(config.batch_size)][rows]
      batches.append({k: np.stack([r[k] for r in batch]) for k in batch[0]})
    return batches
  ds = _per_process(ds.map(ToTokens(config.data.text_field, config.seq_len + 1, tokenizer)),
                    config.batch_size)
  return [ds[i] for i in range(config.eval_steps)]


def to_global(batch: Batch, sharding: jax.sharding.NamedSharding) -> dict[str, jax.Array]:
  """Process-local numpy batch -> global arrays laid out by `sharding`."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
