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


def _fake_tools(tmp_path, aot_exit: int) -> dict:
  """gcloud and the AOT check's python replaced by scripts that record their arguments."""
  for name, code in (("gcloud", 0), ("aot_python", aot_exit)):
    (tmp_path / name).write_text(
        f'#!/bin/sh\nprintf "%s\\0" "$@" > {tmp_path / (name + "_args")}\nexit {code}\n')
    (tmp_path / name).chmod(0o755)
  return dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", TPU_NAME="pod", ZONE="z",
              DATA_DIR="gs://bucket/tfds", WORKDIR="gs://bucket/runs/a",
              AOT_PYTHON=str(tmp_path / "aot_python"))


def test_pod_run_checks_the_same_config_for_its_slice_first(tmp_path):
  env = _fake_tools(tmp_path, aot_exit=0)
  subprocess.run(["bash", os.path.join(SCRIPTS, "tpu_pod_run.sh"), "--config.train_steps=7"],
                 env=env, check=True, cwd=REPO_ROOT)
  aot = (tmp_path / "aot_python_args").read_text().split("\0")
  assert aot[:3] == ["-m", "train.aot", "--topology=v4-32"]
  remote = next(a for a in (tmp_path / "gcloud_args").read_text().split("\0")
                if a.startswith("--command="))
  for flag in aot[3:-1]:  # every config flag checked is a flag of the launched run
    assert flag in remote, flag


def test_pod_run_refuses_a_config_that_does_not_fit(tmp_path):
  env = _fake_tools(tmp_path, aot_exit=5)
  out = subprocess.run(["bash", os.path.join(SCRIPTS, "tpu_pod_run.sh")], env=env,
                       capture_output=True, text=True, cwd=REPO_ROOT)
  assert out.returncode == 1 and "refusing to launch" in out.stderr
  assert not (tmp_path / "gcloud_args").exists()


def test_pod_run_sends_the_train_command_to_all_workers(tmp_path):
  env = _fake_tools(tmp_path, aot_exit=0)
  log = tmp_path / "gcloud_args"
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
