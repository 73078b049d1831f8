"""Train test fixtures; 8 CPU devices (no-op if the top-level conftest already set them)."""

import jax
import pytest

from train.configs import tiny

try:
  jax.config.update("jax_num_cpu_devices", 8)
except RuntimeError:  # Backend already initialized (e.g. by tests/conftest.py).
  pass

# The trainer tests compile the same tiny-config steps many times (every run builds new jitted
# functions): tests/conftest.py's session-wide persistent compilation cache compiles each once.


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A per-session TFDS data_dir; datasets are built into it from a small stdlib subset."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture
def make_config(data_dir):
  """`make_config(**dotted_overrides)`: the tiny config with `data_dir` and overrides set."""
  def make(**overrides):
    config = tiny.get_config()
    config.data.data_dir = data_dir
    for key, value in overrides.items():
      node, *path = key.split("__")
      target = config
      for name in [node, *path][:-1]:
        target = target[name]
      target[[node, *path][-1]] = value
    return config
  return make
