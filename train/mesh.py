"""Device mesh ("data", "fsdp", "tensor") from config; -1 fills the remaining devices."""

import math

import jax
import ml_collections

from models.sharding import MESH_AXES


def mesh_shape(mesh_cfg: ml_collections.ConfigDict, num_devices: int) -> tuple[int, ...]:
  """Resolves the sizes of ("data", "fsdp", "tensor"); at most one may be -1."""
  sizes = [int(mesh_cfg[a]) for a in MESH_AXES]
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"mesh sizes {dict(zip(MESH_AXES, sizes))}: use positive sizes, one -1 max")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"{num_devices} devices cannot fill mesh {dict(zip(MESH_AXES, sizes))}")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                     f"have {num_devices}")
  return tuple(sizes)


def num_slices(devices) -> int:
  """How many TPU slices (joined over DCN) `devices` span; 1 for CPUs and GPUs."""
  return len({getattr(d, "slice_index", 0) for d in devices})


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices=None) -> jax.sharding.Mesh:
  """The ("data", "fsdp", "tensor") mesh over `devices` (default: all of them).

  Devices of several TPU slices (`num_slices > 1`) put the slices on "data" (pure data
  parallelism over DCN, as MaxText's `dcn_data_parallelism`); "data" must be a multiple of
  the slice count.
  """
  devices = jax.devices() if devices is None else devices
  shape = mesh_shape(mesh_cfg, len(devices))
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  slices = num_slices(devices)
  if slices == 1:
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)
  if shape[0] % slices:
    raise ValueError(f"mesh.data={shape[0]} must be a multiple of the {slices} slices (DCN)")
  from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
  ici = (shape[0] // slices,) + shape[1:]
  dcn = (slices,) + (1,) * (len(shape) - 1)
  grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
  return jax.sharding.Mesh(grid, MESH_AXES, axis_types=axis_types)
