"""Cost of one optimizer update on a transformer-shaped parameter tree.

    python benchmarks/update_cost.py                 # 12 layers, d_model 768, d_ff 3072
    python benchmarks/update_cost.py --small         # 12 layers, d_model 256, d_ff 1024
    python benchmarks/update_cost.py --quick         # --small, 2 layers, 3 repeats
    python benchmarks/update_cost.py --mesh [--small]  # the same on an 8-device CPU mesh (FSDP)
    python benchmarks/update_cost.py --compile-sweep 6,12,24,48   # compile time vs depth
    python benchmarks/update_cost.py --mesh --memory-only   # peak temp MB per device, compile only

Parameter tree (nested dicts): ``embed/embedding`` [vocab, d],
``layers/<i>/attn/{q,k,v,o}/kernel`` [d, d], ``layers/<i>/mlp/{gate,up}/kernel``
[d, d_ff], ``layers/<i>/mlp/down/kernel`` [d_ff, d], ``layers/<i>/norm{1,2}/scale``
[d], ``final_norm/scale`` [d], ``lm_head/kernel`` [d, vocab] (untied). The
library's default labelling rule sends embed, lm_head and the norms to AdamW.

Compared in one process, timed interleaved: ``optax.adamw``,
``optax.contrib.muon`` (``consistent_rms=0.2``, dimension numbers marking only
the hidden matrices), ``optax_muon.muon``, ``optax_muon.muon_plus_plus``,
``optax_muon.muown``, ``optax_muon.normuon``, and ``optax_muon.muon`` twice more:
with the standard Newton–Schulz iteration on every matrix (``ns_method="standard"``,
optax's; the default ``"auto"`` runs Gram Newton–Schulz on the 1:4 MLP matrices)
and without its non-finite check (``skip_nonfinite=False``), all at lr 3e-4. Per optimizer:
compile time of the jitted ``update + apply_updates`` step (``lower(...).compile()``), the median
step time (params and state donated), its ratio to AdamW, and optimizer-state
bytes per parameter.

``--mesh``: ``jax_num_cpu_devices=8`` and a ('fsdp',) mesh of 8 (Auto axis
type), set with ``jax.set_mesh`` for every optimizer alike; every parameter,
gradient and state leaf is sharded on its largest axis divisible by 8
(replicated if none), the state via ``jax.jit(tx.init, out_shardings=...)``.
``GFLOP/device`` is the compiled step's per-device flop count (XLA's cost
analysis): with whole matrices per device it is about total/8; when every
device repeats the orthogonalization it is about the total. ``peak temp MB`` is
XLA's memory analysis of the compiled step: the temporary buffers it needs
beyond its arguments and outputs (per device on the mesh). It depends on the
order XLA schedules the step in: ``peak temp MB (memory scheduler)`` compiles
every step again in a fresh process with XLA's memory-minimizing CPU scheduler
(``--xla_cpu_enable_concurrency_optimized_scheduler=false``) instead of the
default, which schedules for concurrency.

``--compile-sweep L1,L2,...``: d_model 128, d_ff 512, vocab 256, unstacked
layers; per depth and optimizer, the time to compile one jitted
``update + apply_updates`` and the compiled HLO's instruction count. Each
compile runs in a fresh process (a training script's first compile),
interleaved (round, depth, optimizer); the fastest of ``--repeats`` (default 2)
rounds is reported, next to ``p − η·g`` (``optax.sgd``), the floor every
per-leaf update pays.

Timings are refused (exit 3) when the load average exceeds the core count,
before the run or before writing, unless ``--allow-load``.
"""

from __future__ import annotations

import sys

if "--mesh" in sys.argv:  # before any other jax use
  import jax

  jax.config.update("jax_num_cpu_devices", 8)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402,F811
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import _common  # noqa: E402
import optax_muon  # noqa: E402

LR = 3e-4
MESH_SIZE = 8


def param_shapes(layers: int, d: int, d_ff: int, vocab: int) -> dict:
  def layer():
    return {
        "attn": {k: {"kernel": (d, d)} for k in ("q", "k", "v", "o")},
        "mlp": {"gate": {"kernel": (d, d_ff)}, "up": {"kernel": (d, d_ff)},
                "down": {"kernel": (d_ff, d)}},
        "norm1": {"scale": (d,)},
        "norm2": {"scale": (d,)},
    }

  return {
      "embed": {"embedding": (vocab, d)},
      "layers": {str(i): layer() for i in range(layers)},
      "final_norm": {"scale": (d,)},
      "lm_head": {"kernel": (d, vocab)},
  }


def is_shape(x):
  return isinstance(x, tuple) and all(isinstance(i, int) for i in x)


def contrib_dims(shapes: dict) -> dict:
  """optax.contrib.muon dimension numbers: only the hidden (layer) matrices."""
  def rule(path, shape):
    keys = [getattr(k, "key", str(k)) for k in path]
    if keys[0] == "layers" and len(shape) == 2:
      return optax.contrib.MuonDimensionNumbers(reduction_axis=0, output_axis=1)
    return None

  return jax.tree_util.tree_map_with_path(rule, shapes, is_leaf=is_shape)


def optimizers(shapes: dict) -> dict[str, optax.GradientTransformation]:
  return {
      "adamw": optax.adamw(LR),
      "optax.contrib.muon": optax.contrib.muon(
          LR, consistent_rms=0.2, muon_weight_dimension_numbers=contrib_dims(shapes)),
      "optax_muon.muon": optax_muon.muon(LR),
      "optax_muon.muon_plus_plus": optax_muon.muon_plus_plus(LR),
      "optax_muon.muown": optax_muon.muown(LR),
      "optax_muon.normuon": optax_muon.normuon(LR),
  }


def cost_optimizers(shapes: dict) -> dict[str, optax.GradientTransformation]:
  """The timed set: ``optimizers``, then Muon with the standard iteration on every
  matrix and Muon without its non-finite check: what Gram Newton–Schulz saves and
  what the check costs, side by side."""
  return {**optimizers(shapes),
          "optax_muon.muon (ns_method=standard)": optax_muon.muon(LR, ns_method="standard"),
          "optax_muon.muon (skip_nonfinite=False)": optax_muon.muon(LR, skip_nonfinite=False)}


def fsdp_spec(shape: tuple[int, ...]) -> P:
  """Shard the largest axis divisible by the mesh size; replicate otherwise."""
  best = None
  for ax, size in enumerate(shape):
    if size % MESH_SIZE == 0 and (best is None or size > shape[best]):
      best = ax
  if best is None:
    return P()
  return P(*[("fsdp" if ax == best else None) for ax in range(len(shape))])


def update_step(tx: optax.GradientTransformation):
  """The measured step: ``tx.update`` and ``optax.apply_updates`` (params, state, grads)."""
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  return step


class Setup:
  """The parameter tree, its placement and the compiled step of one optimizer (one process)."""

  def __init__(self, layers: int, d: int, d_ff: int, vocab: int, mesh: bool):
    self.shapes = param_shapes(layers, d, d_ff, vocab)
    self.shape_leaves = jax.tree.leaves(self.shapes, is_leaf=is_shape)
    self.n_params = sum(math.prod(s) for s in self.shape_leaves)
    self.mesh = (jax.make_mesh((MESH_SIZE,), ("fsdp",),
                               axis_types=(jax.sharding.AxisType.Auto,)) if mesh else None)
    if self.mesh is not None:
      self.sharding_of = lambda shape: NamedSharding(self.mesh, fsdp_spec(tuple(shape)))
    else:
      dev = jax.devices()[0]
      self.sharding_of = lambda shape: jax.sharding.SingleDeviceSharding(dev)
    self.p_shard = jax.tree.map(self.sharding_of, self.shapes, is_leaf=is_shape)

  def context(self):
    return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

  def make_tree(self, seed: int, scale: float):
    def make():
      keys = iter(jax.random.split(jax.random.key(seed), len(self.shape_leaves)))
      return jax.tree.map(lambda s: scale * jax.random.normal(next(keys), s, jnp.float32),
                          self.shapes, is_leaf=is_shape)
    return jax.jit(make, out_shardings=self.p_shard)()

  def compile(self, tx: optax.GradientTransformation, grads) -> dict:
    """The jitted ``update + apply_updates`` step, compiled, with fresh params, state and costs."""
    params = self.make_tree(0, 0.02)
    state_shapes = jax.eval_shape(tx.init, params)
    s_shard = jax.tree.map(lambda s: self.sharding_of(s.shape), state_shapes)
    state = jax.jit(tx.init, out_shardings=s_shard)(params)

    jitted = jax.jit(update_step(tx), in_shardings=(self.p_shard, s_shard, self.p_shard),
                     out_shardings=(self.p_shard, s_shard), donate_argnums=(0, 1))
    t0 = time.perf_counter()
    lowered = jitted.lower(params, state, grads)
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    state_leaves = jax.tree.leaves(state)
    cost = compiled.cost_analysis() or {}
    memory = compiled.memory_analysis()
    return {"compiled": compiled, "carry": [params, state], "lower_s": lower_s,
            "compile_s": compile_s, "state_bytes": sum(x.nbytes for x in state_leaves),
            "state_leaves": len(state_leaves),
            "temp_mb": getattr(memory, "temp_size_in_bytes", float("nan")) / 2**20,
            "gflop_per_device": float(cost.get("flops", float("nan"))) / 1e9}


# XLA's CPU backend schedules for concurrency by default; this flag picks its
# memory-minimizing scheduler instead. Peak temporary memory depends on the schedule.
MEMORY_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def temp_mb_under_memory_scheduler(argv: list[str]) -> dict[str, float]:
  """Peak temporary MB per optimizer, compiled in a fresh process under XLA's memory scheduler."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + MEMORY_SCHEDULER_FLAG).strip()
  out = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--memory-only"],
                       check=True, capture_output=True, text=True, env=env)
  return json.loads(out.stdout.strip().splitlines()[-1])


def newton_schulz_balance(grads) -> dict:
  """Newton–Schulz alone on the mesh: per-device flops and collectives per extra step.

  Compiled twice (5 and 6 Jordan steps) with whole matrices per device and with
  placement left to the compiler (``mesh=False``); the difference in collective
  ops between the two step counts is the number of collectives inside each
  iteration.
  """
  dims = optax_muon.resolve_dimension_numbers(None, grads, optax_muon.default_matrix_rule)
  spec = jax.tree.unflatten(jax.tree.structure(grads), dims)

  def compiled(mesh_arg, tree, steps=5):
    tx = optax_muon.newton_schulz("jordan", steps, dimension_numbers=spec, mesh=mesh_arg)
    return jax.jit(lambda g: tx.update(g, ())[0]).lower(tree).compile()

  def collectives(c):
    text = c.as_text()
    return sum(text.count(f" {op}(") + text.count(f" {op}-start(") for op in
               ("all-gather", "all-to-all", "collective-permute", "all-reduce", "reduce-scatter"))

  replicated = jax.tree.map(lambda g: jax.ShapeDtypeStruct(g.shape, g.dtype), grads)
  total = compiled(False, replicated).cost_analysis()["flops"] / 1e9  # every device does all
  placed, compiler = compiled(None, grads), compiled(False, grads)
  per_device = placed.cost_analysis()["flops"] / 1e9
  return {"total_gflop": total, "per_device_gflop": per_device,
          "imbalance": per_device / (total / MESH_SIZE),
          "compiler_gflop": compiler.cost_analysis()["flops"] / 1e9,
          "placed_collectives_per_step":
              collectives(compiled(None, grads, 6)) - collectives(placed),
          "compiler_collectives_per_step":
              collectives(compiled(False, grads, 6)) - collectives(compiler)}


def _hlo_instructions(compiled) -> int:
  return sum(1 for line in compiled.as_text().splitlines() if " = " in line)


SWEEP_FLOOR = "p − η·g (optax.sgd)"
STACK_FLOOR = "p − η·g on shape stacks (matrix_partition of optax.sgd)"


def sweep_optimizers(shapes: dict) -> dict[str, optax.GradientTransformation]:
  """The compile sweep's rows: the floors (any per-leaf update; the same update
  through our stack-by-shape plumbing, with nothing else), then the timed optimizers."""
  return {SWEEP_FLOOR: optax.sgd(LR),
          STACK_FLOOR: optax_muon.matrix_partition(optax.sgd(LR), optax.sgd(LR),
                                                   stack_others=True),
          **optimizers(shapes)}


def compile_one(name: str, layers: int) -> dict[str, float]:
  """Compile time and HLO size of one optimizer's update at one depth (this process)."""
  shapes = param_shapes(layers, 128, 512, 256)
  params = jax.tree.map(lambda s: jnp.full(s, 0.01, jnp.float32), shapes, is_leaf=is_shape)
  tx = sweep_optimizers(shapes)[name]
  state = jax.eval_shape(tx.init, params)

  lowered = jax.jit(update_step(tx), donate_argnums=(0, 1)).lower(params, state, params)
  t0 = time.perf_counter()
  compiled = lowered.compile()
  return {"compile_s": time.perf_counter() - t0, "hlo_instructions": _hlo_instructions(compiled)}


def compile_sweep(layer_counts: list[int], repeats: int, allow_load: bool) -> None:
  """Compile time and HLO size of one update (+ apply) against depth, side by side.

  Every compile runs in a fresh Python process (what a training script pays for
  its first step; no caches or allocator state from earlier compiles), in
  interleaved order: round, depth, optimizer. Reported: the fastest of
  ``repeats`` rounds.
  """
  load_start = _common.check_load(allow_load, "at the start")
  info = _common.machine_info()
  names = list(sweep_optimizers(param_shapes(1, 128, 512, 256)))
  samples: dict[str, dict[str, list[dict[str, float]]]] = {}
  for _ in range(repeats):
    for layers in layer_counts:
      for name in names:
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--compile-one", name, str(layers)],
            check=True, capture_output=True, text=True)
        sample = json.loads(out.stdout.strip().splitlines()[-1])
        samples.setdefault(name, {}).setdefault(str(layers), []).append(sample)
        print(f"{layers} layers {name}: compile {sample['compile_s']:.2f}s, "
              f"{sample['hlo_instructions']} HLO instructions", flush=True)
  results = {name: {l: {"compile_s": min(x["compile_s"] for x in xs),
                        "compile_s_samples": [x["compile_s"] for x in xs],
                        "hlo_instructions": xs[0]["hlo_instructions"]}
                    for l, xs in by_depth.items()} for name, by_depth in samples.items()}
  load_end = _common.check_load(allow_load, "at the end")
  command = ("python benchmarks/update_cost.py --compile-sweep " + ",".join(map(str, layer_counts))
             + ("" if repeats == 2 else f" --repeats {repeats}"))
  payload = {
      "machine": info, "command": command, "load_start": load_start, "loadavg_at_end": load_end,
      "config": {"layers": layer_counts, "d_model": 128, "d_ff": 512, "vocab": 256,
                 "repeats": repeats, "fresh_process_per_compile": True},
      "results": results}
  _common.write_report("update_cost_compile", payload, compile_markdown)


def compile_markdown(payload: dict) -> str:
  """results/update_cost_compile.md from its results JSON."""
  results, layer_counts = payload["results"], payload["config"]["layers"]
  repeats = payload["config"]["repeats"]
  load_start = _common.as_tuple(payload["load_start"])
  load_end = _common.as_tuple(payload["loadavg_at_end"])
  base = results["optax.contrib.muon"]
  floor = results[SWEEP_FLOOR]
  lo, hi = str(layer_counts[0]), str(layer_counts[-1])
  mid = "12" if "12" in base and lo != "12" else lo
  headers = (["optimizer"] + [f"compile s, {l} layers" for l in layer_counts]
             + [f"× optax, {l}" for l in layer_counts]
             + [f"{hi}/{mid} layers", f"growth {mid}→{hi} s", f"HLO instr., {lo}",
                f"HLO instr., {hi}"])
  rows = [[name] + [r[str(l)]["compile_s"] for l in layer_counts]
          + [r[str(l)]["compile_s"] / base[str(l)]["compile_s"] for l in layer_counts]
          + [r[hi]["compile_s"] / r[mid]["compile_s"], r[hi]["compile_s"] - r[mid]["compile_s"],
             r[lo]["hlo_instructions"], r[hi]["hlo_instructions"]]
          for name, r in results.items()]
  notes = [
      "Tree: d_model 128, d_ff 512, vocab 256, unstacked layers (7 hidden matrices and 2 "
      "norms per layer), float32; step = jitted `tx.update` + `optax.apply_updates`.",
      f"`compile s` = `lowered.compile()` wall time (lowering excluded), each in a fresh Python "
      f"process, fastest of {repeats} interleaved rounds (all samples in the JSON); "
      "`HLO instr.` = instructions in the compiled module's text.",
      f"`{SWEEP_FLOOR}` is the floor every per-leaf update pays: one fused "
      "elementwise kernel per parameter; its growth with depth is XLA's own per-leaf cost.",
      f"`{STACK_FLOOR}` is the same update through our plumbing and nothing else: every "
      "leaf concatenated into its shape group's stack, and sliced out (at a start row kept "
      "in the state) into a fused slice-and-apply kernel: the floor of our optimizers.",
      f"Load average at start {load_start}, at the end {load_end} on "
      f"{payload['machine']['cpu_count']} cores.",
  ]
  return (_common.md_header("Compile time of one update against depth", payload["machine"],
                            payload["command"], notes) + "\n" + _common.md_table(headers, rows))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--small", action="store_true", help="d_model 256, d_ff 1024")
  p.add_argument("--quick", action="store_true", help="--small with 2 layers and 3 repeats")
  p.add_argument("--mesh", action="store_true", help="8-device CPU mesh, FSDP sharding")
  p.add_argument("--layers", type=int, default=None, help="number of layers (default 12)")
  p.add_argument("--vocab", type=int, default=8192)
  p.add_argument("--repeats", type=int, default=None, help="interleaved timed rounds")
  p.add_argument("--out", default=None, help="basename under benchmarks/results/")
  p.add_argument("--compile-sweep", default=None,
                 help="comma-separated layer counts: compile time and HLO size vs depth")
  p.add_argument("--memory-only", action="store_true",
                 help="compile only: print each optimizer's peak temp MB as JSON (no timing, "
                      "no results written; set XLA_FLAGS to pick the scheduler)")
  p.add_argument("--compile-one", nargs=2, default=None, metavar=("NAME", "LAYERS"),
                 help=argparse.SUPPRESS)  # one sample of --compile-sweep, in its own process
  _common.add_load_argument(p)
  p.add_argument("--report-only", action="store_true",
                 help="measure nothing: rebuild the report from its results JSON")
  args = p.parse_args(argv)

  small = args.small or args.quick
  d, d_ff = (256, 1024) if small else (768, 3072)
  layers = args.layers if args.layers is not None else (2 if args.quick else 12)
  repeats = args.repeats if args.repeats is not None else (3 if (args.quick or not small) else 7)
  out_name = args.out or ("update_cost_mesh" if args.mesh else "update_cost")
  command = "python benchmarks/update_cost.py" + "".join(
      f" {a}" for a in (sys.argv[1:] if argv is None else argv))

  if args.report_only:
    name = "update_cost_compile" if args.compile_sweep else out_name
    payload = json.loads((_common.RESULTS_DIR / f"{name}.json").read_text())
    render = compile_markdown if args.compile_sweep else markdown
    _common.write_text(f"{name}.md", render(payload))
    return None
  if args.compile_one:
    print(json.dumps(compile_one(args.compile_one[0], int(args.compile_one[1]))))
    return None
  if args.compile_sweep:
    return compile_sweep([int(x) for x in args.compile_sweep.split(",")],
                         args.repeats or 2, args.allow_load)
  if args.memory_only:
    # One process per XLA flag setting: the scheduler is chosen when the backend starts.
    setup = Setup(layers, d, d_ff, args.vocab, args.mesh)
    grads = setup.make_tree(1, 1e-3)
    with setup.context():
      print(json.dumps({name: setup.compile(tx, grads)["temp_mb"]
                        for name, tx in cost_optimizers(setup.shapes).items()}))
    return None
  load_start = _common.check_load(args.allow_load, "at the start")
  info = _common.machine_info()
  setup = Setup(layers, d, d_ff, args.vocab, args.mesh)
  shapes, n_params, p_shard = setup.shapes, setup.n_params, setup.p_shard
  grads = setup.make_tree(1, 1e-3)

  txs = cost_optimizers(shapes)
  runs = {}
  context = setup.context()
  context.__enter__()
  for name, tx in txs.items():
    runs[name] = setup.compile(tx, grads)
    print(f"{name}: lower {runs[name]['lower_s']:.1f}s compile {runs[name]['compile_s']:.1f}s, "
          f"state {runs[name]['state_bytes'] / n_params:.2f} B/param", flush=True)

  def caller(r):
    def call():
      r["carry"] = list(r["compiled"](r["carry"][0], r["carry"][1], grads))
      return r["carry"]
    return call

  fns = {name: caller(r) for name, r in runs.items()}
  t0 = time.perf_counter()
  samples = _common.interleaved(fns, repeats=repeats, warmup=1)
  bench_s = time.perf_counter() - t0
  finite = {name: bool(all(jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(r["carry"][0])))
            for name, r in runs.items()}

  ns_balance = newton_schulz_balance(grads) if args.mesh else None
  load_end = _common.check_load(args.allow_load, "at the end")
  context.__exit__(None, None, None)
  for r in runs.values():  # free this process's buffers before the next one compiles
    r.pop("carry"), r.pop("compiled")
  memory_scheduler_mb = temp_mb_under_memory_scheduler(
      ["--layers", str(layers), "--vocab", str(args.vocab)] + (["--small"] if small else [])
      + (["--mesh"] if args.mesh else []))
  base = _common.summarize(samples["adamw"])["median_s"]
  results = {}
  for name, r in runs.items():
    st = _common.summarize(samples[name])
    results[name] = {
        **st,
        "ratio_to_adamw": st["median_s"] / base,
        "ratio_to_adamw_min": st["min_s"] / _common.summarize(samples["adamw"])["min_s"],
        "lower_s": r["lower_s"],
        "compile_s": r["compile_s"],
        "state_bytes": r["state_bytes"],
        "state_bytes_per_param": r["state_bytes"] / n_params,
        "state_leaves": r["state_leaves"],
        "gflop_per_device": r["gflop_per_device"],
        "temp_mb": r["temp_mb"],
        "temp_mb_memory_scheduler": memory_scheduler_mb[name],
        "params_finite_after": finite[name],
        "samples_s": samples[name],
    }
    print(f"{name}: median {st['median_s'] * 1e3:.1f} ms ({st['median_s'] / base:.2f}x adamw)",
          flush=True)

  config = {"layers": layers, "d_model": d, "d_ff": d_ff, "vocab": args.vocab,
            "n_params": n_params, "mesh": args.mesh, "mesh_size": MESH_SIZE if args.mesh else 1,
            "repeats": repeats, "learning_rate": LR, "benchmark_wall_s": bench_s,
            "newton_schulz_balance": ns_balance}
  payload = {"machine": info, "command": command, "config": config, "results": results,
             "load_start": load_start, "load_end": load_end}
  _common.write_report(out_name, payload, markdown)


def markdown(payload: dict) -> str:
  """results/update_cost[_mesh].md from its results JSON."""
  results, config = payload["results"], payload["config"]
  layers, d, d_ff, vocab = config["layers"], config["d_model"], config["d_ff"], config["vocab"]
  n_params, repeats, mesh = config["n_params"], config["repeats"], config["mesh"]
  ns_balance = config["newton_schulz_balance"]
  load_start = _common.as_tuple(payload["load_start"])
  load_end = _common.as_tuple(payload["load_end"])
  headers = ["optimizer", "median step ms", "min ms", "× AdamW (median)", "× AdamW (min)",
             "× optax.contrib (median)", "compile s", "state B/param", "peak temp MB",
             "peak temp MB (memory scheduler)", "GFLOP/device"]
  optax_median = results["optax.contrib.muon"]["median_s"]
  rows = [[k, v["median_s"] * 1e3, v["min_s"] * 1e3, v["ratio_to_adamw"], v["ratio_to_adamw_min"],
           v["median_s"] / optax_median, v["compile_s"], v["state_bytes_per_param"],
           v["temp_mb"], v["temp_mb_memory_scheduler"], v["gflop_per_device"]]
          for k, v in results.items()]
  notes = [
      f"Tree: {layers} layers, d_model {d}, d_ff {d_ff}, vocab {vocab} (embed + untied "
      f"lm_head), {n_params / 1e6:.1f}M float32 params; embed/lm_head/norms → AdamW.",
      "Step = jitted `tx.update` + `optax.apply_updates`, params and state donated; "
      f"{repeats} interleaved rounds after one warm-up round (median and min per optimizer).",
      "`peak temp MB`: XLA's memory analysis (temporaries beyond arguments and outputs, per "
      "device) with the default CPU scheduler; `(memory scheduler)`: the same step compiled in a "
      f"fresh process with `{MEMORY_SCHEDULER_FLAG}` (XLA's memory-minimizing scheduler).",
      "`compile s` = `jax.jit(step).lower(...).compile()` (compile only; lowering in the JSON). "
      "`state B/param` = bytes of all optimizer-state leaves / number of parameters.",
      "optax.contrib.muon: `consistent_rms=0.2`, dimension numbers only on the layer "
      "matrices (None for embed, lm_head, norms); other arguments default.",
      ("Mesh: 8 CPU devices (`jax_num_cpu_devices=8`) on this machine's cores, mesh ('fsdp',) "
       "Auto, set with `jax.set_mesh` for all optimizers; params/grads/state sharded on "
       "their largest axis divisible by 8."
       if mesh else "Single CPU device."),
      f"Load average (1/5/15 min) at start {load_start}, at the end {load_end} on "
      f"{payload['machine']['cpu_count']} cores; ratios are the comparable numbers.",
  ]
  if ns_balance:
    notes.append(
        f"Newton–Schulz alone (Jordan ×5 on the hidden matrices): {ns_balance['total_gflop']:.2f} "
        f"GFLOP on one device; on the mesh {ns_balance['per_device_gflop']:.2f} GFLOP per device "
        f"= {ns_balance['imbalance']:.3f}× the ideal total/8 (padding of groups to a multiple "
        f"of 8); left to the compiler (`mesh=False`): {ns_balance['compiler_gflop']:.2f} per device. "
        f"Collective ops added by one more Newton–Schulz step: "
        f"{ns_balance['placed_collectives_per_step']} placed, "
        f"{ns_balance['compiler_collectives_per_step']} left to the compiler.")
  title = "Optimizer update cost" + (" (8-device CPU mesh, FSDP)" if mesh else "")
  return (_common.md_header(title, payload["machine"], payload["command"], notes) + "\n"
          + _common.md_table(headers, rows))


if __name__ == "__main__":
  main()
