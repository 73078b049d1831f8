"""Test session setup: 8 fake CPU devices, before any JAX backend starts."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "")
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

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")

# The generator of the stored torch vectors needs torch; it is run by hand, never collected.
collect_ignore = ["reference/generate_torch_muon_vectors.py"]
