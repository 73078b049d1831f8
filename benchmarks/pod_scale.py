"""What each optimizer costs on a TPU slice: the trainer's step compiled for it on this CPU.

Every row compiles the trainer's own jitted train step (`python -m train.aot`'s
`compile_report`) for a (slice, preset, parallelism) with one optimizer, and records per chip:
HBM (state, temporaries, total, headroom against the compiler's limit), XLA's flops, the
collective bytes of the compiled HLO (against AdamW's on the same row), compile time, and the
arithmetic of Newton–Schulz load balance (the busiest chip's NS flops over the ideal, from the
library's own placement plan) and Essential AI's estimate of Muon's overhead, 5·d/B of the
model's flops (B = tokens per step). Needs libtpu (`pip install -e '.[tpu]'`).

    python benchmarks/pod_scale.py                         # every row, every optimizer
    python benchmarks/pod_scale.py --rows v5p-128/llama-8b --optimizers adamw,muon

Each finished (row, optimizer) is stored in `results/pod_scale.json` at once and skipped on the
next run (`--redo` compiles again), so a long matrix can be run in parts; every compile runs in
its own process. `results/pod_scale.md` is rewritten from the JSON each time.
"""

import argparse
import ast
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # train.slices, for the ladder's rows
RESULTS = os.path.join(ROOT, "benchmarks", "results")
OPTIMIZERS = ("adamw", "optax.contrib.muon", "muon", "muon_plus_plus", "muown", "normuon")
HLO_DIR = os.environ.get("POD_SCALE_HLO_DIR", "/tmp/pod_scale_hlo")  # compiled HLO, gzipped
NS_STEPS = 5  # Newton–Schulz iterations of Muon's default schedule (for the 5·d/B estimate).


@dataclasses.dataclass(frozen=True)
class Row:
  topology: str
  preset: str
  batch_size: int  # global sequences per step
  seq_len: int
  mesh: tuple[int, int, int]  # (data, fsdp, tensor); -1 = the rest of the chips
  overrides: tuple[tuple[str, str], ...] = ()
  num_slices: int = 1  # slices joined over DCN ("data" spans them)

  @property
  def key(self) -> str:
    slices = f"x{self.num_slices}" if self.num_slices > 1 else ""
    return (f"{self.topology}{slices}/{self.preset}"
            + "".join(f"/{k}={v}" for k, v in self.overrides))

  @property
  def sized_key(self) -> str:
    """`key` with the global batch (`v5p-256/llama-70b/batch=256`): a point of the ladder."""
    return f"{self.key}/batch={self.batch_size}"

  def flags(self, optimizer: str) -> list[str]:
    data, fsdp, tensor = self.mesh
    flags = [f"--config.model.preset={self.preset}", f"--config.batch_size={self.batch_size}",
             f"--config.seq_len={self.seq_len}", f"--config.mesh.data={data}",
             f"--config.mesh.fsdp={fsdp}", f"--config.mesh.tensor={tensor}",
             f"--config.optimizer.name={optimizer}"]
    return flags + [f"--config.{k}={v}" for k, v in self.overrides]


# FSDP over the whole slice, 4 sequences of 4096 per chip (MaxText's v5p Llama-2-7B recipe).
ROWS = {r.key: r for r in (
    Row("v5p-128", "llama-8b", 256, 4096, (1, -1, 1)),
    Row("v5p-256", "llama-8b", 512, 4096, (1, -1, 1)),
    Row("v6e-64", "llama-8b", 256, 4096, (1, -1, 1)),
    Row("v5e-256", "llama-1b", 1024, 4096, (1, -1, 1)),
    Row("v4-32", "llama-1b", 64, 2048, (1, -1, 1)),  # train/scripts/tpu_pod_run.sh's default
    Row("v5p-256", "llama-34b", 256, 4096, (1, -1, 1)),  # >= 30B, 2 x 4096 per chip
    Row("v5p-256", "llama-70b", 256, 4096, (1, -1, 1)),  # 70B, 2 x 4096 per chip
    # Two slices joined over DCN ("data" = the slices; FSDP inside each).
    Row("v5p-128", "llama-8b", 512, 4096, (2, -1, 1), num_slices=2),
    Row("v5e-256", "llama-1b", 2048, 4096, (2, -1, 1), num_slices=2),
)}
# What each memory fix buys (docs/pod_scale.md): the v5p-128 8B row with one fix undone.
ABLATIONS = {r.key: r for r in (
    Row("v5p-128", "llama-8b", 256, 4096, (1, -1, 1), (("model.attention_chunk", "0"),)),
    Row("v5p-128", "llama-8b", 256, 4096, (1, -1, 1), (("model.logits_chunk", "0"),)),
    Row("v5p-128", "llama-8b", 256, 4096, (1, -1, 1), (("model.remat_policy", "minimal"),)),
    Row("v5p-128", "llama-8b", 256, 4096, (1, -1, 1),
        (("optimizer.options.mu_dtype", "bfloat16"),)),
    # The pod script's config before these memory fixes (docs/pod_scale.md), now with them.
    Row("v5p-128", "1b", 256, 2048, (1, -1, 1)),
)}
ALL_ROWS = {**ROWS, **ABLATIONS}

# --max-model: per slice and optimizer, the largest model of the ladder and the largest per-chip
# batch (a power of two, the next one compiled and not fitting) at MAX_SEQ, FSDP over each slice's
# chips with the presets' remat (full) and chunked attention and logits.
MAX_SLICES = ("v5e-256", "v5p-128", "v5p-256", "v6e-256")
LADDER = ("llama-8b", "llama-34b", "llama-70b")  # smallest first
MAX_SEQ = 4096
MAX_PER_CHIP = 16  # the batch search stops here
MAX_OPTIMIZERS = ("adamw", "muon", "muon_plus_plus", "muown", "normuon", "optax.contrib.muon")
# MaxText's published configs for the same slices (AdamW, bf16 activations, fp32 weights), read
# from AI-Hypercomputer/maxtext at e591f30 (`benchmarks/maxtext_v5e_model_configs.py`,
# `maxtext_v5p_model_configs.py`, `maxtext_trillium_model_configs.py`, `configs/tpu/v5p/128b.sh`):
# (slice, model, per-chip batch, seq, remat policy, sharding).
MAXTEXT_PUBLISHED = (
    ("v5e-256", "llama2-70b", 2, 2048, "qkv_proj_offloaded", "fsdp"),
    ("v5e-256", "llama2-7b", 4, 2048, "save_qkv_proj", "fsdp"),
    ("v5p-128", "llama2-70b", 2, 4096, "save_dot_except_mlpwi", "fsdp"),
    ("v5p-128", "llama2-7b", 4, 4096, "minimal", "fsdp"),
    ("v5p-256", "default-128b", 1, 2048, "minimal", "fsdp x tensor 8"),
    ("v6e-256", "llama2-70b", 4, 4096, "full", "fsdp_transpose"),
    ("v6e-256", "llama2-7b", 12, 4096, "full", "fsdp"),
)
_SIZED_KEY = re.compile(r"(v\w+-\d+)(?:x(\d+))?/([\w.-]+)((?:/[\w.]+=\w+)*)/batch=(\d+)")
# Each optimizer's default Newton–Schulz: (schedule, steps, method). Muon++ runs Polar Express
# x 6; "auto" takes the Gram form where it saves flops; optax.contrib.muon has no Gram form.
NS_OF = {"muon": ("jordan", 5, "auto"), "muon_plus_plus": ("polar_express", 6, "auto"),
         "muown": ("jordan", 5, "auto"), "normuon": ("jordan", 5, "auto"),
         "optax.contrib.muon": ("jordan", 5, "standard")}


def layer_rows(point: "Row") -> tuple["Row", "Row"]:
  """`point` with its layers unscanned, 1 and 2 of them: the compiled flops of one layer
  (forward, remat and backward) are their difference (`--layer-flops`)."""
  return tuple(dataclasses.replace(point, overrides=point.overrides + (
      ("model.scan_layers", "False"), ("model.n_layers", str(n)))) for n in (1, 2))


def ladder_row(topology: str, preset: str, per_chip: int, num_slices: int = 1,
               overrides: tuple[tuple[str, str], ...] = ()) -> Row:
  """A point of the ladder: `per_chip` sequences of MAX_SEQ per chip, FSDP inside each slice
  ("data" = the slices)."""
  from train import slices  # pylint: disable=g-import-not-at-top
  chips = slices.parse(topology).num_chips * num_slices
  return Row(topology, preset, per_chip * chips, MAX_SEQ, (num_slices, -1, 1), overrides,
             num_slices=num_slices)


def find_row(key: str) -> Row:
  """The row named `key`: one of ALL_ROWS or a ladder point's `sized_key`."""
  if key in ALL_ROWS:
    return ALL_ROWS[key]
  m = _SIZED_KEY.fullmatch(key)
  if m is None:
    raise ValueError(f"unknown row {key!r}; choose from {list(ALL_ROWS)} or a ladder point "
                     "like v5p-256/llama-70b/batch=256")
  from train import slices  # pylint: disable=g-import-not-at-top
  topology, num_slices, preset = m.group(1), int(m.group(2) or 1), m.group(3)
  batch = int(m.group(5))
  overrides = tuple(tuple(kv.split("=", 1)) for kv in m.group(4).split("/")[1:])
  per_chip = batch // (slices.parse(topology).num_chips * num_slices)
  return ladder_row(topology, preset, per_chip, num_slices, overrides)  # type: ignore[arg-type]


def _make_tx(name: str):
  """`make_tx` for `train.aot.compile_report`: optimizers the trainer does not build itself,
  wrapped like the trainer's (clip, then the optimizer, inside `skip_nonfinite`)."""
  if name not in ("optax.contrib.muon", "normuon"):
    return None
  import optax  # pylint: disable=g-import-not-at-top
  import optax_muon as om  # pylint: disable=g-import-not-at-top
  from train import labels  # pylint: disable=g-import-not-at-top
  from train import optimizer as optimizer_lib  # pylint: disable=g-import-not-at-top

  def make(config, model_cfg):
    del model_cfg
    config.optimizer.name = "muon"  # its lr schedule (the alias name is not the trainer's)
    lr = optimizer_lib.make_schedule(config.optimizer, config.train_steps)
    if name == "optax.contrib.muon":
      tx = optax.contrib.muon(lr, consistent_rms=0.2, weight_decay=0.1,
                              muon_weight_dimension_numbers=labels.dimension_numbers)
    else:
      tx = om.normuon(lr, weight_decay=0.1, dimension_numbers=labels.dimension_numbers,
                      skip_nonfinite=False)
    clip = optax.clip_by_global_norm(config.optimizer.grad_clip)
    return om.skip_nonfinite(optax.chain(clip, tx)), False

  return make


def hlo_file(key: str, optimizer: str) -> str:
  return os.path.join(HLO_DIR, (key + "__" + optimizer).replace("/", "_") + ".hlo.gz")


def reparse(results: dict) -> None:
  """Reads every row's collectives again from its kept HLO (after a change to the reader)."""
  import gzip  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, ROOT)
  from train import aot  # pylint: disable=g-import-not-at-top
  for key, row in results["rows"].items():
    for opt, r in row.items():
      if os.path.exists(hlo_file(key, opt)):
        with gzip.open(hlo_file(key, opt), "rt") as f:
          r["collectives"] = aot.collective_bytes(f.read())


def row_config(row: Row, optimizer: str):
  """The trainer config of one (row, optimizer)."""
  from train.configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  data, fsdp, tensor = row.mesh
  config.model.preset, config.batch_size, config.seq_len = row.preset, row.batch_size, row.seq_len
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = data, fsdp, tensor
  trainer_name = optimizer if optimizer in ("adamw", "muon", "muon_plus_plus", "muown") else "muon"
  config.optimizer.name = trainer_name
  for key, value in row.overrides:
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass  # a plain string, e.g. "minimal"
    with node.unlocked():
      node[leaf] = value
  return config


def compile_update(row: Row, optimizer: str) -> dict:
  """The optimizer's update alone (`tx.update` + `apply_updates`, the trainer's shardings),
  compiled for the row's slice in this process (`--update-one`): seconds and HLO size."""
  import optax  # pylint: disable=g-import-not-at-top
  from train import aot  # pylint: disable=g-import-not-at-top  # sets libtpu's env first
  import jax  # pylint: disable=g-import-not-at-top
  _, devices = aot.topology_devices(row.topology, row.num_slices)
  tx, _, _, state, shardings, mesh, _ = aot.build_state(row_config(row, optimizer), devices,
                                                        _make_tx(optimizer))

  def update(params, opt_state):  # the gradients have the params' shapes and shardings
    updates, opt_state = tx.update(params, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  fn = jax.jit(update, in_shardings=(shardings.params, shardings.opt_state),
               out_shardings=(shardings.params, shardings.opt_state), donate_argnums=(0, 1))
  with jax.set_mesh(mesh):
    lowered = fn.lower(state.params, state.opt_state)
    start = time.perf_counter()
    compiled = lowered.compile()
    seconds = time.perf_counter() - start
  hlo = compiled.as_text()
  return {"optimizer": optimizer, "compile_s": seconds, "loadavg": list(os.getloadavg()),
          "hlo_instructions": hlo.count("\n  "), "dcn_transfers": aot.dcn_transfers(hlo)}


def optimizer_dcn(update_report: dict) -> dict:
  """The cross-slice transfers of the optimizer's update alone (no gradient all-reduce in it):
  every one is the optimizer's own, e.g. a Newton–Schulz reshard over an axis spanning slices."""
  transfers = update_report["dcn_transfers"]
  return {"dcn_update_transfers": transfers,
          "dcn_ns_collectives": sum(v["count"] for v in transfers.values())}


def add_optimizer_dcn(out: str, key: str, optimizers: list[str]) -> None:
  """`--dcn-update`: `optimizer_dcn` for the compiled rows of `key` that lack it, each update
  compiled in a fresh process."""
  for opt in optimizers:
    if "dcn_ns_collectives" in _load(out)["rows"].get(key, {}).get(opt, {"dcn_ns_collectives": 0}):
      continue
    run = subprocess.run([sys.executable, os.path.abspath(__file__), "--update-one", key, opt],
                         capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT), check=True)
    dcn = optimizer_dcn(json.loads(run.stdout.strip().splitlines()[-1]))
    print(f"{key} {opt}: {dcn['dcn_ns_collectives']} optimizer transfers over DCN", flush=True)
    results = _load(out)
    results["rows"][key][opt].update(dcn)
    with open(out, "w") as f:
      json.dump(results, f, indent=1)


def source_commit() -> str:
  """The checked-out commit, "-dirty" when files other than the results differ from it (a
  run rewrites `benchmarks/results` after each compile; that is not a change to the code)."""
  git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True,
                                  text=True).stdout.strip()
  changed = git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results")
  return git("rev-parse", "--short", "HEAD") + ("-dirty" if changed else "")


def compile_one(row: Row, optimizer: str) -> dict:
  """One (row, optimizer) compiled in this process (`--one`): the `train.aot` report."""
  from train import aot  # pylint: disable=g-import-not-at-top  # sets libtpu's env first
  config = row_config(row, optimizer)
  try:
    os.makedirs(HLO_DIR, exist_ok=True)
    report = aot.compile_report(config, row.topology, row.num_slices, make_tx=_make_tx(optimizer),
                                hlo_path=hlo_file(row.key, optimizer))
  except aot.DoesNotFit as e:
    report = dict(getattr(e, "report", {}), fits=False, error=str(e))
  report["optimizer"] = optimizer
  if row.num_slices > 1 and report.get("fits"):
    report.update(optimizer_dcn(compile_update(row, optimizer)))
  report["commit"] = source_commit()
  if "chips" in report:
    report["ns"] = ns_arithmetic(row.preset, report["chips"] // report.get("num_slices", 1),
                                 optimizer)
  return report


def refresh_ns(results: dict) -> None:
  """`ns_arithmetic` again for every stored report (the arithmetic only; nothing compiles)."""
  for section in ("rows", "ladder", "layer_flops"):
    for key, by_opt in results.get(section, {}).items():
      for opt, r in by_opt.items():
        if "chips" in r and "preset" in r:
          r["ns"] = ns_arithmetic(r["preset"], r["chips"] // r.get("num_slices", 1), opt)


def ns_arithmetic(preset: str, chips: int, optimizer: str = "muon") -> dict:
  """Newton–Schulz balance and flops per chip, from the preset's shapes (arithmetic).

  Hidden matrices are bucketed by shape, a matrix and its transpose together (`[d, d_ff]` and
  `[d_ff, d]`: an 8B model's 224 matrices in 3 buckets), and placed by the library's own plan
  (`optax_muon.matrices.balance`, what `newton_schulz` runs on a mesh) over the flops each
  matrix's Newton–Schulz runs (`NS_OF`: the optimizer's steps, and the Gram form where "auto"
  takes it). `chips`: those one slice holds (Newton–Schulz stays inside a slice).
  `ns_ratio_vs_ideal` is the busiest chip's flops over the ideal (total / chips);
  `ns_ratio_padded`, the same for the earlier plan that padded each bucket to a multiple of the
  chips. optax.contrib.muon's is None: GSPMD places its Newton–Schulz.
  """
  import models  # pylint: disable=g-import-not-at-top
  from optax_muon import matrices  # pylint: disable=g-import-not-at-top
  from optax_muon._src import gram_newton_schulz  # pylint: disable=g-import-not-at-top
  cfg = models.get_config(preset)
  d, h, g, k, f = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff
  shapes: dict[tuple[int, int], int] = {}
  for shape, count in (((d, h * k), 2 * cfg.n_layers), ((d, g * k), 2 * cfg.n_layers),
                       ((d, f), 3 * cfg.n_layers)):  # q and o; k and v; gate, up and down
    shape = tuple(sorted(shape))
    shapes[shape] = shapes.get(shape, 0) + count
  sizes = list(shapes.values())
  schedule, steps, method = NS_OF.get(optimizer, NS_OF["muon"])
  flops = [gram_newton_schulz.flops(*s, steps, method, schedule=schedule) for s in shapes]
  plan = matrices.balance(sizes, [round(w) for w in flops], chips)
  # What XLA's static count of one chip's program holds: one matrix per bucket (a chip runs its
  # matrices in a loop, of conditionals where it may skip padding, counted once with the branch
  # taken), whatever the chip runs.
  counted = sum(w for c, w in zip(plan.counts, flops) if max(c))
  busiest = float(plan.loads().max())
  total = sum(n * w for n, w in zip(sizes, flops))
  padded = sum(math.ceil(n / chips) * w for n, w in zip(sizes, flops))
  placed = optimizer != "optax.contrib.muon"
  return {"ns_groups": {f"{m}x{n}": c for (m, n), c in shapes.items()},
          "ns_matrices": sum(sizes), "ns_schedule": schedule, "ns_steps": steps,
          "ns_method": method, "ns_ratio_vs_ideal": plan.imbalance if placed else None,
          "ns_ratio_padded": padded / (total / chips),
          "ns_flops_total": total, "ns_flops_per_chip_ideal": total / chips,
          "ns_flops_per_chip": busiest if placed else None,
          "ns_flops_counted_by_xla": counted if placed else None}


def model_flops(report: dict) -> float:
  """6·N·tokens + attention (12·layers·d·seq·tokens), the forward and backward of one step."""
  tokens = report["batch_size"] * report["seq_len"]
  return (6 * report["params"] * tokens
          + 12 * report["n_layers"] * report["d_model"] * report["seq_len"] * tokens)


def _load(path: str) -> dict:
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return {"rows": {}}


def write_markdown(results: dict, path: str) -> None:
  lines = ["# Pod scale: the trainer's step compiled for TPU slices on a CPU host", "",
           "Written by `benchmarks/pod_scale.py` (per chip; HBM limit = the compiler's). "
           "NS = Newton–Schulz; `NS/ideal` is the busiest chip's NS flops over the ideal (total / "
           "chips of one slice), arithmetic from the shapes and the library's placement plan, "
           "each matrix at the flops its Newton–Schulz runs (the optimizer's steps, the Gram "
           "form where the library takes it) "
           "(`NS padded`: the earlier plan, each shape padded to a multiple of the chips; "
           "optax.contrib.muon's NS is placed by GSPMD); `DCN`: bytes per chip sent across "
           "slices, and how many of those transfers are not the gradient all-reduce (in brackets: the transfers of the optimizer's update compiled alone); `5d/B` is Essential AI's estimate of Muon's extra flops "
           "as a fraction of the model's, `NS/model` the same ratio from the shapes. "
           "`coll/AdamW`: collective bytes per chip of the compiled step over AdamW's on the "
           "same row. XLA flops count a scanned layer body once; `model TFLOP` is 6·N·tokens + "
           "attention per chip. Compile times were taken on a shared 2-core CPU under the load "
           "shown.", ""]
  header = ("| slice | preset | batch x seq | optimizer | fits | state GiB | temp GiB | total GiB "
            "| headroom GiB | model TFLOP | XLA TFLOP | NS/ideal | NS padded | NS/model | 5d/B "
            "| coll GiB | coll/AdamW | all-gather GiB | all-reduce GiB | DCN GiB | DCN other "
            "| compile s | load |")
  lines += [header, "|" + "---|" * (header.count("|") - 1)]
  for key, row in sorted(results["rows"].items()):
    adamw = row.get("adamw", {})
    adamw_coll = sum(v["bytes"] for v in adamw.get("collectives", {}).values())
    for opt in OPTIMIZERS:
      r = row.get(opt)
      if r is None:
        continue
      topo, preset = key.split("/", 1)
      if not r.get("fits") and "total_GiB" not in r:
        lines.append(f"| {topo} | {preset} | | {opt} | no: {r.get('error', '')[:160]} |"
                     + " |" * 18)
        continue
      coll = sum(v["bytes"] for v in r["collectives"].values())
      ns = r.get("ns", {})
      mf = model_flops(r) / r["chips"]
      d_over_b = NS_STEPS * r["d_model"] / (r["batch_size"] * r["seq_len"])
      muon_like = opt != "adamw"
      lines.append(
          f"| {topo} | {preset} | {r['batch_size']} x {r['seq_len']} | {opt} | "
          f"{'yes' if r['fits'] else 'NO'} | {r['param_GiB'] + r['opt_state_GiB']:.2f} | "
          f"{r['temp_GiB']:.2f} | {r['total_GiB']:.2f} | {r['headroom_GiB']:.2f} | "
          f"{mf / 1e12:.1f} | {r['flops'] / 1e12:.2f} | "
          + (("GSPMD" if ns["ns_ratio_vs_ideal"] is None else f"{ns['ns_ratio_vs_ideal']:.2f}")
             + f" | {ns.get('ns_ratio_padded', float('nan')):.2f}"
             + f" | {ns['ns_flops_total'] / model_flops(r):.4f} | {d_over_b:.4f} | "
             if muon_like and ns else "| | | | ")
          + f"{coll / 2**30:.2f} | "
          + (f"{coll / adamw_coll:.3f}" if adamw_coll else "") + " | "
          + f"{r['collectives']['all-gather']['bytes'] / 2**30:.2f} | "
          f"{r['collectives']['all-reduce']['bytes'] / 2**30:.2f} | "
          + (f"{sum(v['bytes'] for v in r['dcn_transfers'].values()) / 2**30:.3f} | "
             f"{r['dcn_other_than_all_reduce']} (optimizer's own: "
             f"{r.get('dcn_ns_collectives', 'not counted')}) | "
             if "dcn_transfers" in r else "| | ")
          + f"{r['compile_s']:.0f} | "
          f"{r['loadavg'][0]:.1f} |")
  versions = {(r.get("jax"), r.get("libtpu")) for row in results["rows"].values()
              for r in row.values() if r.get("jax")}
  lines += ["", "Versions: " + ", ".join(f"jax {j}, libtpu {t}" for j, t in sorted(versions)), ""]
  lines += ["## Against AdamW on the same row", "",
            "Each Muon variant's total HBM per chip minus AdamW's (negative: it uses less), its "
            "temporaries minus AdamW's, and the second moment it does not keep (4 bytes x hidden "
            "matrix params / chips), from rows compiled at the same commit as their AdamW row; "
            "`peak temp`: the temporaries live at the compiler's simulated peak "
            "(`peak_memory_in_bytes` less the arguments) minus AdamW's.",
            "", "| row | optimizer | commit | total - AdamW GiB | temp - AdamW GiB "
            "| second moment GiB | DCN bytes / AdamW's | peak temp - AdamW MiB |",
            "|---|---|---|---|---|---|---|---|"]
  for key, row in sorted(results["rows"].items()):
    adamw = row.get("adamw", {})
    if "total_GiB" not in adamw:
      continue
    for opt in OPTIMIZERS[1:]:
      r = row.get(opt, {})
      if "total_GiB" not in r or r.get("commit") != adamw.get("commit"):
        continue
      second = f"{_second_moment_GiB(r):.3f}" if r.get("ns", {}).get("ns_groups") else ""
      dcn = ""
      if "dcn_transfers" in r and "dcn_transfers" in adamw:
        ours, base = (sum(v["bytes"] for v in x["dcn_transfers"].values()) for x in (r, adamw))
        dcn = f"{ours / base:.3f}" if base else ""
      lines.append(f"| {key} | {opt} | {r.get('commit')} | "
                   f"{r['total_GiB'] - adamw['total_GiB']:+.3f} | "
                   f"{r['temp_GiB'] - adamw['temp_GiB']:+.3f} | {second} | {dcn} | "
                   f"{_mib(_peak_temp_minus_GiB(r, adamw))} |")
  lines.append("")
  lines += max_model_markdown(results.get("max_model", []))
  with open(path, "w") as f:
    f.write("\n".join(lines))


def _peak_temp_minus_GiB(report: dict, adamw: dict) -> float | None:
  """Temporaries live at the compiler's simulated peak (`peak_memory_in_bytes` less the
  arguments), `report`'s minus AdamW's; None where either was compiled without it."""
  if "peak_GiB" not in report or "peak_GiB" not in adamw:
    return None
  return ((report["peak_GiB"] - report["argument_GiB"])
          - (adamw["peak_GiB"] - adamw["argument_GiB"]))


def _mib(x: float | None) -> str:
  return "" if x is None else f"{x * 1024:+.2f}"


def _second_moment_GiB(report: dict) -> float:
  """4 bytes x hidden-matrix params / chips of one slice: the AdamW state Muon does not keep."""
  hidden = sum(c * math.prod(int(d) for d in shape.split("x"))
               for shape, c in report.get("ns", {}).get("ns_groups", {}).items())
  return 4 * hidden / report["chips"] * report.get("num_slices", 1) / 2**30


def max_model_rows(results: dict) -> list[dict]:
  """`--max-model`'s answer from the ladder's compiles: per (slice, slices, optimizer) whose
  search is finished, the largest fitting point (the next batch and the next preset compiled
  and not fitting), and its memory against AdamW's at AdamW's largest point on the slice."""
  points: dict[tuple[str, int, str], list[tuple[int, int, dict]]] = {}
  for key, by_opt in results.get("ladder", {}).items():
    m = _SIZED_KEY.fullmatch(key)
    if m is None:
      continue
    topology, num_slices, preset = m.group(1), int(m.group(2) or 1), m.group(3)
    if m.group(4):
      continue  # not a point of the ladder itself
    for opt, r in by_opt.items():
      if "chips" in r:
        per_chip = r["batch_size"] // r["chips"]
        points.setdefault((topology, num_slices, opt), []).append(
            (LADDER.index(preset), per_chip, r))
  largest = {k: max((p for p in v if p[2].get("fits")), key=lambda p: p[:2], default=None)
             for k, v in points.items()}
  rows = []
  for (topology, num_slices, opt), best in sorted(largest.items()):
    if best is None:
      smallest = next((p[2] for p in points[(topology, num_slices, opt)] if p[:2] == (0, 1)), None)
      if smallest is not None:  # not even the smallest rung at batch 1 fits
        rows.append({"slice": topology, "num_slices": num_slices, "preset": None,
                     "params_B": None, "per_chip_batch": 0, "seq": MAX_SEQ, "optimizer": opt,
                     "fits": False, "smallest_tried": LADDER[0],
                     "smallest_error": smallest.get("error"),
                     "hbm_limit_GiB": smallest.get("hbm_limit_GiB"), "hbm_total_GiB": None,
                     "hbm_temp_GiB": None, "next_batch_fits": None, "next_preset_fits": False,
                     "ns_flops_ratio": None, "dcn_ns_collectives": None,
                     "jax": smallest.get("jax"), "libtpu": smallest.get("libtpu"),
                     "commit": smallest.get("commit")})
      continue
    rung, per_chip, r = best
    tried = {(p[0], p[1]): p[2].get("fits") for p in points[(topology, num_slices, opt)]}
    ns = r.get("ns", {})
    row = {"slice": topology, "num_slices": num_slices, "preset": LADDER[rung],
           "params_B": r["params"] / 1e9, "per_chip_batch": per_chip, "seq": r["seq_len"],
           "optimizer": opt, "fits": True, "hbm_total_GiB": r["total_GiB"],
           "hbm_temp_GiB": r["temp_GiB"], "hbm_limit_GiB": r["hbm_limit_GiB"],
           "next_batch_fits": tried.get((rung, 2 * per_chip)),
           "next_preset_fits": tried.get((rung + 1, 1)) if rung + 1 < len(LADDER) else None,
           "ns_flops_ratio": ns.get("ns_ratio_vs_ideal") if opt != "adamw" else None,
           "dcn_ns_collectives": r.get("dcn_ns_collectives", 0 if num_slices == 1 else None),
           "jax": r.get("jax"), "libtpu": r.get("libtpu"), "commit": r.get("commit")}
    if ((row["next_batch_fits"] is None and per_chip < MAX_PER_CHIP)
        or (rung + 1 < len(LADDER) and row["next_preset_fits"] is None)):
      continue  # a search not finished: its largest point is not bracketed yet
    base = largest.get((topology, num_slices, "adamw"))
    if base is not None and opt != "adamw":
      same = next((p[2] for p in points[(topology, num_slices, opt)]
                   if p[:2] == base[:2] and "temp_GiB" in p[2]), None)
      if same is not None:
        row["at_adamw_largest"] = {
            "preset": LADDER[base[0]], "per_chip_batch": base[1],
            "temp_minus_adamw_GiB": same["temp_GiB"] - base[2]["temp_GiB"],
            "total_minus_adamw_GiB": same["total_GiB"] - base[2]["total_GiB"],
            "second_moment_GiB": _second_moment_GiB(same),
            "state_minus_adamw_GiB": same["opt_state_GiB"] - base[2]["opt_state_GiB"],
            "code_minus_adamw_GiB": same["code_GiB"] - base[2]["code_GiB"],
            "peak_temp_minus_adamw_GiB": _peak_temp_minus_GiB(same, base[2]),
            "commit": same.get("commit"), "adamw_commit": base[2].get("commit"),
            **_flops_against_adamw(same, base[2], results)}
    rows.append(row)
  return rows


def step_flops(report: dict, results: dict) -> float | None:
  """The compiled step's flops per chip with the scanned layer counted `n_layers` times:
  `cost_analysis()` counts a loop body once, so one layer's flops (two unscanned compiles,
  `layer_rows`) are added `n_layers - 1` more times. None until `--layer-flops` ran."""
  point = ladder_row(report["topology"], report["preset"], report["batch_size"] // report["chips"],
                     report.get("num_slices", 1))
  one, two = (results.get("layer_flops", {}).get(r.sized_key, {}).get("adamw", {})
              for r in layer_rows(point))
  if "flops" not in one or "flops" not in two:
    return None
  return report["flops"] + (report["n_layers"] - 1) * (two["flops"] - one["flops"])


def _flops_against_adamw(report: dict, adamw: dict, results: dict) -> dict:
  """The optimizer's extra flops per chip at the same point as AdamW's, against Essential AI's
  estimate of Muon's overhead (NS_STEPS·d/B of the model's flops) and the library's own plan
  (the busiest chip's Newton–Schulz flops at the optimizer's steps).

  The layer scan is the same program in both steps and counts once in each, so the difference
  of their `cost_analysis()` flops is the optimizer's update (which runs outside the scan)."""
  opt, ns = report["optimizer"], report.get("ns", {})
  if (opt not in NS_OF or "flops" not in report or "flops" not in adamw
      or "ns_flops_counted_by_xla" not in ns):
    return {}
  chips = report["chips"]
  extra = report["flops"] - adamw["flops"]
  model = model_flops(report) / chips
  estimate = NS_STEPS * report["d_model"] / (report["batch_size"] * report["seq_len"])
  plan = ns.get("ns_flops_per_chip")  # None for optax.contrib.muon: placed by GSPMD
  # XLA's static count holds `ns_flops_counted_by_xla` (a chip's loop over its matrices counts
  # once); the busiest chip runs `plan`. GSPMD's program has no loop: every chip runs `extra`.
  busiest = extra if plan is None else extra * plan / ns["ns_flops_counted_by_xla"]
  step = step_flops(adamw, results)
  # What the busiest chip runs above a perfect split of the same Newton–Schulz flops.
  ratio = ns.get("ns_ratio_vs_ideal")
  above_ideal = None if ratio is None else busiest * (1 - 1 / ratio)
  return {"extra_flops_per_chip": extra, "model_flops_per_chip": model,
          "estimate_5d_over_B": estimate, "ns_steps": ns.get("ns_steps"),
          "extra_over_counted": None if plan is None else extra / ns["ns_flops_counted_by_xla"],
          "busiest_extra_flops_per_chip": busiest, "busiest_over_model": busiest / model,
          "busiest_over_estimate": busiest / model / estimate,
          "adamw_step_flops_per_chip": step,
          "share_of_step": None if step is None else busiest / step,
          "imbalance_share_of_step": (None if step is None or above_ideal is None
                                      else above_ideal / step)}


def max_model_markdown(rows: list[dict]) -> list[str]:
  """The max-size table of `max_model_rows`."""
  if not rows:
    return []
  def yes_no(x):
    return "" if x is None else ("yes" if x else "no")
  opts = [o for o in MAX_OPTIMIZERS if any(r["optimizer"] == o for r in rows)]
  by_slice: dict[str, dict[str, dict]] = {}
  for r in rows:
    name = r["slice"] + (f" x{r['num_slices']}" if r["num_slices"] > 1 else "")
    by_slice.setdefault(name, {})[r["optimizer"]] = r
  versions = sorted({(r["jax"], r["libtpu"]) for r in rows})
  summary = ["<!-- max-size table -->",
             "| slice (HBM/chip) | " + " | ".join(opts) + " |", "|---" * (len(opts) + 1) + "|"]
  for name, by_opt in by_slice.items():
    limit = next(iter(by_opt.values()))["hbm_limit_GiB"]
    summary.append(f"| {name} ({limit:.1f} GiB) | " + " | ".join(
        "" if o not in by_opt else f"none ({LADDER[0]} at 1 x {MAX_SEQ} does not fit)"
        if not by_opt[o]["fits"] else
        f"{by_opt[o]['preset']}, {by_opt[o]['per_chip_batch']} x {by_opt[o]['seq']}"
        for o in opts) + " |")
  summary += ["", "Largest preset, then sequences per chip x seq; FSDP, full remat; "
              + ", ".join(f"jax {j}, libtpu {t}" for j, t in versions) + ".",
              "<!-- end max-size table -->"]
  lines = ["## The largest model each slice trains (`--max-model`)", "", *summary, "",
           f"Ladder {', '.join(LADDER)} at seq {MAX_SEQ}, FSDP over each slice's chips, full "
           "remat, chunked attention and logits; per-chip batch a power of two (`2x fits`: the "
           "next batch, compiled; `next preset`: the next rung at batch 1). `at AdamW's "
           "largest`: the same optimizer compiled at AdamW's largest point, its temporaries "
           "and total minus AdamW's, beside the second moment it does not keep; `peak temp`: the "
           "temporaries live at the compiler's simulated peak (`peak_memory_in_bytes` less the "
           "arguments) minus AdamW's.", "",
           "| slice | optimizer | largest | params B | per chip x seq | total GiB | temp GiB "
           "| 2x fits | next preset | NS/ideal | DCN NS coll. | at AdamW's largest: temp - AdamW "
           "| total - AdamW | second moment | peak temp - AdamW MiB |", "|" + "---|" * 15]
  for r in rows:
    a = r.get("at_adamw_largest", {})
    slices = f"{r['slice']}" + (f" x{r['num_slices']}" if r["num_slices"] > 1 else "")
    if not r["fits"]:
      why = str(r["smallest_error"]).split("RESOURCE_EXHAUSTED: ")[-1]
      lines.append(f"| {slices} | {r['optimizer']} | none: {r['smallest_tried']} at 1 x "
                   f"{r['seq']}: {why} |" + " |" * 12)
      continue
    lines.append(
        f"| {slices} | {r['optimizer']} | {r['preset']} | {r['params_B']:.1f} | "
        f"{r['per_chip_batch']} x {r['seq']} | {r['hbm_total_GiB']:.2f} | "
        f"{r['hbm_temp_GiB']:.2f} | {yes_no(r['next_batch_fits'])} | "
        f"{yes_no(r['next_preset_fits'])} | "
        + ("" if r["ns_flops_ratio"] is None else f"{r['ns_flops_ratio']:.2f}")
        + f" | {'' if r['dcn_ns_collectives'] is None else r['dcn_ns_collectives']} | "
        + (f"{a['temp_minus_adamw_GiB']:+.3f} | {a['total_minus_adamw_GiB']:+.3f} | "
           f"{a['second_moment_GiB']:.3f} | {_mib(a.get('peak_temp_minus_adamw_GiB'))} |"
           if a else "| | | |"))
  lines += _share_of_step_markdown(rows)
  lines += ["", "MaxText's published configs for the same slices (AdamW; "
            "AI-Hypercomputer/maxtext e591f30, `benchmarks/maxtext_*_model_configs.py`):", "",
            "| slice | model | per chip x seq | remat | sharding |", "|---|---|---|---|---|"]
  lines += [f"| {s} | {m} | {b} x {q} | {r} | {sh} |" for s, m, b, q, r, sh in MAXTEXT_PUBLISHED]
  return lines + [""]


def _share_of_step_markdown(rows: list[dict]) -> list[str]:
  """The optimizer's extra flops per chip at AdamW's largest point (`_flops_against_adamw`)."""
  flops = [r for r in rows if "extra_flops_per_chip" in r.get("at_adamw_largest", {})]
  if not flops:
    return []
  def f(x, spec):
    return "" if x is None else format(x, spec)
  lines = ["", "### The optimizer's share of a step", "",
           "At AdamW's largest point on each slice, per chip. `XLA extra`: the step's XLA flops "
           "minus AdamW's (the layer scan is the same in both and cancels). XLA counts a "
           "program statically: a chip loops over its matrices of each Newton–Schulz bucket, "
           "and the loop counts once. `NS counted` is that count from the shapes (one matrix "
           "per bucket, at the optimizer's steps, with the Gram form where the library takes "
           "it), so `XLA extra / NS counted` near 1 says the update is Newton–Schulz and little "
           "else. `busiest`: the extra flops the busiest chip of the library's placement runs "
           "(`NS/ideal`), from that count scaled to the plan (optax.contrib.muon: XLA's count, "
           "a program without loops). Set against the model's flops (6·N·tokens + attention) "
           f"and Essential AI's estimate {NS_STEPS}·d/B; `share`: over AdamW's whole step, its "
           "scanned layer counted n_layers times (two unscanned compiles, `--layer-flops`); "
           "`imbalance`: what the busiest chip runs above the ideal (`busiest · (1 − 1/(NS/ideal))`), "
           "over the same step.", "",
           "| slice | optimizer | point | NS steps | NS/ideal | XLA extra TFLOP "
           "| XLA extra / NS counted | busiest TFLOP | busiest / model | 5d/B "
           "| busiest / estimate | AdamW step TFLOP | share | imbalance |", "|" + "---|" * 14]
  for r in flops:
    a = r["at_adamw_largest"]
    step = a["adamw_step_flops_per_chip"]
    lines.append(
        f"| {r['slice']}{' x' + str(r['num_slices']) if r['num_slices'] > 1 else ''} | "
        f"{r['optimizer']} | {a['preset']}, {a['per_chip_batch']} x {r['seq']} | {a['ns_steps']} | "
        f"{f(r['ns_flops_ratio'], '.2f')} | {a['extra_flops_per_chip'] / 1e12:.1f} | "
        f"{f(a['extra_over_counted'], '.2f')} | {a['busiest_extra_flops_per_chip'] / 1e12:.1f} | "
        f"{a['busiest_over_model']:.4f} | {a['estimate_5d_over_B']:.4f} | "
        f"{a['busiest_over_estimate']:.2f} | "
        f"{'' if step is None else format(step / 1e12, '.0f')} | {f(a['share_of_step'], '.3f')} | "
        f"{f(a.get('imbalance_share_of_step'), '.4f')} |")
  return lines


def update_compile_times(row: Row, rounds: int) -> None:
  """Compile time of the update alone, ours against optax.contrib.muon, each in a fresh
  process, interleaved; the fastest of `rounds` and the load beside every one."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from _common import write_report  # pylint: disable=g-import-not-at-top
  runs: dict[str, list[dict]] = {"optax.contrib.muon": [], "muon": []}
  for _ in range(rounds):
    for opt in runs:
      out = subprocess.run([sys.executable, os.path.abspath(__file__), "--update-one", row.key,
                            opt], capture_output=True, text=True, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=ROOT), check=True)
      runs[opt].append(json.loads(out.stdout.strip().splitlines()[-1]))
  best = {opt: min(r["compile_s"] for r in rs) for opt, rs in runs.items()}
  lines = [f"# Compiling the optimizer update alone: {row.key}, {row.topology}", "",
           "Written by `python benchmarks/pod_scale.py --update-compile "
           f"{row.key} --rounds {rounds}`: `tx.update` + `apply_updates` with the trainer's "
           "shardings, compiled deviceless for the slice, each compile in a fresh process, "
           "the two optimizers interleaved. The whole train step is not compared: both "
           "spend the same model compile (see pod_scale.md's compile column).", "",
           "| optimizer | fastest compile s | all rounds s (1-min load) | HLO lines |",
           "|---|---|---|---|"]
  for opt, rs in runs.items():
    lines.append(f"| {opt} | {best[opt]:.1f} | "
                 + ", ".join(f"{r['compile_s']:.1f} ({r['loadavg'][0]:.1f})" for r in rs)
                 + f" | {rs[0]['hlo_instructions']} |")
  lines += ["", f"muon / optax.contrib.muon: **{best['muon'] / best['optax.contrib.muon']:.2f}x**"]
  write_report("pod_scale_update_compile", {"row": row.key, "runs": runs, "fastest": best},
               lambda _: "\n".join(lines) + "\n")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rows", default=",".join(ROWS),
                      help=f"comma-separated of {list(ALL_ROWS)}")
  parser.add_argument("--optimizers", default=None,
                      help=f"default {','.join(OPTIMIZERS)} (--max-model: "
                      f"{','.join(MAX_OPTIMIZERS)})")
  parser.add_argument("--redo", action="store_true", help="compile rows already in the JSON")
  parser.add_argument("--out", default=os.path.join(RESULTS, "pod_scale.json"))
  parser.add_argument("--report-only", action="store_true",
                      help="rewrite results/pod_scale.md from the JSON; compile nothing")
  parser.add_argument("--reparse", action="store_true",
                      help="read collectives again from the kept HLO; compile nothing")
  parser.add_argument("--update-compile", metavar="ROW",
                      help="time compiling the optimizer update alone on ROW's slice, "
                      "optax.contrib.muon against muon, interleaved in fresh processes "
                      "-> results/pod_scale_update_compile.{json,md}")
  parser.add_argument("--rounds", type=int, default=3, help="rounds of --update-compile")
  parser.add_argument("--max-model", action="store_true",
                      help="per slice of --slices and optimizer: the largest preset of the "
                      "ladder (8B, 34B, 70B) and per-chip batch at seq 4096 that fit")
  parser.add_argument("--slices", default=",".join(MAX_SLICES), help="slices of --max-model")
  parser.add_argument("--num-slices", type=int, default=1, help="slices joined over DCN "
                      "(--max-model)")
  parser.add_argument("--layer-flops", action="store_true",
                      help="for each slice of --slices: one layer's compiled flops at AdamW's "
                      "largest point (two unscanned compiles), to count the scanned step whole")
  parser.add_argument("--dcn-update", action="store_true",
                      help="for the multi-slice rows of --rows already compiled: count the "
                      "optimizer's own transfers over DCN in its update alone")
  parser.add_argument("--one", nargs=2, metavar=("ROW", "OPTIMIZER"), help=argparse.SUPPRESS)
  parser.add_argument("--update-one", nargs=2, metavar=("ROW", "OPTIMIZER"),
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.optimizers is None:
    args.optimizers = ",".join(MAX_OPTIMIZERS if args.max_model else OPTIMIZERS)
  if args.one:
    print(json.dumps(compile_one(find_row(args.one[0]), args.one[1])))
    return
  if args.update_one:
    print(json.dumps(compile_update(ALL_ROWS[args.update_one[0]], args.update_one[1])))
    return
  if args.update_compile:
    update_compile_times(ALL_ROWS[args.update_compile], args.rounds)
    return
  for key in args.rows.split(","):
    if key not in ALL_ROWS:
      raise ValueError(f"--rows: unknown row {key!r}; choose from {list(ALL_ROWS)}")
  for name in args.optimizers.split(","):
    if name not in OPTIMIZERS:
      raise ValueError(f"--optimizers: unknown optimizer {name!r}; choose from {OPTIMIZERS}")
  results = _load(args.out)
  if args.report_only:
    refresh_ns(results)
    results["max_model"] = max_model_rows(results)
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)
    write_markdown(results, args.out.replace(".json", ".md"))
    return
  if args.reparse:
    reparse(results)
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)
    write_markdown(results, args.out.replace(".json", ".md"))
    return
  if args.dcn_update:
    for key in args.rows.split(","):
      if ALL_ROWS[key].num_slices > 1:
        add_optimizer_dcn(args.out, key, args.optimizers.split(","))
    write_markdown(_load(args.out), args.out.replace(".json", ".md"))
    return
  if args.layer_flops:
    for r in max_model_rows(results):
      if r["optimizer"] == "adamw" and r["slice"] in args.slices.split(","):
        point = ladder_row(r["slice"], r["preset"], r["per_chip_batch"], r["num_slices"])
        for layer_row in layer_rows(point):
          ensure(args.out, "layer_flops", layer_row.sized_key, "adamw", args.redo)
    return
  if args.max_model:
    for topology in args.slices.split(","):
      max_model(topology, args.optimizers.split(","), args.num_slices, args.out, args.redo)
    return
  for key in args.rows.split(","):
    for opt in args.optimizers.split(","):
      ensure(args.out, "rows", key, opt, args.redo)


def ensure(out: str, section: str, key: str, optimizer: str, redo: bool = False) -> dict:
  """The report of (row `key`, `optimizer`) in `out`'s `section`, compiled in a fresh process
  first unless it is there already; the JSON and the markdown are rewritten after each."""
  results = _load(out)
  if optimizer in results.get(section, {}).get(key, {}) and not redo:
    return results[section][key][optimizer]
  start = time.time()
  run = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", key, optimizer],
                       capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
  if run.returncode:
    report = {"fits": False, "error": run.stderr.strip().splitlines()[-1][:400]}
  else:
    report = json.loads(run.stdout.strip().splitlines()[-1])
  print(f"{key} {optimizer}: {time.time() - start:.0f} s, fits={report.get('fits')}, "
        f"total={report.get('total_GiB', float('nan')):.2f} GiB", flush=True)
  results = _load(out)  # another run may have added rows meanwhile
  results.setdefault(section, {}).setdefault(key, {})[optimizer] = report
  results["max_model"] = max_model_rows(results)
  with open(out, "w") as f:
    json.dump(results, f, indent=1)
  write_markdown(results, out.replace(".json", ".md"))
  return report


def _largest_batch(fits: Callable[[str, int], bool], preset: str, start: int) -> int:
  """The largest power-of-two per-chip batch (<= MAX_PER_CHIP) of `preset` that fits, 0 if
  none; searched from `start` up (doubling) or down (halving), so that it is bracketed."""
  batch = start
  if fits(preset, batch):
    while 2 * batch <= MAX_PER_CHIP and fits(preset, 2 * batch):
      batch *= 2
    return batch
  while batch > 1:
    batch //= 2
    if fits(preset, batch):
      return batch
  return 0


def largest_model(fits: Callable[[str, int], bool],
                  start: tuple[str, int] | None = None) -> tuple[str, int] | None:
  """`(preset, per-chip batch)`: the largest preset of LADDER that fits, at its largest batch.

  `start` (another optimizer's answer on the same slice) is where the search begins: larger
  presets are tried at batch 1, `start`'s preset from its batch.

  Example (a fake `fits`: a model fits while its size times the batch stays within 8):
    >>> size = {"llama-8b": 1, "llama-34b": 4, "llama-70b": 9}
    >>> largest_model(lambda preset, batch: size[preset] * batch <= 8)
    ('llama-34b', 2)
  """
  start_preset, start_batch = start or (LADDER[-1], 1)
  for preset in reversed(LADDER):
    batch = _largest_batch(fits, preset, start_batch if preset == start_preset else 1)
    if batch:
      return preset, batch
  return None


def max_model(topology: str, optimizers: list[str], num_slices: int, out: str,
              redo: bool = False) -> None:
  """`--max-model` on one slice: each optimizer's largest model and batch (AdamW's first, always:
  the others start from it, so every optimizer is also compiled at AdamW's largest point)."""
  start = None
  for opt in ["adamw"] + [o for o in optimizers if o != "adamw"]:
    def fits(preset: str, per_chip: int, opt: str = opt) -> bool:
      key = ladder_row(topology, preset, per_chip, num_slices).sized_key
      return bool(ensure(out, "ladder", key, opt, redo).get("fits"))
    found = largest_model(fits, start)
    if opt == "adamw":
      start = found
    print(f"{topology} x{num_slices} {opt}: largest {found}", flush=True)


if __name__ == "__main__":
  main()
