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
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    # The pod script's config before this change (issue 29's first table), now with the fixes.
    Row("v5p-128", "1b", 256, 2048, (1, -1, 1)),
)}
ALL_ROWS = {**ROWS, **ABLATIONS}


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
  return {"optimizer": optimizer, "compile_s": seconds, "loadavg": list(os.getloadavg()),
          "hlo_instructions": compiled.as_text().count("\n  ")}


def compile_one(row: Row, optimizer: str) -> dict:
  """One (row, optimizer) compiled in this process (`--one`): the `train.aot` report."""
  from train import aot  # pylint: disable=g-import-not-at-top  # sets libtpu's env first
  config = row_config(row, optimizer)
  try:
    os.makedirs(HLO_DIR, exist_ok=True)
    report = aot.compile_report(config, row.topology, row.num_slices, make_tx=_make_tx(optimizer),
                                hlo_path=hlo_file(row.key, optimizer))
  except aot.DoesNotFit as e:
    report = {"fits": False, "error": str(e)}
  report["optimizer"] = optimizer
  report["commit"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip()
  if "chips" in report:
    report["ns"] = ns_arithmetic(row.preset, report["chips"] // report.get("num_slices", 1))
    if optimizer == "optax.contrib.muon":  # GSPMD places its Newton–Schulz, not our plan
      report["ns"]["ns_ratio_vs_ideal"] = None
  return report


def ns_arithmetic(preset: str, chips: int) -> dict:
  """Newton–Schulz balance and the 5·d/B estimate, from the preset's shapes (arithmetic).

  Hidden matrices are bucketed by shape, a matrix and its transpose together (`[d, d_ff]` and
  `[d_ff, d]`: an 8B model's 224 matrices in 3 buckets), and placed by the library's own plan
  (`optax_muon.matrices.balance`, what `newton_schulz` runs on a mesh). `chips`: those one
  slice holds (Newton–Schulz stays inside a slice). `ns_ratio_vs_ideal` is the busiest chip's
  flops over the ideal (total / chips); `ns_ratio_padded`, the same for the earlier plan that
  padded each bucket to a multiple of the chips.
  """
  import models  # pylint: disable=g-import-not-at-top
  from optax_muon import matrices  # pylint: disable=g-import-not-at-top
  cfg = models.get_config(preset)
  d, h, g, k, f = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff
  shapes: dict[tuple[int, int], int] = {}
  for shape, count in (((d, h * k), 2 * cfg.n_layers), ((d, g * k), 2 * cfg.n_layers),
                       ((d, f), 3 * cfg.n_layers)):  # q and o; k and v; gate, up and down
    shape = tuple(sorted(shape))
    shapes[shape] = shapes.get(shape, 0) + count
  sizes = list(shapes.values())
  costs = [matrices.matrix_cost(*s) for s in shapes]
  plan = matrices.balance(sizes, costs, chips)
  total = sum(n * c for n, c in zip(sizes, costs))
  padded = sum(math.ceil(n / chips) * c for n, c in zip(sizes, costs))
  ns_flops = NS_STEPS * 2 * total  # matrix_cost is half the flops of one iteration
  return {"ns_groups": {f"{m}x{n}": c for (m, n), c in shapes.items()},
          "ns_matrices": sum(sizes), "ns_ratio_vs_ideal": plan.imbalance,
          "ns_ratio_padded": padded / (total / chips),
          "ns_flops_total": ns_flops, "ns_flops_per_chip_ideal": ns_flops / chips,
          "ns_flops_per_chip": ns_flops / chips * plan.imbalance}


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
           "chips of one slice), arithmetic from the shapes and the library's placement plan "
           "(`NS padded`: the earlier plan, each shape padded to a multiple of the chips; "
           "optax.contrib.muon's NS is placed by GSPMD); `DCN`: bytes per chip sent across "
           "slices, and how many of those transfers are not the gradient all-reduce; `5d/B` is Essential AI's estimate of Muon's extra flops "
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
             f"{r['dcn_other_than_all_reduce']} | " if "dcn_transfers" in r else "| | ")
          + f"{r['compile_s']:.0f} | "
          f"{r['loadavg'][0]:.1f} |")
  versions = {(r.get("jax"), r.get("libtpu")) for row in results["rows"].values()
              for r in row.values() if r.get("jax")}
  lines += ["", "Versions: " + ", ".join(f"jax {j}, libtpu {t}" for j, t in sorted(versions)), ""]
  lines += ["## Against AdamW on the same row", "",
            "Each Muon variant's total HBM per chip minus AdamW's (negative: it uses less), its "
            "temporaries minus AdamW's, and the second moment it does not keep (4 bytes x hidden "
            "matrix params / chips), from rows compiled at the same commit as their AdamW row.",
            "", "| row | optimizer | commit | total - AdamW GiB | temp - AdamW GiB "
            "| second moment GiB | DCN bytes / AdamW's |", "|---|---|---|---|---|---|---|"]
  for key, row in sorted(results["rows"].items()):
    adamw = row.get("adamw", {})
    if "total_GiB" not in adamw:
      continue
    for opt in OPTIMIZERS[1:]:
      r = row.get(opt, {})
      if "total_GiB" not in r or r.get("commit") != adamw.get("commit"):
        continue
      hidden = sum(c * math.prod(int(d) for d in shape.split("x"))
                   for shape, c in r.get("ns", {}).get("ns_groups", {}).items())
      second = f"{4 * hidden / r['chips'] * r.get('num_slices', 1) / 2**30:.3f}" if hidden else ""
      dcn = ""
      if "dcn_transfers" in r and "dcn_transfers" in adamw:
        ours, base = (sum(v["bytes"] for v in x["dcn_transfers"].values()) for x in (r, adamw))
        dcn = f"{ours / base:.3f}" if base else ""
      lines.append(f"| {key} | {opt} | {r.get('commit')} | "
                   f"{r['total_GiB'] - adamw['total_GiB']:+.3f} | "
                   f"{r['temp_GiB'] - adamw['temp_GiB']:+.3f} | {second} | {dcn} |")
  lines.append("")
  with open(path, "w") as f:
    f.write("\n".join(lines))


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
  parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
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
  parser.add_argument("--one", nargs=2, metavar=("ROW", "OPTIMIZER"), help=argparse.SUPPRESS)
  parser.add_argument("--update-one", nargs=2, metavar=("ROW", "OPTIMIZER"),
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    print(json.dumps(compile_one(ALL_ROWS[args.one[0]], args.one[1])))
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
    write_markdown(results, args.out.replace(".json", ".md"))
    return
  if args.reparse:
    reparse(results)
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)
    write_markdown(results, args.out.replace(".json", ".md"))
    return
  for key in args.rows.split(","):
    for opt in args.optimizers.split(","):
      if opt in results["rows"].get(key, {}) and not args.redo:
        continue
      start = time.time()
      out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", key, opt],
                           capture_output=True, text=True, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=ROOT))
      if out.returncode:
        report = {"fits": False, "error": out.stderr.strip().splitlines()[-1][:400]}
      else:
        report = json.loads(out.stdout.strip().splitlines()[-1])
      print(f"{key} {opt}: {time.time() - start:.0f} s, fits={report.get('fits')}, "
            f"total={report.get('total_GiB', float('nan')):.2f} GiB", flush=True)
      results = _load(args.out)  # another run may have added rows meanwhile
      results["rows"].setdefault(key, {})[opt] = report
      with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
      write_markdown(results, args.out.replace(".json", ".md"))


if __name__ == "__main__":
  main()
