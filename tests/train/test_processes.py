"""Subprocess runs of `python -m train`: 2-process gloo == 1 process x 4 devices; SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train_args(workdir: str, data_dir: str, *extra: str) -> list[str]:
  return [f"--workdir={workdir}", "--config=train/configs/tiny.py",
          f"--config.data.data_dir={data_dir}", "--config.log_every=1", *extra]


def _rows(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.endswith("\n")]


def _env(**extra) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
  return dict(env, JAX_PLATFORMS="cpu", **extra)


def test_two_processes_match_one_process(tmp_path, data_dir):
  steps = ["--config.train_steps=4", "--config.eval_every=4", "--config.checkpoint_every=4"]
  single = subprocess.run(
      [sys.executable, "-m", "train", *_train_args(str(tmp_path / "one"), data_dir, *steps)],
      cwd=REPO_ROOT, env=_env(JAX_NUM_CPU_DEVICES="4"), capture_output=True, text=True)
  assert single.returncode == 0, single.stderr[-3000:]
  multi = subprocess.run(
      [sys.executable, "train/scripts/launch_localhost.py", "--num_processes=2",
       "--devices_per_process=2", "--",
       *_train_args(str(tmp_path / "two"), data_dir, *steps)],
      cwd=REPO_ROOT, env=_env(), capture_output=True, text=True)
  assert multi.returncode == 0, multi.stderr[-3000:]
  mesh = "mesh {'data': 4, 'fsdp': 1, 'tensor': 1} over "  # Logged by every process at start.
  assert single.stderr.count(mesh + "1 process") == 1
  assert multi.stderr.count(mesh + "2 process") == 2
  one, two = _rows(str(tmp_path / "one")), _rows(str(tmp_path / "two"))
  assert [r["step"] for r in two] == [1, 2, 3, 4]
  np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-5)
  np.testing.assert_allclose(two[-1]["eval_loss"], one[-1]["eval_loss"], rtol=1e-5)
  assert os.path.exists(tmp_path / "two" / "checkpoints" / "4" / "data" / "process_1-of-2.json")
  with open(tmp_path / "two" / "checkpoints" / "4" / "checksums.json") as f:
    assert "data/process_1-of-2.json" in json.load(f)["files"]  # Written after both processes.


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_cleanly(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  proc = subprocess.Popen(
      [sys.executable, "-m", "train",
       *_train_args(workdir, data_dir, "--config.train_steps=100000")],
      cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while len(_rows(workdir)) < 3 and time.time() < deadline and proc.poll() is None:
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 0, stderr[-3000:]
  saved = [int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()]
  assert saved and 3 <= max(saved) < 100000
  assert max(saved) == _rows(workdir)[-1]["step"]
