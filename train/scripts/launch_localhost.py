"""Runs `python -m train` as several processes on this machine, like a tiny multi-host job.

Each process gets `--devices_per_process` CPU devices and gloo cross-process collectives; process 0
hosts the coordinator on 127.0.0.1. Arguments after `--` go to `python -m train`, e.g.

  python train/scripts/launch_localhost.py --num_processes=2 -- --workdir=/tmp/mh \
      --config.train_steps=50
"""

import argparse
import os
import socket
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(train_args: list[str], num_processes: int = 2, devices_per_process: int = 2,
           port: int = 0) -> int:
  """Starts the processes, waits for all of them, returns the worst exit code."""
  port = port or _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices_per_process),
             JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
  procs = [
      subprocess.Popen(
          [sys.executable, "-m", "train", *train_args,
           "--config.distributed.initialize=True",
           f"--config.distributed.coordinator_address=127.0.0.1:{port}",
           f"--config.distributed.num_processes={num_processes}",
           f"--config.distributed.process_id={i}"],
          cwd=REPO_ROOT, env=env)
      for i in range(num_processes)
  ]
  codes = [p.wait() for p in procs]
  return max(codes, key=abs)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=2)
  parser.add_argument("--port", type=int, default=0, help="Coordinator port; 0 = any free.")
  parser.add_argument("train_args", nargs=argparse.REMAINDER)
  args = parser.parse_args()
  train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
  sys.exit(launch(train_args, args.num_processes, args.devices_per_process, args.port))


if __name__ == "__main__":
  main()
