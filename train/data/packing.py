"""Document packing: documents joined with an end-of-document token, cut into full rows.

A stream reads token sequences `doc(0), doc(1), ...` (a document or a piece of one; the pipeline
ends each document's last piece with the end-of-document token) and cuts them into rows of
exactly `length` tokens (no padding); a sequence may continue into the next row. Consecutive rows
of a stream overlap by one token (the next row starts with the last token of the previous one,
unless that token ended a sequence), so every token of a sequence except the first is a target
exactly once. Each row carries

  tokens       the ids,
  segment_ids  1, 2, ... per document piece in the row (attention stays inside a piece),
  positions    0, 1, ... restarting at each piece (RoPE positions),
  mask         1 where a token is a target: 0 on the first token of each piece, so no loss term
               crosses from one document into the next.

`PackedBatches` runs K streams per row of the global batch (Q = K*B streams): at step s, row r
comes from stream q = r + B * (s mod K), which reads sequences q, q + Q, q + 2Q, ... of the
(shuffled, repeated) dataset. With K rotating streams per row a long sequence feeds every K-th
batch, not K consecutive ones. A process iterates only over its own rows' streams, so the result
does not depend on the number of processes, and the iterator state (per stream: sequences started,
offset in the current one; the step) is checkpointable.
"""

from collections.abc import Callable

import grain
import numpy as np

Row = dict[str, np.ndarray]


class PackedStream:
  """Rows of `length` tokens cut from the sequences `doc(0), doc(1), ...` (empty ones skipped)."""

  def __init__(self, doc: Callable[[int], np.ndarray], length: int):
    if length < 2:
      raise ValueError(f"packed rows need length >= 2 (one input and one target), got {length}")
    self._doc, self.length = doc, length
    self.doc_index, self.offset = 0, 0
    self._cached = (-1, None)

  def _sequence(self, j: int) -> np.ndarray:
    if self._cached[0] != j:
      self._cached = (j, np.asarray(self._doc(j), np.int32))
    return self._cached[1]

  def next_row(self) -> Row:
    n = self.length
    row = {"tokens": np.empty(n, np.int32), "segment_ids": np.empty(n, np.int32),
           "positions": np.empty(n, np.int32), "mask": np.ones(n, np.float32)}
    filled, segment = 0, 0
    while filled < n:
      seq_S = self._sequence(self.doc_index)
      if not len(seq_S):
        self.doc_index, self.offset = self.doc_index + 1, 0
        continue
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
  """The first `rows` rows of one stream over `docs` (repeated), each ended by `eod_id`,
  stacked: for tests and inspection."""
  stream = PackedStream(lambda j: np.append(docs[j % len(docs)], eod_id), length)
  out = [stream.next_row() for _ in range(rows)]
  return {k: np.stack([r[k] for r in out]) for k in out[0]}


class PackedBatches(grain.IterDataset):
  """Batches of rows `[first_row, first_row + num_rows)` of a global batch of `batch_size` rows,
  each from `streams_per_row` rotating packed streams over `docs` (a random-access dataset of
  token sequences)."""

  def __init__(self, docs: grain.MapDataset, length: int, batch_size: int, first_row: int = 0,
               num_rows: int | None = None, streams_per_row: int = 8):
    super().__init__()
    self.docs, self.length, self.batch_size = docs, length, batch_size
    self.first_row = first_row
    self.num_rows = batch_size - first_row if num_rows is None else num_rows
    self.streams_per_row = streams_per_row

  def __iter__(self) -> "PackedBatchIterator":
    return PackedBatchIterator(self)


class PackedBatchIterator(grain.DatasetIterator):
  """Iterator of `PackedBatches`; state: the step, and per stream the sequences started and
  the offset in the current one."""

  def __init__(self, spec: PackedBatches):
    super().__init__()
    b, k = spec.batch_size, spec.streams_per_row
    rows = range(spec.first_row, spec.first_row + spec.num_rows)
    # self._streams[i][r]: the i-th stream of row r, global stream q = r + b*i.
    self._streams = [[PackedStream(lambda j, q=r + b * i: spec.docs[q + j * b * k], spec.length)
                      for r in rows] for i in range(k)]
    self._step = 0

  def __next__(self) -> Row:
    rows = [s.next_row() for s in self._streams[self._step % len(self._streams)]]
    self._step += 1
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

  def get_state(self) -> dict:
    states = [s.get_state() for group in self._streams for s in group]
    return {"step": self._step, "docs": [s["doc"] for s in states],
            "offsets": [s["offset"] for s in states]}

  def set_state(self, state: dict) -> None:
    streams = [s for group in self._streams for s in group]
    if len(state["docs"]) != len(streams):
      raise ValueError(f"iterator state has {len(state['docs'])} streams, this process reads "
                       f"{len(streams)} (were the batch size or process count changed?)")
    self._step = int(state["step"])
    for s, doc, offset in zip(streams, state["docs"], state["offsets"]):
      s.set_state({"doc": doc, "offset": offset})
