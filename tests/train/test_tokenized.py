"""Real data: a SentencePiece model trained offline on the built-in corpus, used end to end
(train, eval in bits per byte, exact resume); local .txt/.jsonl files as the corpus."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from train import train_tokenizer as tokenizer_cmd
from train import trainer
from train.configs import tiny
from train.data import local_files
from train.data import tokenizer as tokenizer_lib
from train.errors import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = 512


@pytest.fixture(scope="module")
def sp_model(data_dir, tmp_path_factory) -> str:
  """A BPE model trained on the train split of the built-in corpus (test subset), offline."""
  config = tiny.get_config()
  config.data.data_dir = data_dir
  path = str(tmp_path_factory.mktemp("sp") / "stdlib512.model")
  return tokenizer_cmd.train_sentencepiece(config, path, vocab_size=VOCAB)


def _rows(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_sentencepiece_round_trips_and_counts_bytes(sp_model):
  tok = tokenizer_lib.load(sp_model)
  assert tok.vocab_size == VOCAB and tok.eod_id == 2
  with open(os.path.join(REPO_ROOT, "train", "trainer.py"), encoding="utf-8") as f:
    text = f.read() + "\n\tünïcode ✓ and    spaces\n\n"
  ids = tok.encode(text)
  assert tok.decode(ids) == text  # Indentation, newlines and non-ASCII survive.
  assert tok.byte_lengths_V[ids].sum() == len(text.encode("utf-8"))  # Bits/byte are exact.
  assert len(text.encode("utf-8")) / len(ids) > 1.3  # It compresses.


def test_sentencepiece_train_eval_resume(sp_model, make_config, tmp_path):
  config = make_config(train_steps=8, checkpoint_every=4, eval_every=4, log_every=1,
                       data__tokenizer=sp_model)  # Packing is on by default for it.
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  last = trainer.train_and_evaluate(config, straight)
  assert trainer.train_and_evaluate(config, resumed, stop_at=4)["step"] == 4
  trainer.train_and_evaluate(config, resumed)
  a, b = _rows(straight), _rows(resumed)
  assert [r["loss"] for r in a] == [r["loss"] for r in b]
  assert a[-1]["eval_loss"] == b[-1]["eval_loss"] and a[-1]["eval_bpb"] == b[-1]["eval_bpb"]
  restore = ocp.StandardCheckpointer().restore
  pa = restore(os.path.join(straight, "checkpoints", "8", "state"))["params"]
  pb = restore(os.path.join(resumed, "checkpoints", "8", "state"))["params"]
  assert pa["embed"]["embedding"].shape == (VOCAB, 128)
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_array_equal(x, y)
  # Tokens stand for > 1 byte: bits per byte are below bits per token.
  assert 0 < last["eval_bpb"] < last["eval_loss"] / math.log(2)
  assert a[0]["loss"] == pytest.approx(math.log(VOCAB), abs=0.1)


def test_local_files_tokenizer_command_and_training(make_config, tmp_path):
  texts = tmp_path / "texts"
  texts.mkdir()
  for i in range(12):
    body = "".join(f"Line {j} of file {i}: the quick brown fox.\n" for j in range(30 + i))
    (texts / f"doc{i:02d}.txt").write_text(body)
  with open(texts / "more.jsonl", "w") as f:
    for i in range(50):
      f.write(json.dumps({"text": f"record {i}: jumps over the lazy dog " * (1 + i % 5)}) + "\n")
  pattern = str(texts / "*")
  corpus = local_files.LocalFiles(pattern)
  assert corpus.num_documents("train") + corpus.num_documents("eval") == 62
  assert corpus.num_documents("eval") >= 1
  model = str(tmp_path / "local.model")
  out = subprocess.run(
      [sys.executable, "-m", "train.train_tokenizer", f"--output={model}", "--vocab_size=300",
       f"--config.data.files={pattern}"],
      cwd=REPO_ROOT, capture_output=True, text=True,
      env=dict({k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))},
               JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"--config.data.tokenizer={model}" in out.stdout
  config = make_config(train_steps=4, eval_every=4, checkpoint_every=4, log_every=1,
                       data__files=pattern, data__tokenizer=model)
  last = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert last["step"] == 4 and math.isfinite(last["eval_bpb"])


def test_long_local_documents_are_cut_into_pieces(tmp_path):
  body = "".join(f"line {i}\n" for i in range(100))
  (tmp_path / "long.txt").write_text(body)
  (tmp_path / "short.txt").write_text("short\n")
  corpus = local_files.LocalFiles(str(tmp_path / "*.txt"), piece_bytes=64)
  records = [r for split in ("train", "eval") for r in corpus.as_data_source(split)]
  long_pieces = [r for r in records if r["text"] != b"short\n"]
  assert b"".join(r["text"] for r in long_pieces) == body.encode()  # One split, in order.
  assert [r["last"] for r in long_pieces] == [False] * (len(long_pieces) - 1) + [True]
  assert all(len(r["text"]) <= 64 and r["text"].endswith(b"\n") for r in long_pieces)


def test_bad_local_files_name_the_file(tmp_path):
  (tmp_path / "a.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
  with pytest.raises(ConfigError, match=r"a\.jsonl document 2: not a JSON object with a string "
                                        r"field 'text' \(data.text_field\)"):
    local_files.LocalFiles(str(tmp_path / "*.jsonl"))
  with pytest.raises(ConfigError, match="matches no .txt/.jsonl file"):
    local_files.LocalFiles(str(tmp_path / "*.csv"))
