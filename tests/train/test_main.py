"""`python -m train`: the default config loads from any directory; bad configs fail clearly."""

import os
import subprocess
import sys

import pytest


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
  return subprocess.run(
      [sys.executable, "-m", "train", f"--workdir={tmp_path / 'run'}", *args],
      cwd=tmp_path, env=dict(env, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="2"),
      capture_output=True, text=True)


@pytest.mark.parametrize("override,message", [
    ("--config.optimizer.name=sgd", "ValueError: unknown optimizer.name 'sgd'"),
    ("--config.batch_size=3", "ValueError: batch_size=3 is not divisible by the data axes "
     "(data*fsdp=2)"),
    ("--config.data.tfds_name=lm1b", "ValueError: data.data_dir is required for TFDS dataset"),
])
def test_cli_default_config_and_clear_errors(tmp_path, override, message):
  """Run outside the repo with no --config: the default config's fields are overridden."""
  out = _run(tmp_path, override)
  assert out.returncode != 0
  assert out.stderr.strip().splitlines()[-1].startswith(message), out.stderr[-2000:]
  assert not os.path.exists(tmp_path / "run" / "checkpoints")  # Failed before any work.
