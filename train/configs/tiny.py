"""Tiny config for tests: the `tiny` model on a small stdlib subset, a few dozen steps."""

import ml_collections

from train.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.get_config()
  c.train_steps = 40
  c.batch_size = 8
  c.seq_len = 64
  c.eval_every = 20
  c.eval_steps = 2
  c.checkpoint_every = 20
  c.log_every = 5
  c.model.preset = "tiny"
  c.model.n_layers = 2
  c.optimizer.warmup_steps = 5
  c.data.max_files = 60
  return c
