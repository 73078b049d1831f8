"""`python -m train`: the default config loads from any directory; user errors are one short
message naming the field, exit code 2, no traceback, and nothing built."""

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
    ("--config.foo=1", "config error: unknown config key 'foo'; nearest valid keys: "),
    ("--config.optimizer.learnin_rate=1", "config error: unknown config key "
     "'optimizer.learnin_rate'; nearest valid keys: optimizer.learning_rate, "),
    ("--config.optimizer.learning_rate=-1",
     "config error: optimizer.learning_rate=-1.0: must be finite and > 0"),
    ("--config.optimizer.learning_rate=nan",
     "config error: optimizer.learning_rate=nan: must be finite and > 0"),
    ("--config.seq_len=0", "config error: seq_len=0: must be an integer >= 1"),
    ("--config.seq_len=abc", "config error: flag --config.seq_len=abc: invalid literal"),
    ("--config=missing.py", "config error: --config=missing.py: no such file"),
    ("--config.optimizer.name=sgd", "config error: optimizer.name='sgd': must be one of"),
    ("--config.batch_size=3", "config error: batch_size=3 is not divisible by the data axes "
     "(data*fsdp=2)"),
    ("--config.data.tfds_name=lm1b", "config error: data.data_dir is required for TFDS dataset"),
    ("--config.data.tokenizer=missing.model", "config error: data.tokenizer='missing.model': "
     "no such file"),
    ("--config.data.files=nothing/*.txt", "config error: data.files='nothing/*.txt': matches no"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, override, message):
  """Run outside the repo with no --config: the default config's fields are overridden."""
  out = _run(tmp_path, override)
  assert out.returncode == 2, out.stderr[-2000:]
  lines = out.stderr.strip().splitlines()
  assert "Traceback" not in out.stderr and len(lines) <= 3, out.stderr[-2000:]
  assert lines[-1].startswith(message), out.stderr[-2000:]
  assert not os.path.exists(tmp_path / "run")  # Failed before any work (workdir, data).
