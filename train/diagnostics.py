"""Hook for periodic diagnostics (e.g. spectral norms); called every `diagnostics.every` steps."""

import jax

from train.state import TrainState


def compute(state: TrainState, mesh: jax.sharding.Mesh) -> dict[str, float]:
  """Extra metrics for the current state, merged into that step's metrics row."""
  del state, mesh
  return {}
