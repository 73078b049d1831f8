"""TFDS builder for the default corpus: this Python's standard-library `.py` files.

Each file is read as raw bytes, assigned to `train` or `eval` by a deterministic hash of its
relative path (~5% eval), and cut into non-overlapping records of exactly `chunk_len` bytes
(the trailing partial chunk of a file is dropped). With `chunk_len=0` records are documents for
tokenizers and packing: each file whole, or cut at line ends into pieces of at most `piece_bytes`
(`pieces.py`), with `last` marking a file's final piece. Records are stored in `array_record`
format, so building and reading need no TensorFlow.
"""

import dataclasses
import hashlib
import os
import sysconfig

import numpy as np
import tensorflow_datasets as tfds

from train.data import pieces

EVAL_PERCENT = 5
_SKIP_DIRS = frozenset({"site-packages", "test", "tests", "idle_test", "__pycache__"})


def stdlib_files(max_files: int = 0) -> list[str]:
  """Sorted relative paths of the stdlib `.py` files (first `max_files` if > 0)."""
  root = sysconfig.get_paths()["stdlib"]
  paths = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
    rel = os.path.relpath(dirpath, root)
    paths += [os.path.normpath(os.path.join(rel, f)) for f in filenames if f.endswith(".py")]
  paths.sort()
  return paths[:max_files] if max_files > 0 else paths


def split_of(rel_path: str) -> str:
  """`eval` for ~EVAL_PERCENT% of files chosen by a stable hash of the path, else `train`."""
  bucket = int(hashlib.sha256(rel_path.encode()).hexdigest(), 16) % 100
  return "eval" if bucket < EVAL_PERCENT else "train"


@dataclasses.dataclass
class StdlibConfig(tfds.core.BuilderConfig):
  chunk_len: int = 129
  max_files: int = 0
  piece_bytes: int = 0


def make_config(chunk_len: int, max_files: int = 0, piece_bytes: int = 0) -> StdlibConfig:
  """Byte chunks of `chunk_len`, or documents (pieces of `piece_bytes`) when `chunk_len` is 0."""
  if chunk_len:
    name = f"chunk{chunk_len}"
  else:
    name = "docs" + (f"_pieces{piece_bytes}" if piece_bytes else "")
  name += f"_files{max_files}" if max_files else ""
  return StdlibConfig(name=name, chunk_len=chunk_len, max_files=max_files,
                      piece_bytes=0 if chunk_len else piece_bytes)


class StdlibSource(tfds.core.GeneratorBasedBuilder):
  """Byte chunks (or whole files) of the Python standard library source."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = []  # Configs are made on the fly by `make_config(chunk_len, max_files)`.
  # No checksums file: skips TFDS's resource lookup (it needs the optional `importlib_resources`).
  code_path = None

  def _info(self) -> tfds.core.DatasetInfo:
    features = {"text": tfds.features.Tensor(shape=(self.builder_config.chunk_len or None,),
                                             dtype=np.uint8)}
    if not self.builder_config.chunk_len:
      features["last"] = tfds.features.Tensor(shape=(), dtype=np.bool_)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features), description=__doc__)

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only; never downloads.
    files = stdlib_files(self.builder_config.max_files)
    return {
        split: self._generate_examples([f for f in files if split_of(f) == split])
        for split in ("train", "eval")
    }

  def _generate_examples(self, rel_paths):
    root = sysconfig.get_paths()["stdlib"]
    n = self.builder_config.chunk_len
    for rel in rel_paths:
      with open(os.path.join(root, rel), "rb") as f:
        data_T = np.frombuffer(f.read(), np.uint8)
      if not n:
        ranges = pieces.split_ranges(data_T.tobytes(), self.builder_config.piece_bytes)
        for i, (start, end) in enumerate(ranges):
          yield f"{rel}:{i}", {"text": data_T[start:end], "last": i == len(ranges) - 1}
        continue
      for i in range(len(data_T) // n):
        yield f"{rel}:{i}", {"text": data_T[i * n:(i + 1) * n]}
