"""8 CPU devices for sharding tests (no-op if the top-level conftest already set them)."""

import jax

try:
  jax.config.update("jax_num_cpu_devices", 8)
except RuntimeError:  # Backend already initialized (e.g. by tests/conftest.py).
  pass
