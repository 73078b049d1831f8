"""Test session setup: 8 fake CPU devices, before any JAX backend starts."""

import os

os.environ.setdefault("XLA_FLAGS", "")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")

# The generator of the stored torch vectors needs torch; it is run by hand, never collected.
collect_ignore = ["reference/generate_torch_muon_vectors.py"]
