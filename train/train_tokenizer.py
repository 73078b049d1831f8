"""Trains a SentencePiece tokenizer on the configured corpus, offline.

  python -m train.train_tokenizer --output=runs/sp2048.model [--vocab_size=2048] \\
      [--config.data.files='my_texts/*.txt' | --config.data.tfds_name=NAME \\
       --config.data.data_dir=DIR]

then train with `--config.data.tokenizer=runs/sp2048.model`. It reads the train split of the same
corpus the trainer would (the built-in stdlib corpus by default), as whole documents cut into
line-aligned pieces of at most `MAX_SENTENCE_BYTES`, and trains a byte-fallback BPE model with
identity normalization: every text round-trips exactly (indentation and newlines included) and
no byte is ever unknown. Nothing is downloaded.
"""

import io
import os
import sys

import ml_collections
import numpy as np

MAX_SENTENCE_BYTES = 2048


def _pieces(text: str, limit: int = MAX_SENTENCE_BYTES):
  """Line-aligned pieces of `text` of at most `limit` characters (longer lines are cut)."""
  buf = ""
  for line in text.splitlines(keepends=True):
    while len(line) > limit:
      yield line[:limit]
      line = line[limit:]
    if buf and len(buf) + len(line) > limit:
      yield buf
      buf = ""
    buf += line
  if buf:
    yield buf


def documents(config: ml_collections.ConfigDict):
  """The train split of the configured corpus as strings (documents, or pieces of long ones)."""
  from train.data import pipeline  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.tokenizer, config.data.packing = "bytes", True  # Whole documents, raw bytes.
  corpus = pipeline.prepare(config)
  source = corpus.as_data_source(split="train" if config.data.files else config.data.train_split)
  for i in range(len(source)):
    value = source[i][config.data.text_field]
    if isinstance(value, str):
      yield value
    else:
      data = value if isinstance(value, bytes) else np.asarray(value, np.uint8).tobytes()
      yield data.decode("utf-8", errors="replace")


def train_sentencepiece(config: ml_collections.ConfigDict, output: str, vocab_size: int = 2048,
                        model_type: str = "bpe", max_sentences: int = 200_000,
                        seed: int = 0) -> str:
  """Trains on the corpus of `config` and writes `output` (a `.model` file); returns its path."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  if not output.endswith(".model"):
    raise ValueError(f"--output={output!r}: must end in .model")
  model = io.BytesIO()
  spm.set_random_generator_seed(seed)
  spm.SentencePieceTrainer.train(
      sentence_iterator=(p for doc in documents(config) for p in _pieces(doc)),
      model_writer=model, vocab_size=vocab_size, model_type=model_type,
      byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
      add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
      user_defined_symbols=["\n"], character_coverage=1.0, input_sentence_size=max_sentences,
      shuffle_input_sentence=True, max_sentence_length=4 * MAX_SENTENCE_BYTES,
      num_threads=os.cpu_count() or 1, minloglevel=2)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output + ".tmp", "wb") as f:
    f.write(model.getvalue())
  os.replace(output + ".tmp", output)
  return output


def main() -> None:
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  from train import cli  # pylint: disable=g-import-not-at-top
  from train import errors  # pylint: disable=g-import-not-at-top

  default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")
  try:
    cli.check_overrides(sys.argv[1:], default)
  except errors.ConfigError as e:
    print(f"{e.kind}: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
  output = flags.DEFINE_string("output", None, "Path of the .model file to write.", required=True)
  vocab = flags.DEFINE_integer("vocab_size", 2048, "Vocabulary size (>= 260 with byte fallback).")
  kind = flags.DEFINE_enum("model_type", "bpe", ["bpe", "unigram"], "SentencePiece model type.")
  sentences = flags.DEFINE_integer("max_sentences", 200_000,
                                   "Pieces sampled from the corpus for training.")
  config = config_flags.DEFINE_config_file("config", default=default,
                                           help_string="Training config file (its data).")

  def run(argv):
    del argv
    try:
      path = train_sentencepiece(config.value, output.value, vocab.value, kind.value,
                                 sentences.value)
    except errors.TrainerError as e:
      print(f"{e.kind}: {e}", file=sys.stderr)
      sys.exit(e.exit_code)
    print(f"tokenizer: {path} (vocab {vocab.value}); train with "
          f"--config.data.tokenizer={path}")

  app.run(run)


if __name__ == "__main__":
  main()
