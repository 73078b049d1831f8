"""Document packing: documents joined with an end-of-document token, cut into full rows.

A stream reads documents `doc(0), doc(1), ...`, appends `eod_id` to each and cuts the sequence
into rows of exactly `length` tokens (no padding); a document may continue into the next row.
Consecutive rows overlap by one token (the next row starts with the last token of the previous
one, unless that token ended a document), so every token of a document except the first is a
target exactly once. Each row carries

  tokens       the ids,
  segment_ids  1, 2, ... per document piece in the row (attention stays inside a piece),
  positions    0, 1, ... restarting at each piece (RoPE positions),
  mask         1 where a token is a target: 0 on the first token of each piece, so no loss term
               crosses from one document into the next.

`PackedBatches` runs one stream per row of the global batch: stream r reads documents
r, r + B, r + 2B, ... of the (shuffled, repeated) document dataset, and a process iterates only
over its own rows' streams. The result does not depend on the number of processes, and the
iterator state (per stream: documents started, offset in the current one) is checkpointable.
"""

from collections.abc import Callable

import grain
import numpy as np

Row = dict[str, np.ndarray]


class PackedStream:
  """Rows of `length` tokens cut from `doc(0) + [eod], doc(1) + [eod], ...`."""

  def __init__(self, doc: Callable[[int], np.ndarray], length: int, eod_id: int):
    if length < 2:
      raise ValueError(f"packed rows need length >= 2 (one input and one target), got {length}")
    self._doc, self.length, self.eod_id = doc, length, eod_id
    self.doc_index, self.offset = 0, 0
    self._cached = (-1, None)

  def _sequence(self, j: int) -> np.ndarray:
    if self._cached[0] != j:
      tokens_N = np.asarray(self._doc(j), np.int32)
      self._cached = (j, np.concatenate([tokens_N, np.array([self.eod_id], np.int32)]))
    return self._cached[1]

  def next_row(self) -> Row:
    n = self.length
    row = {"tokens": np.empty(n, np.int32), "segment_ids": np.empty(n, np.int32),
           "positions": np.empty(n, np.int32), "mask": np.ones(n, np.float32)}
    filled, segment = 0, 0
    while filled < n:
      seq_S = self._sequence(self.doc_index)
      take = min(len(seq_S) - self.offset, n - filled)
      segment += 1
      piece = slice(filled, filled + take)
      row["tokens"][piece] = seq_S[self.offset:self.offset + take]
      row["segment_ids"][piece] = segment
      row["positions"][piece] = np.arange(take)
      row["mask"][filled] = 0.0  # The piece's first token has no context in this row.
      filled += take
      self.offset += take
      if self.offset == len(seq_S):
        self.doc_index, self.offset = self.doc_index + 1, 0
    if self.offset:  # Mid-document: the next row starts again from this row's last token.
      self.offset -= 1
    return row

  def get_state(self) -> dict:
    return {"doc": self.doc_index, "offset": self.offset}

  def set_state(self, state: dict) -> None:
    self.doc_index, self.offset = int(state["doc"]), int(state["offset"])


def pack(docs: list[np.ndarray], length: int, eod_id: int, rows: int) -> Row:
  """The first `rows` packed rows of `docs` (repeated), stacked: for tests and inspection."""
  stream = PackedStream(lambda j: docs[j % len(docs)], length, eod_id)
  out = [stream.next_row() for _ in range(rows)]
  return {k: np.stack([r[k] for r in out]) for k in out[0]}


class PackedBatches(grain.IterDataset):
  """Batches of rows `[first_row, first_row + num_rows)` of a global batch of `batch_size`
  packed streams over `docs` (a random-access dataset of token arrays)."""

  def __init__(self, docs: grain.MapDataset, length: int, eod_id: int, batch_size: int,
               first_row: int = 0, num_rows: int | None = None):
    super().__init__()
    self.docs, self.length, self.eod_id, self.batch_size = docs, length, eod_id, batch_size
    self.first_row = first_row
    self.num_rows = batch_size - first_row if num_rows is None else num_rows

  def __iter__(self) -> "PackedBatchIterator":
    return PackedBatchIterator(self)


class PackedBatchIterator(grain.DatasetIterator):
  """Iterator of `PackedBatches`; state: documents started and offset per stream."""

  def __init__(self, spec: PackedBatches):
    super().__init__()
    b = spec.batch_size
    self._streams = [
        PackedStream(lambda j, r=r: spec.docs[r + j * b], spec.length, spec.eod_id)
        for r in range(spec.first_row, spec.first_row + spec.num_rows)]

  def __next__(self) -> Row:
    rows = [s.next_row() for s in self._streams]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

  def get_state(self) -> dict:
    states = [s.get_state() for s in self._streams]
    return {"docs": [s["doc"] for s in states], "offsets": [s["offset"] for s in states]}

  def set_state(self, state: dict) -> None:
    if len(state["docs"]) != len(self._streams):
      raise ValueError(f"iterator state has {len(state['docs'])} streams, this process reads "
                       f"{len(self._streams)} (was the batch size or process count changed?)")
    for s, doc, offset in zip(self._streams, state["docs"], state["offsets"]):
      s.set_state({"doc": doc, "offset": offset})
