"""TPU slice names as users type them (`v5p-128`, `v5e-256`) -> the topology libtpu compiles for.

The number in a slice name counts TensorCores: v4 and v5p chips have two (one "megacore" device
per chip), v5e and v6e one. Chips lie on a 3-D torus (v4, v5p: 2x2x1, 2x2x2, 2x2x4, 2x4x4,
4x4x4, 4x4x8, ...) or a 2-D grid (v5e, v6e: 2x2, 2x4, 4x4, 4x8, 8x8, 8x16, 16x16); each
doubling doubles the smallest dimension, the last of equal ones. Wraparound links: a v4/v5p cube
of at least 4x4x4 is a full torus; a v5e/v6e dimension of 16 chips wraps. Hosts hold 2x2x1 chips.
This is the layout MaxText's `accelerator_to_spec_map.py` lists for the same names.
"""

import dataclasses
import math
import re

# Generation -> (cores per chip, HBM GiB per chip as sold, topology dims, libtpu prefix).
_GENERATIONS = {
    "v4": (2, 32, 3, "v4"),
    "v5p": (2, 95, 3, "v5p"),
    "v5e": (1, 16, 2, "v5e"),
    "v6e": (1, 32, 2, "v6e"),
}
_ALIASES = {"v5litepod": "v5e", "v5": "v5p"}


@dataclasses.dataclass(frozen=True)
class Slice:
  """One TPU slice: what `jax.experimental.topologies.get_topology_desc` needs."""

  name: str  # As typed, e.g. "v5p-128" or "v5p:4x4x4".
  generation: str  # "v4" | "v5p" | "v5e" | "v6e".
  bounds: tuple[int, ...]  # Chips per dimension, e.g. (4, 4, 4).
  chip_config_name: str  # "megacore" (v4, v5p: one device per chip) or "default".
  wrap: tuple[bool, bool, bool]
  chips_per_host_bounds: tuple[int, int, int]

  @property
  def topology_name(self) -> str:
    return f"{_GENERATIONS[self.generation][3]}:{'x'.join(map(str, self.bounds))}"

  @property
  def num_chips(self) -> int:
    return math.prod(self.bounds)


def _bounds(chips: int, ndim: int) -> tuple[int, ...]:
  """Chip grid of a power-of-two slice: start 2x2(x1), double the smallest (last) dimension."""
  if chips == 1:
    return (1,) * ndim
  dims = [2, 2, 1][:ndim] if ndim == 3 else [2, 2]
  while math.prod(dims) < chips:
    smallest = min(dims)
    i = max(j for j, d in enumerate(dims) if d == smallest)
    dims[i] *= 2
  if math.prod(dims) != chips:
    raise ValueError(f"topology: {chips} chips is not a slice size this tool knows; pass the "
                     "topology itself, e.g. v4:4x4x12")
  return tuple(dims)


def _wrap(generation: str, bounds: tuple[int, ...]) -> tuple[bool, bool, bool]:
  if len(bounds) == 3:
    full = all(d >= 4 and d % 4 == 0 for d in bounds)
    return (full, full, full)
  return (bounds[0] == 16, bounds[1] == 16, False)


def parse(name: str) -> Slice:
  """The slice named `name`: `v5p-128` (TensorCores) or a topology `v5p:4x4x4` (chips).

  Examples:
    >>> parse("v5p-128").topology_name, parse("v5p-128").num_chips
    ('v5p:4x4x4', 64)
    >>> parse("v5e-256").bounds, parse("v5e-256").wrap
    ((16, 16), (True, True, False))
    >>> parse("v4-32").bounds
    (2, 2, 4)
  """
  m = re.fullmatch(r"(v\d[a-z]*)(?:-(\d+)|:(\d+(?:x\d+)+))", name.strip())
  gen = _ALIASES.get(m.group(1), m.group(1)) if m else None
  if gen not in _GENERATIONS:
    raise ValueError(f"topology={name!r}: expected a slice name like v5p-128, v5e-256, v4-32, "
                     f"v6e-64 or a topology like v5p:4x4x4 (generations {sorted(_GENERATIONS)})")
  cores_per_chip, _, ndim, _ = _GENERATIONS[gen]
  if m.group(2):
    cores = int(m.group(2))
    if cores % cores_per_chip:
      raise ValueError(f"topology={name!r}: {gen} slices count {cores_per_chip} cores per chip")
    bounds = _bounds(cores // cores_per_chip, ndim)
  else:
    bounds = tuple(int(d) for d in m.group(3).split("x"))
    if len(bounds) != ndim:
      raise ValueError(f"topology={name!r}: {gen} topologies have {ndim} dimensions")
  chips = math.prod(bounds)
  host = (1, 1, 1) if chips == 1 else (2, 2, 1)
  return Slice(name=name, generation=gen, bounds=bounds,
               chip_config_name="megacore" if cores_per_chip == 2 else "default",
               wrap=_wrap(gen, bounds), chips_per_host_bounds=host)


def devices(slice_: Slice, num_slices: int = 1) -> list:
  """The slice's devices (`num_slices` copies over DCN) from libtpu, with no TPU attached."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  if num_slices < 1:
    raise ValueError(f"num_slices={num_slices}: must be >= 1")
  return topologies.get_topology_desc(
      platform="tpu", topology_name=slice_.topology_name,
      chip_config_name=slice_.chip_config_name,
      chips_per_host_bounds=slice_.chips_per_host_bounds, num_slices=num_slices,
      wrap=slice_.wrap).devices
