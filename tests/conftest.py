"""Test session setup: 8 fake CPU devices, before any JAX backend starts."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "")
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
