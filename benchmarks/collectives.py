"""Bytes moved by the collectives of the trainer's compiled train step, per optimizer.

    python benchmarks/collectives.py            # default model and a 12-layer one, 8-device FSDP
    python benchmarks/collectives.py --quick    # the default model only

The train step is the trainer's own (`train.step.jit_steps`: forward, backward,
gradient clipping, optimizer update), lowered and compiled as the trainer does on a
("data", "fsdp", "tensor") = (1, 8, 1) mesh of 8 CPU devices: parameters, gradients
and optimizer state sharded over 8 devices (FSDP). Every collective instruction of
the compiled HLO is read with its shapes, and the bytes each device sends are
counted with the ring model: all-gather `(n−1)/n · output`, reduce-scatter
`(n−1)/n · input`, all-reduce `2(n−1)/n · size`, all-to-all `(n−1)/n · size`,
collective-permute `size`. The step is compiled, not run, so this measures
what the program moves, not how fast this machine moves it (no load guard).
The models are unscanned, so no collective sits inside a loop.

Also reported: whether compiling printed SPMD's "Involuntary full
rematerialization" warning (a transient full copy of a tensor on every device).
"""

import sys

import jax

jax.config.update("jax_num_cpu_devices", 8)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402

import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import optax  # noqa: E402
import optax_muon as om  # noqa: E402

import _common  # noqa: E402
from train import mesh as mesh_lib  # noqa: E402
from train import optimizer as optimizer_lib  # noqa: E402
from train import trainer  # noqa: E402
from train.configs import default as default_config  # noqa: E402
from train.state import init_state  # noqa: E402
from train.step import jit_steps  # noqa: E402
import models  # noqa: E402

OPTIMIZERS = ("adamw", "muon", "muon_plus_plus", "muown", "optax.contrib.muon")
_COLLECTIVE = re.compile(
    r"= (.+?) (all-gather|all-reduce|reduce-scatter|all-to-all|collective-permute)"
    r"(?:-start)?\((.*)$", re.MULTILINE)
_GROUP = re.compile(r"replica_groups=mesh\[([^\]]*)\] \{([^}]*)\}")
_SHAPE = re.compile(r"(\w+)\[([\d,]*)\]")
_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f64": 8, "s8": 1, "u8": 1,
          "pred": 1, "s64": 8}


def _nbytes(text: str) -> int:
  total = 0
  for dtype, dims in _SHAPE.findall(text):
    size = 1
    for d in filter(None, dims.split(",")):
      size *= int(d)
    total += size * _BYTES.get(dtype, 4)
  return total


def _group_size(attributes: str, devices: int) -> int:
  m = _GROUP.search(attributes)
  if not m:
    return devices
  sizes = dict(re.findall(r"'(\w+)'=(\d+)", m.group(1)))
  size = 1
  for axis in re.findall(r"'(\w+)'", m.group(2)):
    size *= int(sizes.get(axis, 1))
  return size


def collective_bytes(hlo: str, devices: int) -> dict[str, float]:
  """Bytes each device sends, per collective kind (ring model; see the module docstring).

  Compiled HLO prints shapes for results only, so everything is read off the result:
  a reduce-scatter's input is its result times the group size.
  """
  out: dict[str, float] = {}
  for result, kind, rest in _COLLECTIVE.findall(hlo):
    n = _group_size(rest, devices)
    if n <= 1:
      continue
    size = _nbytes(result.split(" ")[0] if not result.startswith("(") else result)
    frac = (n - 1) / n
    sent = {"all-gather": frac * size, "reduce-scatter": (n - 1) * size,
            "all-reduce": 2 * frac * size, "all-to-all": frac * size,
            "collective-permute": size}[kind]
    out[kind] = out.get(kind, 0.0) + sent
  return out


def _optax_contrib_muon(lr):
  return optax.contrib.muon(lr, consistent_rms=0.2, weight_decay=0.1,
                            muon_weight_dimension_numbers=optimizer_lib.labels.dimension_numbers)


def measure(name: str, n_layers: int | None) -> dict:
  config = default_config.get_config()
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 8, 1
  if n_layers is not None:
    config.model.n_layers = n_layers
  model_cfg = trainer.model_config(config.model)
  mesh = mesh_lib.make_mesh(config.mesh)
  if name == "optax.contrib.muon":
    config.optimizer.name = "muon"
    # Wrapped like every trainer optimizer (the step reads `skipped_steps`).
    tx = om.skip_nonfinite(optax.chain(
        optax.clip_by_global_norm(config.optimizer.grad_clip),
        _optax_contrib_muon(optimizer_lib.make_schedule(config.optimizer, 100))))
    use_qk_clip = False
  else:
    config.optimizer.name = name
    tx, use_qk_clip = optimizer_lib.make_optimizer(config.optimizer, model_cfg, 100)
  graphdef, state, shardings = init_state(model_cfg, tx, mesh, 0)
  batch_sharding = models.sharding.batch_sharding(mesh)
  train_fn, _ = jit_steps(graphdef, tx, use_qk_clip, shardings, batch_sharding)
  shape = (config.batch_size, config.seq_len + 1)
  batch = {"tokens": jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding),
           "mask": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch_sharding)}
  with tempfile.TemporaryFile("w+") as err:
    fd = os.dup(2)
    os.dup2(err.fileno(), 2)  # SPMD warnings go to the C++ log on stderr
    try:
      with jax.set_mesh(mesh):
        compiled = train_fn.lower(state, batch).compile()
    finally:
      os.dup2(fd, 2)
      os.close(fd)
    err.seek(0)
    log = err.read()
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  kinds = collective_bytes(compiled.as_text(), mesh.size)
  return {"bytes": kinds, "total_bytes": sum(kinds.values()), "n_params": n_params,
          "rematerialization_warnings": log.count("Involuntary full rematerialization"),
          "layers": model_cfg.n_layers, "d_model": model_cfg.d_model}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="the default model only")
  p.add_argument("--report-only", action="store_true",
                 help="measure nothing: rebuild results/collectives.md from the JSON")
  args = p.parse_args(argv)
  if args.report_only:
    payload = json.loads((_common.RESULTS_DIR / "collectives.json").read_text())
    _common.write_text("collectives.md", markdown(payload))
    return
  info = _common.machine_info()
  sizes = {"default (cpu192, 4 layers)": None}
  if not args.quick:
    sizes["12 layers (cpu192 widths)"] = 12
  results = {}
  for label, n_layers in sizes.items():
    for name in OPTIMIZERS:
      results.setdefault(label, {})[name] = r = measure(name, n_layers)
      print(f"{label} {name}: {r['total_bytes'] / 2**20:.2f} MiB/device "
            f"({', '.join(f'{k} {v / 2**20:.2f}' for k, v in sorted(r['bytes'].items()))}), "
            f"remat warnings {r['rematerialization_warnings']}", flush=True)
  command = "python benchmarks/collectives.py" + (" --quick" if args.quick else "")
  payload = {"machine": info, "command": command, "results": results}
  _common.write_report("collectives", payload, markdown)


def markdown(payload: dict) -> str:
  """results/collectives.md from the results JSON."""
  results = payload["results"]
  kinds = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
  headers = (["model", "optimizer", "MiB sent per device", "× AdamW"]
             + [f"{k} MiB" for k in kinds] + ["remat warnings"])
  rows = []
  for label, by_opt in results.items():
    base = by_opt["adamw"]["total_bytes"]
    for name, r in by_opt.items():
      rows.append([label, name, r["total_bytes"] / 2**20, r["total_bytes"] / base]
                  + [r["bytes"].get(k, 0.0) / 2**20 for k in kinds]
                  + [r["rematerialization_warnings"]])
  notes = [
      "The trainer's train step (forward, backward, clip, update) compiled on a "
      "(data 1, fsdp 8, tensor 1) mesh of 8 CPU devices; float32 parameters, batch 16×128.",
      "Bytes sent per device by every collective of the compiled program, ring model "
      "(all-gather (n−1)/n·out, reduce-scatter (n−1)/n·in, all-reduce 2(n−1)/n·size, "
      "all-to-all (n−1)/n·size).",
      "optax.contrib.muon: `consistent_rms=0.2`, weight decay 0.1, the trainer's dimension "
      "numbers, same gradient clipping; no placement (GSPMD decides).",
      "`remat warnings`: SPMD's 'Involuntary full rematerialization' messages while compiling.",
  ]
  return (_common.md_header("Collective bytes of a train step (8-device FSDP)",
                            payload["machine"], payload["command"], notes)
          + "\n" + _common.md_table(headers, rows))


if __name__ == "__main__":
  main()
