"""Test session setup: 8 fake CPU devices, before any JAX backend starts; one compilation cache."""

import atexit
import os
import pathlib
import shutil
import tempfile

# LLVM's optimization of XLA:CPU's kernels is most of a test's compile time, and the tests check
# numbers and compiled programs, not the CPU kernels' speed: compile them unoptimized (a third
# off the suite on 2 cores). HLO passes, buffer assignment (the memory tests) and the float
# semantics are the same (no fast-math either way); every golden and reference tolerance holds,
# and the XLA:CPU NaN-dropping max of docs/algorithms.md still reproduces. Subprocesses
# (trainer runs, notebook kernels) inherit it; `train.aot`'s TPU compiles drop XLA_FLAGS.
# A caller's own XLA_FLAGS are kept as they are.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# libtpu is installed (the `tpu` extra, for `python -m train.aot`): keep JAX on the CPU here,
# let both pytest workers load libtpu (else the second one fails on /tmp/libtpu_lockfile), and
# never ask the GCE metadata server (no network). train.aot's tests run it in a subprocess.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["ALLOW_MULTIPLE_LIBTPU_LOAD"] = "1"
os.environ["TPU_SKIP_MDS_QUERY"] = "1"
# The trainer and the model are run from the checkout, not installed: subprocesses
# (python -m train, notebook kernels, worker processes) find them through PYTHONPATH.
_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")

# One persistent compilation cache for the session, shared by both pytest-xdist workers: many
# tests (the trainer's tiny-config runs, every alias on the same shapes) build new jitted
# functions for programs the session has compiled already, often on the other worker. The
# controller (or a run without -n) makes the directory before the workers start; they inherit
# its path. JAX writes entries atomically, so two processes can share one directory.
if "OPTAX_MUON_TEST_JAX_CACHE" not in os.environ:
  os.environ["OPTAX_MUON_TEST_JAX_CACHE"] = tempfile.mkdtemp(prefix="jax_cache_")
  atexit.register(shutil.rmtree, os.environ["OPTAX_MUON_TEST_JAX_CACHE"], ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", os.environ["OPTAX_MUON_TEST_JAX_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
# Trainer runs and notebook kernels started as subprocesses share it too (tests of
# `train.aot`, whose TPU compiles must not come from a cache, drop it from their environment).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["OPTAX_MUON_TEST_JAX_CACHE"])

# The generator of the stored torch vectors needs torch; it is run by hand, never collected.
collect_ignore = ["reference/generate_torch_muon_vectors.py"]


# --- xdist scheduling ----------------------------------------------------------------------------
# With -n and no --dist of the caller's, the run is --dist loadfile --no-loadscope-reorder: each
# test file goes to one worker (its module-scoped fixtures, e.g. a training run, are made once),
# files are handed out one at a time as workers free up, in collection order, and the longest
# files come first. Otherwise a worker can draw a long file last and run it alone while the other
# idles. Files in order, longest first (summed --durations on 2 cores); a file missing here only
# starts later, never runs less.
_LONGEST_FIRST = (
    "tests/test_distributed.py",
    "tests/test_diagnostics.py",
    "tests/train/test_trainer.py",
    "tests/test_notebooks.py",
    "tests/test_nonfinite.py",
    "tests/train/test_skipped_steps.py",
    "tests/train/test_golden.py",
    "tests/train/test_processes.py",
    "tests/train/test_tokenized.py",
    "tests/train/test_sharded.py",
    "tests/train/test_faults.py",
    "tests/test_layout_numerics.py",
    "tests/models/test_activation_sharding.py",
    "tests/models/test_long_sequence.py",
    "tests/models/test_transformer.py",
    "tests/train/test_qk_clip.py",
    "tests/test_multiprocess.py",
    "tests/train/test_aot.py",
)


@pytest.hookimpl(tryfirst=True)  # before xdist's, which turns -n into --dist load
def pytest_cmdline_main(config):
  if getattr(config.option, "numprocesses", None) and config.option.dist == "no":
    config.option.dist = "loadfile"
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  def rank(item):
    path = item.nodeid.split("::")[0]
    return _LONGEST_FIRST.index(path) if path in _LONGEST_FIRST else len(_LONGEST_FIRST)

  items.sort(key=rank)  # stable: the order within a file is pytest's
