"""Data: the stdlib TFDS corpus (no TensorFlow) and the resumable grain pipeline."""

import subprocess
import sys

import numpy as np

from train.data import pipeline
from train.data import stdlib_source


def test_split_is_deterministic_by_file():
  files = stdlib_source.stdlib_files()
  assert files == sorted(files) and files
  assert not any(part in ("site-packages", "test", "tests") for f in files for part in f.split("/"))
  evals = [f for f in files if stdlib_source.split_of(f) == "eval"]
  assert 0.02 < len(evals) / len(files) < 0.09
  assert [stdlib_source.split_of(f) for f in files] == [stdlib_source.split_of(f) for f in files]


def test_build_and_read_without_tensorflow(make_config):
  config = make_config()
  code = ("import sys; from train.configs import tiny; from train.data import pipeline; "
          f"c = tiny.get_config(); c.data.data_dir = {config.data.data_dir!r}; "
          "b = pipeline.prepare(c); r = b.as_data_source(split='train')[0]; "
          "assert 'tensorflow' not in sys.modules; print(len(r['text']))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.split()[-1] == str(config.seq_len + 1)


def test_train_batches_resume_from_iterator_state(make_config):
  config = make_config()
  builder = pipeline.prepare(config)
  it = iter(pipeline.train_dataset(config, builder))
  first = next(it)
  assert first["tokens"].shape == (config.batch_size, config.seq_len + 1)
  assert first["tokens"].dtype == np.int32 and first["tokens"].max() < 256
  state = it.get_state()
  expected = [next(it)["tokens"] for _ in range(3)]
  resumed = iter(pipeline.train_dataset(config, builder))
  resumed.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(resumed)["tokens"], want)


def test_eval_batches_are_fixed(make_config):
  config = make_config()
  builder = pipeline.prepare(config)
  a, b = pipeline.eval_batches(config, builder), pipeline.eval_batches(config, builder)
  assert len(a) == config.eval_steps
  np.testing.assert_array_equal(a[-1]["tokens"], b[-1]["tokens"])


def test_short_records_are_padded_and_masked():
  out = pipeline.ToTokens("text", 6).map({"text": "héllo"[:3]})
  np.testing.assert_array_equal(out["tokens"], [104, 195, 169, 108, 0, 0])
  np.testing.assert_array_equal(out["mask"], [1, 1, 1, 1, 0, 0])
