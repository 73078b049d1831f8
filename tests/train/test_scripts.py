"""TPU pod recipes: valid bash, and the run script sends `python3 -m train` to every worker."""

import os
import shlex
import subprocess

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(REPO_ROOT, "train", "scripts")


@pytest.mark.parametrize("name", ["tpu_pod_create.sh", "tpu_pod_setup.sh", "tpu_pod_run.sh"])
def test_script_parses(name):
  subprocess.run(["bash", "-n", os.path.join(SCRIPTS, name)], check=True)


def test_pod_run_sends_the_train_command_to_all_workers(tmp_path):
  log = tmp_path / "gcloud_args"
  (tmp_path / "gcloud").write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" > {log}\n')
  (tmp_path / "gcloud").chmod(0o755)
  env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", TPU_NAME="pod", ZONE="z",
             DATA_DIR="gs://bucket/tfds", WORKDIR="gs://bucket/runs/a")
  subprocess.run(["bash", os.path.join(SCRIPTS, "tpu_pod_run.sh"), "--config.train_steps=7"],
                 env=env, check=True, cwd=REPO_ROOT)
  args = log.read_text().split("\0")
  assert args[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pod"]
  assert "--worker=all" in args
  remote = next(a for a in args if a.startswith("--command=")).removeprefix("--command=")
  subprocess.run(["bash", "-n", "-c", remote], check=True)
  words = shlex.split(remote.split("|")[0].split("&&")[1])
  assert words[:3] == ["python3", "-m", "train"]
  for flag in ("--workdir=gs://bucket/runs/a", "--config.data.data_dir=gs://bucket/tfds",
               "--config.distributed.initialize=True", "--config.train_steps=7"):
    assert flag in words, flag


def test_pod_run_requires_a_bucket_data_dir(tmp_path):
  env = dict(os.environ, TPU_NAME="pod", ZONE="z", WORKDIR="gs://bucket/runs/a")
  env.pop("DATA_DIR", None)
  out = subprocess.run(["bash", os.path.join(SCRIPTS, "tpu_pod_run.sh")], env=env,
                       capture_output=True, text=True)
  assert out.returncode != 0 and "DATA_DIR" in out.stderr
