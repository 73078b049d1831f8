"""`python -m train.aot`: the trainer's step compiled for a TPU slice on this CPU host.

Runs the command as a user would (a subprocess with its own environment: libtpu is loaded
there, never in the test process, whose JAX stays on the 8 CPU devices). The tiny model on a
v5e:2x2 slice (4 chips) compiles in seconds.
"""

import json
import os
import subprocess
import sys

import pytest

from train import aot
from train import slices

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--config=train/configs/tiny.py", "--config.mesh.data=1", "--config.mesh.fsdp=-1"]


def _aot(*args: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_PLATFORMS", "XLA_FLAGS", "TPU_ACCELERATOR_TYPE",
                      "JAX_COMPILATION_CACHE_DIR")}
  return subprocess.run([sys.executable, "-m", "train.aot", *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def test_tiny_model_fits_a_v5e_2x2_and_reports_per_chip(tmp_path):
  out = _aot("--topology=v5e:2x2", f"--json={tmp_path / 'r.json'}", *TINY)
  assert out.returncode == 0, out.stderr[-2000:]
  report = json.loads((tmp_path / "r.json").read_text())
  assert report["chips"] == 4 and report["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
  assert report["fits"] and 0 < report["total_GiB"] < report["hbm_limit_GiB"]
  assert 15 < report["hbm_limit_GiB"] < 16.5  # v5e: 16 GB per chip
  for key in ("param_GiB", "opt_state_GiB", "argument_GiB", "temp_GiB", "flops",
              "bytes_accessed", "compile_s"):
    assert report[key] > 0, key
  # FSDP: the weights are all-gathered; the libtpu version is recorded beside the numbers.
  assert report["collectives"]["all-gather"]["bytes"] > 0
  assert report["libtpu"] != "none" and report["jax"]
  assert "fits" in out.stdout and "temporaries" in out.stdout


def test_a_config_that_does_not_fit_exits_5_with_one_line():
  out = _aot("--topology=v5e:2x2", *TINY, "--config.batch_size=1048576")
  assert out.returncode == 5
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("does not fit: tiny x muon on v5e:2x2") and "HBM" in last


def test_unknown_slice_is_a_config_error():
  out = _aot("--topology=v9z-8", *TINY)
  assert out.returncode == 2 and "topology='v9z-8'" in out.stderr


@pytest.mark.parametrize("name, topology, chips, wrap", [
    ("v5p-128", "v5p:4x4x4", 64, (True, True, True)),
    ("v5p-256", "v5p:4x4x8", 128, (True, True, True)),
    ("v4-32", "v4:2x2x4", 16, (False, False, False)),
    ("v5e-256", "v5e:16x16", 256, (True, True, False)),
    ("v5e-128", "v5e:8x16", 128, (False, True, False)),
    ("v6e-64", "v6e:8x8", 64, (False, False, False)),
    ("v5e:2x2", "v5e:2x2", 4, (False, False, False)),
])
def test_slice_names(name, topology, chips, wrap):
  s = slices.parse(name)
  assert (s.topology_name, s.num_chips, s.wrap) == (topology, chips, wrap)
  assert s.chip_config_name == ("megacore" if name.startswith(("v4", "v5p")) else "default")


@pytest.mark.parametrize("name", ["v5p-7", "v5e-3", "v7q-8", "v5p:4x4"])
def test_bad_slice_names_raise_naming_the_argument(name):
  with pytest.raises(ValueError, match="topology"):
    slices.parse(name)


def test_collective_bytes_counts_a_scanned_body_per_trip():
  hlo = """%body (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  ROOT %ar = f32[4]{0} all-reduce(%p), to_apply=%add
}

ENTRY %main (a: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  %ag = bf16[2,8]{1,0} all-gather(%a), dimensions={0}
  ROOT %w = f32[4]{0} while(%a), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"32"}}
}"""
  out = aot.collective_bytes(hlo)
  assert out["all-reduce"] == {"count": 32, "bytes": 32 * 16.0}
  assert out["all-gather"] == {"count": 1, "bytes": 32.0}


def test_two_slices_send_only_the_gradient_all_reduce_over_dcn():
  """Data parallelism over DCN: Muon's step sends exactly AdamW's gradient all-reduce across
  slices; Newton–Schulz stays inside each slice. The control (a mesh without devices, so
  Newton–Schulz cannot see the slices) does send its reshards over DCN."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_PLATFORMS", "XLA_FLAGS", "TPU_ACCELERATOR_TYPE",
                      "JAX_COMPILATION_CACHE_DIR")}
  out = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tests", "train", "dcn_worker.py")],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-2000:]
  dcn = json.loads(out.stdout.strip().splitlines()[-1])
  assert set(dcn["adamw"]) == {"ALL_REDUCE"} and dcn["adamw"]["ALL_REDUCE"]["bytes"] > 0
  assert dcn["muon"] == dcn["adamw"]
  assert set(dcn["muon_all_axes"]) - {"ALL_REDUCE"}, dcn["muon_all_axes"]


def test_dcn_transfers_read_megascale_sends():
  hlo = """%body (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  %s = (f32[4]{0}, u32[], token[]) send(%p, %t), frontend_attributes={_xla_megascale_transfer_type="ALL_GATHER"}
  ROOT %r = f32[4]{0} copy(%p)
}

ENTRY %main (a: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  %s0 = (bf16[8]{0}, u32[], token[]) send(%a, %t), frontend_attributes={_xla_megascale_transfer_type="ALL_REDUCE"}
  %s1 = (f32[2]{0}, u32[], token[]) send(%a, %t), is_host_transfer=true
  ROOT %w = f32[4]{0} while(%a), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
}"""
  assert aot.dcn_transfers(hlo) == {"ALL_REDUCE": {"count": 1, "bytes": 16.0},
                                    "ALL_GATHER": {"count": 3, "bytes": 48.0}}


@pytest.mark.slow  # ~5-10 min on 2 CPU cores: run with `-m slow`
def test_pod_script_default_config_fits_its_default_slice():
  script = open(os.path.join(REPO_ROOT, "train", "scripts", "tpu_pod_run.sh")).read()
  accelerator = script.split('ACCELERATOR="${ACCELERATOR:-', 1)[1].split("}", 1)[0]
  config_args = script.split('CONFIG_ARGS="', 1)[1].split(" $*", 1)[0].replace("\\\n", " ")
  out = _aot(f"--topology={accelerator}", *config_args.split())
  assert out.returncode == 0, out.stderr[-2000:]
  assert "fits" in out.stdout


def test_reduce_scatter_fusions_count_as_reduce_scatter():
  hlo = """%all-reduce-scatter.1 (x: f32[64]) -> f32[16] {
  %x = f32[64]{0} parameter(0)
  %ar = f32[64]{0} all-reduce(%x), replica_groups={{0,1,2,3}}, to_apply=%add
  ROOT %ds = f32[16]{0} dynamic-slice(%ar), dynamic_slice_sizes={16}
}

ENTRY %main (a: f32[64]) -> f32[16] {
  %a = f32[64]{0} parameter(0)
  ROOT %rs = f32[16]{0} fusion(%a), kind=kCustom, calls=%all-reduce-scatter.1
}"""
  out = aot.collective_bytes(hlo)
  assert out["reduce-scatter"] == {"count": 1, "bytes": 64.0}
  assert out["all-reduce"] == {"count": 0, "bytes": 0.0}
