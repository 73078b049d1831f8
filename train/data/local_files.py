"""Local text files as a corpus: `--config.data.files=GLOB` of `.txt` and `.jsonl` files.

Documents: a `.txt` file is one document (`data.txt_docs="file"`) or one per non-empty line
(`"line"`); a `.jsonl` file holds one document per line, the string in field `data.text_field`.
Each document goes to `eval` (~5%) or `train` by a stable hash of `path:index`; at least one goes
to each split when there are two or more. `.txt` documents longer than `piece_bytes` become
line-aligned pieces (`pieces.py`; records carry `last`, true on a document's final piece).
The index (path, byte range) is built once by scanning the files; records are read on demand,
so the files are never held in memory.
"""

import glob
import hashlib
import json
import os

from train.data import pieces
from train.errors import ConfigError

EXTENSIONS = (".txt", ".jsonl")
EVAL_PERCENT = 5


def matching_files(pattern: str) -> list[str]:
  """Sorted `.txt`/`.jsonl` files matching `pattern` (`**` recurses)."""
  paths = glob.glob(os.path.expanduser(pattern), recursive=True)
  return sorted(p for p in paths if p.endswith(EXTENSIONS) and os.path.isfile(p))


def _bucket(key: str) -> int:
  return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 100


def _lines(path: str):
  """`(start, end, line)` of the non-empty lines of `path` (byte range without the newline)."""
  with open(path, "rb") as f:
    start = 0
    for line in f:
      text = line.rstrip(b"\r\n")
      if text.strip():
        yield start, start + len(text), text
      start += len(line)


class _Documents:
  """Random-access source: record i is `{field: bytes, "last": bool}` of piece i of one split."""

  def __init__(self, index: list[tuple[str, int, int, bool, bool]], text_field: str):
    self._index, self._field = index, text_field

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, i: int) -> dict:
    path, start, end, is_json, last = self._index[i]
    with open(path, "rb") as f:
      f.seek(start)
      data = f.read(end - start)
    if is_json:
      data = json.loads(data)[self._field].encode("utf-8")
    return {self._field: data, "last": last}

  def __repr__(self) -> str:
    return f"_Documents({len(self)} documents)"


class LocalFiles:
  """Train/eval documents from files matching a glob; `as_data_source` like a TFDS builder."""

  def __init__(self, pattern: str, text_field: str = "text", txt_docs: str = "file",
               piece_bytes: int = 0):
    self.pattern, self.text_field = pattern, text_field
    paths = matching_files(pattern)
    if not paths:
      raise ConfigError(f"data.files={pattern!r}: matches no {'/'.join(EXTENSIONS)} file")
    docs = []  # (key, [(path, start, end, is_json, last) for each piece])

    def txt_doc(key: str, path: str, start: int, data: bytes) -> None:
      ranges = pieces.split_ranges(data, piece_bytes)
      docs.append((key, [(path, start + s, start + e, False, i == len(ranges) - 1)
                         for i, (s, e) in enumerate(ranges)]))

    for path in paths:
      if path.endswith(".jsonl"):
        for n, (start, end, line) in enumerate(_lines(path)):
          self._check_json_line(path, line, n)
          docs.append((f"{path}:{n}", [(path, start, end, True, True)]))
      elif txt_docs == "line":
        for n, (start, _, line) in enumerate(_lines(path)):
          txt_doc(f"{path}:{n}", path, start, line)
      elif os.path.getsize(path):
        with open(path, "rb") as f:
          txt_doc(f"{path}:0", path, 0, f.read())
    if not docs:
      raise ConfigError(f"data.files={pattern!r}: the matching files hold no text")
    buckets = [_bucket(key) for key, _ in docs]
    is_eval = [b < EVAL_PERCENT for b in buckets]
    if len(docs) >= 2 and all(is_eval) or not any(is_eval):
      is_eval = [False] * len(docs)
      if len(docs) >= 2:
        is_eval[min(range(len(docs)), key=buckets.__getitem__)] = True
    train = [p for (_, ps), e in zip(docs, is_eval) if not e for p in ps]
    evals = [p for (_, ps), e in zip(docs, is_eval) if e for p in ps]
    every = [p for _, ps in docs for p in ps]
    self._docs = {"train": sum(not e for e in is_eval), "eval": sum(is_eval)}
    self._splits = {"train": train or every, "eval": evals or every}

  def _check_json_line(self, path: str, line: bytes, n: int) -> None:
    try:
      value = json.loads(line)[self.text_field]
    except (ValueError, KeyError, TypeError) as e:
      raise ConfigError(f"data.files: {path} document {n + 1}: not a JSON object with a string "
                        f"field {self.text_field!r} (data.text_field)") from e
    if not isinstance(value, str):
      raise ConfigError(f"data.files: {path} document {n + 1}: field {self.text_field!r} is "
                        f"{type(value).__name__}, not a string")

  def num_documents(self, split: str) -> int:
    """Documents (not pieces) in `split`; 0 when it reuses every document (a 1-doc corpus)."""
    return self._docs[split]

  def as_data_source(self, split: str) -> _Documents:
    if split not in self._splits:
      raise ConfigError(f"data.files corpora have splits 'train' and 'eval', not {split!r} "
                        "(data.train_split / data.eval_split)")
    return _Documents(self._splits[split], self.text_field)
