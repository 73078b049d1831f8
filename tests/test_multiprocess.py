"""A real multi-process optimizer run: 2 processes × 2 CPU devices (gloo
collectives, ``jax.distributed``) take the same steps as 1 process × 4 devices.

This is the code path of a TPU pod: one global mesh across hosts, each host
holding its shard, Newton–Schulz placed on whole matrices across processes.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiprocess",
                      "optimizer_worker.py")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
  return dict(env, PYTHONPATH=REPO_ROOT)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run(args):
  return subprocess.Popen([sys.executable, WORKER, *args], env=_env(), cwd=REPO_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("optimizer", ["muon", "muown"])
def test_two_processes_take_the_same_steps_as_one(tmp_path, optimizer):
  one, two = str(tmp_path / "one.npz"), str(tmp_path / "two.npz")
  single = _run(["--num_processes=1", "--devices=4", f"--optimizer={optimizer}", f"--out={one}"])
  port = _free_port()
  procs = [_run([f"--process_id={i}", "--num_processes=2", "--devices=2", f"--port={port}",
                 f"--optimizer={optimizer}", f"--out={two}"]) for i in range(2)]
  for proc in [single, *procs]:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
  a, b = np.load(one), np.load(two)
  names = ["down", "embed", "q", "scale", "up", "w"]
  assert sorted(f for f in b.files if not f.startswith("initial_")) == names
  for k in names:
    np.testing.assert_allclose(b[k], a[k], atol=1e-6, rtol=1e-6, err_msg=k)
    assert not np.allclose(b[k], b[f"initial_{k}"], atol=1e-4), k  # the optimizer moved it
