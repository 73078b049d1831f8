"""Document packing: full rows, no attention or loss across documents, exact resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from train.data import packing
from train.data import pieces
from train.data import pipeline
from train.step import token_losses

EOD = 0


def _docs(n: int, low: int, high: int, seed: int = 0) -> list[np.ndarray]:
  rng = np.random.default_rng(seed)
  return [rng.integers(1, 256, rng.integers(low, high)).astype(np.int32) for _ in range(n)]


def test_rows_are_documents_joined_by_eod_and_overlap_by_one_token():
  docs = _docs(40, 1, 30)
  rows = packing.pack(docs, length=17, eod_id=EOD, rows=30)
  tokens_NxT = rows["tokens"]
  # Rows overlap by one token inside a document; dropping it rebuilds the stream exactly.
  stream = list(tokens_NxT[0])
  for prev, row in zip(tokens_NxT[:-1], tokens_NxT[1:]):
    stream += list(row[1:]) if row[0] == prev[-1] and prev[-1] != EOD else list(row)
  joined = np.concatenate([np.append(d, EOD) for d in docs])
  np.testing.assert_array_equal(stream, joined[:len(stream)])
  for r in range(len(tokens_NxT)):
    seg_T, pos_T, mask_T = rows["segment_ids"][r], rows["positions"][r], rows["mask"][r]
    starts_T = np.append(True, seg_T[1:] != seg_T[:-1])
    np.testing.assert_array_equal(mask_T, ~starts_T)  # No target at a piece's first token.
    assert (pos_T[starts_T] == 0).all() and (np.diff(pos_T)[~starts_T[1:]] == 1).all()
    assert seg_T[0] == 1 and (np.diff(seg_T) >= 0).all()


def test_packed_batches_are_full_on_short_documents(tmp_path, make_config):
  """lm1b-like corpus (one short sentence per line): packed rows are >= 95% real tokens."""
  rng = np.random.default_rng(0)
  words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "slept", "well"]
  lines = [" ".join(rng.choice(words, rng.integers(2, 8))) for _ in range(2000)]
  (tmp_path / "sentences.txt").write_text("\n".join(lines) + "\n")
  config = make_config(data__files=str(tmp_path / "*.txt"), data__txt_docs="line")
  corpus = pipeline.prepare(config)
  unpacked = next(iter(pipeline.train_dataset(config, corpus)))
  config.data.packing = True
  packed = next(iter(pipeline.train_dataset(config, corpus)))
  assert packed["tokens"].shape == unpacked["tokens"].shape == (8, 65)
  assert (packed["segment_ids"] > 0).mean() >= 0.95  # Real tokens or end-of-document.
  assert packed["mask"].mean() > 0.9  # Loss-bearing: all but each piece's first token.
  assert unpacked["mask"].mean() < 0.6  # Cut-or-pad rows are mostly padding.


def test_iterator_state_resumes_exactly_and_rows_do_not_depend_on_processes():
  docs = [np.append(d, EOD) for d in _docs(300, 1, 200)]
  ds = packing.PackedBatches(docs, length=33, batch_size=4, streams_per_row=3)
  it = iter(ds)
  for _ in range(5):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(6)]
  resumed = iter(ds)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])
  # Process 1 of 2 reads rows 2..3 of each global batch, and nothing else.
  half = iter(packing.PackedBatches(docs, length=33, batch_size=4, first_row=2, num_rows=2,
                                    streams_per_row=3))
  full = iter(ds)
  for _ in range(4):
    np.testing.assert_array_equal(next(half)["tokens"], next(full)["tokens"][2:])
  with pytest.raises(ValueError, match="streams"):
    half.set_state(state)


def test_rotating_streams_spread_a_long_document_over_batches():
  """With K streams per row, batch s and s + 1 draw row r from different sequences."""
  docs = [np.full(1000, i + 1, np.int32) for i in range(64)]  # Long, one id each.
  it = iter(packing.PackedBatches(docs, length=17, batch_size=2, streams_per_row=4))
  firsts = [next(it)["tokens"][:, 0] for _ in range(8)]
  # Row r at step s reads sequence r + 2 * (s mod 4) (each far longer than 8 rows).
  np.testing.assert_array_equal(firsts, [[1 + 2 * (s % 4), 2 + 2 * (s % 4)] for s in range(8)])


def test_long_documents_become_line_aligned_pieces():
  text = b"".join(b"line %d of a long file\n" % i for i in range(200)) + b"x" * 5000
  parts = pieces.split(text, 1024)
  assert b"".join(parts) == text
  assert all(len(p) <= 1024 for p in parts)
  assert all(p.endswith(b"\n") for p in parts[:-6])  # Cut at line ends ...
  assert len(parts[-1]) < 1024 and parts[-2] == b"x" * 1024  # ... or inside an over-long line.
  assert pieces.split(text, 0) == [text] and pieces.split(b"", 64) == []


@pytest.mark.parametrize("scan", [False, True])
def test_no_attention_or_loss_crosses_a_document(scan):
  """A packed row gives each document the logits and loss terms it gets run on its own."""
  cfg = models.get_config("tiny", n_layers=2, scan_layers=scan, remat=scan)
  @nnx.jit
  def build():
    with nnx.use_eager_sharding(False):
      return models.Transformer(cfg, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(build())
  params = nnx.to_pure_dict(params)
  docs = _docs(5, 3, 15, seed=1)
  length = sum(len(d) + 1 for d in docs)  # One row holds all documents exactly.
  row = packing.pack(docs, length=length, eod_id=EOD, rows=1)
  forward = jax.jit(lambda p, b: token_losses(p, graphdef, b))
  logits_fn = jax.jit(lambda t, s, pos: nnx.merge(graphdef, params)(t, s, pos)[0])
  packed_losses = forward(params, {k: jnp.asarray(v) for k, v in row.items()})[0][0]
  packed_logits = logits_fn(row["tokens"], row["segment_ids"], row["positions"])[0]
  weights = row["mask"][0, 1:]
  # Each document on its own: one per row, right-padded (causal: padding after it is unseen).
  alone_NxT = np.zeros((len(docs), length), np.int32)
  for i, d in enumerate(docs):
    alone_NxT[i, :len(d) + 1] = np.append(d, EOD)
  alone = {"tokens": jnp.asarray(alone_NxT), "mask": jnp.ones(alone_NxT.shape, jnp.float32)}
  alone_losses, alone_logits = forward(params, alone)[0], logits_fn(alone_NxT, None, None)
  start = 0
  for i, d in enumerate(docs):
    n = len(d) + 1
    np.testing.assert_allclose(packed_losses[start:start + n - 1], alone_losses[i, :n - 1],
                               rtol=1e-5, atol=1e-5)
    assert (weights[start:start + n - 1] == 1).all()  # Every in-document target counts ...
    if start + n - 1 < len(weights):
      assert weights[start + n - 1] == 0  # ... and the jump into the next document does not.
    np.testing.assert_allclose(packed_logits[start:start + n], alone_logits[i, :n], atol=1e-5)
    start += n
  # Changing one document leaves every other document's logits exactly as they were.
  changed = row["tokens"].copy()
  changed[0, len(docs[0]) + 2] = (changed[0, len(docs[0]) + 2] + 7) % 256
  after = logits_fn(changed, row["segment_ids"], row["positions"])[0]
  same = row["segment_ids"][0] != 2
  np.testing.assert_array_equal(np.asarray(after)[same], np.asarray(packed_logits)[same])
  assert not np.allclose(after[~same], packed_logits[~same])
