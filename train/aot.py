"""`python -m train.aot --topology=v5p-128`: the trainer's train step compiled for a TPU slice.

Runs on any CPU machine with libtpu installed (`pip install -e '.[tpu]'`), with no TPU attached:
libtpu describes the slice's chips (`jax.experimental.topologies`), the trainer builds its mesh,
optimizer, state shardings and jitted step (`train.step.jit_steps`, state donated) exactly as
`python -m train` does with the same `--config.*` flags, and XLA's TPU compiler compiles that step
from abstract inputs. Nothing is allocated. Prints, per chip: params, optimizer state, arguments,
temporaries and their total against the compiler's HBM limit; flops and bytes accessed; bytes of
each collective kind in the compiled HLO; compile time. `--json=PATH` writes the same.

    python -m train.aot --topology=v5p-128 --config.model.preset=llama-8b \\
        --config.batch_size=256 --config.seq_len=4096 --config.mesh.data=1 --config.mesh.fsdp=-1

Exit codes: 0 fits, 2 config error, 5 does not fit (one line: `does not fit: ...`).
The vocabulary is the tokenizer's when `data.tokenizer` is a SentencePiece file, else the
preset's own (the byte tokenizer's 256 would understate a real model's embedding and head).
GPUs have no deviceless compile in JAX; this tool is TPU-only (MaxText's `train_compile.py`
is the model).
"""

import os

# libtpu on a host without a TPU: do not ask the GCE metadata server (no network), name this
# host the only worker, let several processes load libtpu (pytest -n 2), and keep JAX's own
# backend on the CPU (the TPU is only a compile target).
_LIBTPU_ENV = {
    "TPU_SKIP_MDS_QUERY": "1",
    "TPU_WORKER_ID": "0",
    "TPU_WORKER_HOSTNAMES": "localhost",
    "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
    "JAX_PLATFORMS": "cpu",
}
for _key, _value in _LIBTPU_ENV.items():
  os.environ.setdefault(_key, _value)

# pylint: disable=g-import-not-at-top,wrong-import-position
import gzip
import json
import math
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

import models
from train import spectral_metrics as diagnostics
from train import mesh as mesh_lib
from train import optimizer as optimizer_lib
from train import slices
from train import config_checks as validation
from train.errors import ConfigError, TrainerError
from train.state import abstract_state
from train.step import jit_steps

GiB = 2**30
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_ACCELERATOR_TYPE = {"v4": "v4", "v5p": "v5p", "v5e": "v5litepod", "v6e": "v6e"}


class DoesNotFit(TrainerError, MemoryError):
  """The compiled step needs more HBM per chip than the compiler allows."""

  exit_code = 5
  kind = "does not fit"


def topology_devices(topology: str, num_slices: int = 1) -> tuple[slices.Slice, list]:
  """`(slice, devices)` of the slice named `topology` (`v5p-128`, `v5e:2x2`), no TPU needed."""
  slice_ = slices.parse(topology)
  cores = slice_.num_chips * (2 if slice_.chip_config_name == "megacore" else 1)
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", f"{_ACCELERATOR_TYPE[slice_.generation]}-{cores}")
  return slice_, slices.devices(slice_, num_slices)


_HBM_RE = re.compile(r"exceeds available HBM \(([\d.]+)G\)")
_HBM_LIMITS: dict[str, int] = {}


def hbm_limit(devices: list) -> int:
  """The compiler's HBM limit per chip in bytes, read from a probe that cannot fit."""
  kind = devices[0].device_kind
  if kind not in _HBM_LIMITS:
    sharding = jax.sharding.SingleDeviceSharding(devices[0])
    probe = jax.jit(lambda a: jnp.broadcast_to(a, (2**40,)) + 1, out_shardings=sharding)
    try:
      probe.lower(jax.ShapeDtypeStruct((1,), jnp.int8, sharding=sharding)).compile()
      raise RuntimeError("a 1 TiB program compiled: no HBM limit to read")
    except jax.errors.JaxRuntimeError as e:
      m = _HBM_RE.search(str(e))
      if not m:
        raise
      _HBM_LIMITS[kind] = round(float(m.group(1)) * GiB)
  return _HBM_LIMITS[kind]


def abstract_batch(config: ml_collections.ConfigDict, sharding) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes and dtypes of one global batch as `train.data.pipeline` yields it."""
  from train.data import pipeline  # pylint: disable=g-import-not-at-top  # tensorflow_datasets
  shape = (config.batch_size, config.seq_len + 1)
  batch = {"tokens": jax.ShapeDtypeStruct(shape, jnp.int32, sharding=sharding),
           "mask": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=sharding)}
  if pipeline.is_packed(config):
    for key in ("segment_ids", "positions"):
      batch[key] = jax.ShapeDtypeStruct(shape, jnp.int32, sharding=sharding)
  return batch


_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4,
                "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
                "f8e4m3fn": 1, "f8e5m2": 1, "s4": 0.5, "u4": 0.5}
_SHAPE_RE = re.compile(r"\b([a-z]+\d*[a-z0-9]*)\[([\d,]*)\]")
_OP_RE = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s+(" + "|".join(COLLECTIVES)
                    + r")(-start)?\(")
_COMP_RE = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_CALL_RE = re.compile(r"(body|calls|to_apply|condition|true_computation|false_computation)"
                      r"=%?([\w.\-]+)")
_TRIP_RE = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_COND_RE = re.compile(r"condition=%?([\w.\-]+)")
_SEND_RE = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s+send\(")
_DCN_RE = re.compile(r'_xla_megascale_transfer_type="(\w+)"')
_CONST_RE = re.compile(r"s32\[\]\S*\s+constant\((\d+)\)")


def _shape_bytes(text: str) -> float:
  return sum(_DTYPE_BYTES.get(dt, 4) * math.prod(int(d) for d in dims.split(",") if d)
             for dt, dims in _SHAPE_RE.findall(text))


def _collective_ops(hlo_text: str, dcn: bool = False):
  """`(kind, executions, bytes per device over all executions, line)` of each collective.

  `dcn=True`: the DCN transfers instead (`send`s tagged with a megascale transfer type).
  """
  comps: dict[str, list[str]] = {}
  calls: dict[str, list[tuple[str, Any]]] = {}  # callee -> [(caller, trip count or cond)]
  results: dict[str, str] = {}  # callee -> the result type of the instruction calling it
  entry, current = None, None
  for line in hlo_text.splitlines():
    m = _COMP_RE.match(line) if line[:1] not in ("", " ", "\t") else None
    if m:  # a computation's header (instructions are indented)
      current = m.group(2)
      comps[current] = []
      if m.group(1):
        entry = current
      continue
    if current is None:
      continue
    comps[current].append(line)
    trip = _TRIP_RE.search(line)
    cond = _COND_RE.search(line)
    for kind, callee in _CALL_RE.findall(line):
      n = 1
      if kind == "body":
        n = int(trip.group(1)) if trip else ("cond", cond.group(1) if cond else None)
      calls.setdefault(callee, []).append((current, n))
      if kind == "calls" and "=" in line:
        results[callee] = line.split("=", 1)[1].split(" fusion(", 1)[0]

  def trips(n) -> int:
    if isinstance(n, int):
      return n
    bounds = [int(c) for l in comps.get(n[1], []) for c in _CONST_RE.findall(l)]
    return max(bounds, default=1)

  memo: dict[str, int] = {}

  def times(comp: str, depth: int = 0) -> int:
    if comp == entry or depth > 50:
      return 1
    if comp not in memo:
      memo[comp] = sum(times(c, depth + 1) * trips(n) for c, n in calls.get(comp, [])) or 1
    return memo[comp]

  for comp, lines in comps.items():
    for line in lines:
      if dcn:
        m, tag = _SEND_RE.match(line), _DCN_RE.search(line)
        if m and tag:
          first = _SHAPE_RE.search(m.group(1))  # the data; the rest is a context and a token
          yield tag.group(1), times(comp), times(comp) * _shape_bytes(first.group(0)), line
        continue
      m = _OP_RE.match(line)
      if not m:
        continue
      result, kind, start = m.group(1), m.group(2), m.group(3)
      if kind == "all-reduce" and comp.startswith("all-reduce-scatter") and comp in results:
        kind, result, start = "reduce-scatter", results[comp], None
      shapes = _SHAPE_RE.findall(result)
      if start and result.startswith("(") and kind != "all-reduce":
        shapes = shapes[len(shapes) // 2:]
      n = times(comp)
      yield kind, n, n * sum(_DTYPE_BYTES.get(dt, 4) * math.prod(
          int(d) for d in dims.split(",") if d) for dt, dims in shapes), line


def collective_bytes(hlo_text: str) -> dict[str, dict[str, float]]:
  """Per-device result bytes and op counts of each collective kind in a compiled HLO module.

  Bytes are each op's result per device (an all-gather's gathered array, a reduce-scatter's
  shard). The TPU compiler writes a reduce-scatter as a fusion whose computation is named
  `all-reduce-scatter*` holding an all-reduce: it counts as a reduce-scatter of the fusion's
  result. Each op counts once per execution: ops in a `while` body (a scanned layer stack) are
  multiplied by the loop's trip count (its `known_trip_count`, else the bound its condition
  compares the counter with: the largest s32 constant there, as `lax.scan` lowers). An async
  `-start` op's tuple holds its operands and results; only the results (its second half) count.

  Examples:
    >>> hlo = '''ENTRY %main (p: f32[8]) -> f32[64] {
    ...   %p = f32[8]{0} parameter(0)
    ...   ROOT %ag = f32[64]{0} all-gather(%p), dimensions={0}
    ... }'''
    >>> collective_bytes(hlo)["all-gather"]
    {'count': 1, 'bytes': 256.0}
  """
  out = {k: {"count": 0, "bytes": 0.0} for k in COLLECTIVES}
  for kind, n, nbytes, _ in _collective_ops(hlo_text):
    out[kind]["count"] += n
    out[kind]["bytes"] += nbytes
  return out


def dcn_transfers(hlo_text: str) -> dict[str, dict[str, float]]:
  """What crosses DCN per chip per step in a multi-slice program, by transfer type.

  libtpu compiles one slice's program (partitions = chips per slice) and carries what must
  cross slices as host-transfer `send`s tagged `_xla_megascale_transfer_type` (ALL_REDUCE,
  ALL_GATHER, ...); each counts once per execution, with its data's bytes.

  Examples:
    >>> dcn_transfers(\'\'\'ENTRY %main (p: f32[8]) -> f32[8] {
    ...   %s = (f32[8]{0}, u32[], token[]) send(%p, %t), frontend_attributes={_xla_megascale_transfer_type="ALL_REDUCE"}
    ... }\'\'\')
    {'ALL_REDUCE': {'count': 1, 'bytes': 32.0}}
  """
  out: dict[str, dict[str, float]] = {}
  for kind, n, nbytes, _ in _collective_ops(hlo_text, dcn=True):
    entry = out.setdefault(kind, {"count": 0, "bytes": 0.0})
    entry["count"] += n
    entry["bytes"] += nbytes
  return out


def _tree_bytes_per_chip(abstract: Any, shardings: Any) -> float:
  total = 0.0
  for x, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)):
    shard = s.shard_shape(x.shape)
    total += math.prod(shard) * jnp.dtype(x.dtype).itemsize
  return total


MakeTx = Callable[[ml_collections.ConfigDict, Any], tuple[Any, bool]]


def build_state(config: ml_collections.ConfigDict, devices: list, make_tx: MakeTx | None = None):
  """`(tx, use_qk_clip, graphdef, abstract_state, state_shardings, mesh, model_cfg)` of `config`.

  `make_tx(config, model_cfg) -> (tx, use_qk_clip)` replaces the trainer's optimizer (for
  benchmarks of optimizers the trainer does not offer, e.g. optax.contrib.muon).
  """
  from train import trainer  # pylint: disable=g-import-not-at-top  # tensorflow_datasets, orbax
  validation.check_config(config)
  try:
    mesh = mesh_lib.make_mesh(config.mesh, devices)
  except ValueError as e:
    raise ConfigError(f"mesh: {e}") from e
  vocab = None
  if config.data.tokenizer != "bytes":
    from train.data import pipeline  # pylint: disable=g-import-not-at-top
    vocab = pipeline.load_tokenizer(config).vocab_size
  model_cfg = trainer.model_config(config.model, vocab, config.optimizer.name)
  validation.check_for_mesh(config, model_cfg, mesh)
  if make_tx is None:
    tx, use_qk_clip = optimizer_lib.make_optimizer(
        config.optimizer, model_cfg, config.train_steps, diagnostics.optimizer_config(config))
  else:
    tx, use_qk_clip = make_tx(config, model_cfg)
  graphdef, state, shardings, _ = abstract_state(model_cfg, tx, mesh, config.seed)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       state, shardings)
  return tx, use_qk_clip, graphdef, state, shardings, mesh, model_cfg


def build(config: ml_collections.ConfigDict, devices: list, make_tx: MakeTx | None = None):
  """`(train_fn, abstract_state, abstract_batch, mesh, model_cfg)`: what `python -m train` jits
  (`make_tx`: see :func:`build_state`)."""
  tx, use_qk_clip, graphdef, state, shardings, mesh, model_cfg = build_state(config, devices,
                                                                             make_tx)
  batch_sharding = models.sharding.batch_sharding(mesh)
  train_fn, _ = jit_steps(graphdef, tx, use_qk_clip, shardings, batch_sharding)
  return train_fn, state, abstract_batch(config, batch_sharding), mesh, model_cfg


def compile_report(config: ml_collections.ConfigDict, topology: str, num_slices: int = 1,
                   make_tx: MakeTx | None = None, hlo_path: str | None = None) -> dict[str, Any]:
  """Compiles the train step of `config` for `topology`; the per-chip report (a dict).

  `hlo_path` (optional, `.gz`) keeps the compiled HLO text, to read it again later.

  Raises `DoesNotFit` (with the report's numbers in its message) when the compiler runs out
  of HBM, `ConfigError` for a config the slice cannot run.
  """
  try:
    slice_, devices = topology_devices(topology, num_slices)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  train_fn, state, batch, mesh, model_cfg = build(config, devices, make_tx)
  limit = hbm_limit(devices)
  n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))
  report: dict[str, Any] = {
      "topology": topology, "topology_name": slice_.topology_name, "num_slices": num_slices,
      "chips": len(devices), "device_kind": devices[0].device_kind,
      "mesh": dict(mesh.shape), "preset": config.model.preset,
      "optimizer": config.optimizer.name, "batch_size": config.batch_size,
      "seq_len": config.seq_len, "params": n_params,
      "scan_layers": model_cfg.scan_layers, "remat": model_cfg.remat,
      "remat_policy": model_cfg.remat_policy, "attention_chunk": model_cfg.attention_chunk,
      "logits_chunk": model_cfg.logits_chunk, "n_layers": model_cfg.n_layers,
      "d_model": model_cfg.d_model, "loadavg": list(os.getloadavg()),
      "jax": jax.__version__, "libtpu": _libtpu_version(),
      "hbm_limit_GiB": limit / GiB,
      "param_GiB": _tree_bytes_per_chip(state.params, jax.tree.map(lambda x: x.sharding,
                                                                   state.params)) / GiB,
      "opt_state_GiB": _tree_bytes_per_chip(state.opt_state, jax.tree.map(
          lambda x: x.sharding, state.opt_state)) / GiB,
  }
  start = time.perf_counter()
  try:
    with jax.set_mesh(mesh):  # as the trainer compiles it (optax_muon places matrices by it)
      compiled = train_fn.lower(state, batch).compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    report["compile_s"] = time.perf_counter() - start
    first = next((l for l in str(e).splitlines() if "HBM" in l), str(e).splitlines()[0])
    error = DoesNotFit(f"{config.model.preset} x {config.optimizer.name} on {topology} "
                       f"(mesh {dict(mesh.shape)}, batch {config.batch_size}x{config.seq_len}): "
                       f"{first.strip()}")
    report.update(fits=False, error=str(error))
    error.report = report
    raise error from None
  report["compile_s"] = time.perf_counter() - start
  mem = compiled.memory_analysis()
  total = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
           + mem.temp_size_in_bytes + mem.generated_code_size_in_bytes)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  report.update({
      "argument_GiB": mem.argument_size_in_bytes / GiB,
      "output_GiB": mem.output_size_in_bytes / GiB,
      "alias_GiB": mem.alias_size_in_bytes / GiB,
      "temp_GiB": mem.temp_size_in_bytes / GiB,
      # The compiler's simulated peak of live buffers, arguments included. temp_GiB (what
      # `fits` counts) also holds space outside that peak.
      "peak_GiB": mem.peak_memory_in_bytes / GiB,
      "code_GiB": mem.generated_code_size_in_bytes / GiB,
      "total_GiB": total / GiB,
      "headroom_GiB": (limit - total) / GiB,
      "fits": total <= limit,
      "flops": float(cost.get("flops", 0.0)),
      "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
  })
  hlo = compiled.as_text()
  report["collectives"] = collective_bytes(hlo)
  if num_slices > 1:  # data parallelism over DCN sends the gradient all-reduce, nothing else
    report["dcn_transfers"] = dcn_transfers(hlo)
    report["dcn_other_than_all_reduce"] = sum(
        v["count"] for k, v in report["dcn_transfers"].items() if k != "ALL_REDUCE")
  if hlo_path:
    with gzip.open(hlo_path, "wt") as f:
      f.write(hlo)
  return report


def _libtpu_version() -> str:
  try:
    from importlib import metadata  # pylint: disable=g-import-not-at-top
    return metadata.version("libtpu")
  except Exception:  # pylint: disable=broad-except  # not installed: the compile fails later
    return "none"


def format_report(r: dict[str, Any]) -> str:
  """The report as the lines `python -m train.aot` prints."""
  lines = [
      f"{r['preset']} ({r['params'] / 1e6:,.1f}M params) x {r['optimizer']} on {r['topology']} "
      f"({r['topology_name']}, {r['num_slices']} slice(s), {r['chips']} chips, "
      f"{r['device_kind']}), mesh {r['mesh']}, batch {r['batch_size']} x {r['seq_len']}",
      f"per chip: params {r['param_GiB']:.3f} GiB, optimizer state {r['opt_state_GiB']:.3f} GiB,"
      f" arguments {r['argument_GiB']:.3f} GiB, temporaries {r['temp_GiB']:.3f} GiB",
      f"total {r['total_GiB']:.3f} GiB of {r['hbm_limit_GiB']:.2f} GiB HBM: "
      + ("fits" if r["fits"] else "DOES NOT FIT") + f" (headroom {r['headroom_GiB']:.2f} GiB)",
      f"flops {r['flops']:.4g}, bytes accessed {r['bytes_accessed']:.4g} per chip (XLA's cost "
      "analysis: a scanned layer body counts once)",
      "collectives per chip per step: " + ", ".join(
          f"{k} {v['count']}x {v['bytes'] / 2**20:.1f} MiB"
          for k, v in r["collectives"].items() if v["count"]) or "none",
      *([("across slices (DCN) per chip: " + (", ".join(
          f"{k.lower()} {v['count']}x {v['bytes'] / 2**20:.1f} MiB"
          for k, v in r["dcn_transfers"].items()) or "none"))]
        if "dcn_transfers" in r else []),
      f"compile {r['compile_s']:.1f} s (jax {r['jax']}, libtpu {r['libtpu']})",
  ]
  return "\n".join(lines)


def _write(report: dict[str, Any], json_path: str | None) -> None:
  if json_path:
    with open(json_path, "w") as f:
      json.dump(report, f, indent=1)


def main(config: ml_collections.ConfigDict, topology: str, num_slices: int,
         json_path: str | None) -> int:
  """Compiles, prints and writes (`json_path`) the report; `DoesNotFit` when it does not fit."""
  try:
    report = compile_report(config, topology, num_slices)
  except DoesNotFit as e:
    _write(getattr(e, "report", {"fits": False, "error": str(e)}), json_path)
    raise
  print(format_report(report), flush=True)
  _write(report, json_path)
  if not report["fits"]:  # The compiler accepted it, but the total is above the limit.
    raise DoesNotFit(f"total {report['total_GiB']:.2f} GiB > {report['hbm_limit_GiB']:.2f} GiB")
  return 0


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from train import cli  # pylint: disable=g-import-not-at-top
  from train.__main__ import _DEFAULT_CONFIG, _fail  # pylint: disable=g-import-not-at-top

  sys.argv[1:], _OPEN = cli.split_open_overrides(sys.argv[1:])
  try:
    cli.check_overrides(sys.argv[1:], _DEFAULT_CONFIG)
  except ConfigError as err:
    _fail(err)
  _TOPOLOGY = flags.DEFINE_string("topology", None, "TPU slice, e.g. v5p-128 or v5e:2x2.",
                                  required=True)
  _NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "Slices joined over DCN.")
  _JSON = flags.DEFINE_string("json", None, "Write the report here as JSON.")
  _CONFIG = config_flags.DEFINE_config_file("config", default=_DEFAULT_CONFIG,
                                            help_string="Training config file.")

  def _main(argv):
    if len(argv) > 1:
      _fail(ConfigError(f"unexpected arguments: {argv[1:]}"))
    config = _CONFIG.value
    cli.apply_open_overrides(config, _OPEN)
    try:
      sys.exit(main(config, _TOPOLOGY.value, _NUM_SLICES.value, _JSON.value))
    except TrainerError as err:
      _fail(err)

  def _parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as err:
      _fail(ConfigError(str(err)))

  app.run(_main, flags_parser=_parse)
