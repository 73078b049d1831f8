"""Tokenizers: raw UTF-8 bytes (the default) or a SentencePiece model file.

Both map text to int32 ids and give `byte_lengths_V`, the number of UTF-8 bytes each id stands
for, so losses of either convert to bits per byte. `eod_id` ends every document when documents
are packed (bytes: 0, never in text; SentencePiece: its `</s>`).
"""

import functools

import numpy as np


def _as_bytes(text) -> bytes:
  if isinstance(text, str):
    return text.encode("utf-8")
  if isinstance(text, np.ndarray):
    return text.astype(np.uint8).tobytes()
  return bytes(text)


class ByteTokenizer:
  """Each UTF-8 byte is a token; id 0 (NUL) doubles as end-of-document and padding."""

  name = "bytes"
  vocab_size = 256
  eod_id = 0

  def encode(self, text) -> np.ndarray:
    return np.frombuffer(_as_bytes(text), np.uint8).astype(np.int32)

  def decode(self, ids) -> str:
    return bytes(np.asarray(ids, np.uint8)).decode("utf-8", errors="replace")

  @functools.cached_property
  def byte_lengths_V(self) -> np.ndarray:
    lengths_V = np.ones(self.vocab_size, np.float32)
    lengths_V[self.eod_id] = 0.0  # Not text: the document separator (or padding).
    return lengths_V


class SentencePieceTokenizer:
  """A SentencePiece `.model` (train one with `python -m train.train_tokenizer`)."""

  def __init__(self, path: str):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    with open(path, "rb") as f:
      self._proto = f.read()
    self.name = path
    self.sp = spm.SentencePieceProcessor(model_proto=self._proto)
    self.vocab_size = self.sp.vocab_size()
    self.eod_id = self.sp.eos_id()
    if self.eod_id < 0:
      raise ValueError(f"SentencePiece model {path} has no </s> (eos) piece to end documents")

  def encode(self, text) -> np.ndarray:
    if not isinstance(text, str):
      text = _as_bytes(text).decode("utf-8", errors="replace")
    return np.asarray(self.sp.encode(text), np.int32)

  def decode(self, ids) -> str:
    return self.sp.decode([int(i) for i in ids])

  @functools.cached_property
  def byte_lengths_V(self) -> np.ndarray:
    """UTF-8 bytes per piece: `▁` is a space, `<0xNN>` one byte, control pieces none."""
    lengths_V = np.zeros(self.vocab_size, np.float32)
    for i in range(self.vocab_size):
      if self.sp.is_control(i) or self.sp.is_unknown(i):
        continue
      if self.sp.is_byte(i):
        lengths_V[i] = 1.0
      else:
        lengths_V[i] = len(self.sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
    return lengths_V

  def __getstate__(self):  # The C++ processor does not pickle; its serialized model does.
    return {"name": self.name, "proto": self._proto}

  def __setstate__(self, state):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    self.name, self._proto = state["name"], state["proto"]
    self.sp = spm.SentencePieceProcessor(model_proto=self._proto)
    self.vocab_size, self.eod_id = self.sp.vocab_size(), self.sp.eos_id()


def load(spec: str):
  """`"bytes"` or the path of a SentencePiece `.model`."""
  return ByteTokenizer() if spec == "bytes" else SentencePieceTokenizer(spec)
