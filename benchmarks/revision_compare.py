"""This checkout's optimizers against an earlier revision's, side by side in one run.

    python benchmarks/revision_compare.py --base d732c00      # the last release before grouping

The ``optax_muon`` package of ``--base`` is exported with ``git archive`` into a
temporary directory; worker processes alternate between that copy and this
checkout (A B A B ...), each timing, after a warm-up, one jitted
``update + apply_updates`` of ``muon``, ``muon_plus_plus`` and ``muown`` on the
12-layer d_model 256 tree of ``update_cost.py --small`` and one Newton–Schulz
(Jordan ×5, f32) at 1024×4096 and 4096×1024. Ratios (this / base) of the
medians over rounds are what the report gives; compile times come along.
Refused above load = cores unless ``--allow-load``.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

WORKER = r'''
import json, sys, time
import jax, jax.numpy as jnp, optax
sys.path.insert(0, sys.argv[1])
import optax_muon
from update_cost import param_shapes, is_shape

def timed(fn, *args, n):
  out = fn(*args); jax.block_until_ready(out)
  ts = []
  for _ in range(n):
    t = time.perf_counter(); out = fn(*args); jax.block_until_ready(out)
    ts.append(time.perf_counter() - t)
  return sorted(ts)[len(ts) // 2]

res = {}
shapes = param_shapes(12, 256, 1024, 8192)
params = jax.tree.map(lambda s: 0.02 * jnp.ones(s, jnp.float32), shapes, is_leaf=is_shape)
grads = jax.tree.map(lambda s: 1e-3 * jnp.ones(s, jnp.float32), shapes, is_leaf=is_shape)
for name in ("muon", "muon_plus_plus", "muown"):
  tx = getattr(optax_muon, name)(3e-4)
  state = tx.init(params)
  step = lambda p, s, g, tx=tx: (lambda u, s: (optax.apply_updates(p, u), s))(*tx.update(g, s, p))
  t0 = time.perf_counter(); c = jax.jit(step).lower(params, state, grads).compile()
  res[name + "/compile_s"] = time.perf_counter() - t0
  res[name + "/step_s"] = timed(c, params, state, grads, n=5)
for m, n in ((1024, 4096), (4096, 1024)):
  x = jax.random.normal(jax.random.key(0), (m, n), jnp.float32)
  f = jax.jit(lambda x: optax_muon.orthogonalize(x, steps=5))
  res[f"ns_{m}x{n}_s"] = timed(f, x, n=5)
print("RESULT " + json.dumps(res))
'''


def _export(rev: str, into: pathlib.Path) -> pathlib.Path:
  archive = into / "base.tar"
  subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "optax_muon"],
                 check=True)
  with tarfile.open(archive) as t:
    t.extractall(into / "base", filter="data")
  return into / "base"


def _run(package_dir: pathlib.Path, worker: pathlib.Path) -> dict:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(package_dir), str(ROOT / "benchmarks")]))
  out = subprocess.run([sys.executable, str(worker), str(package_dir)], env=env, check=True,
                       capture_output=True, text=True, cwd=tempfile.gettempdir())
  line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
  return json.loads(line[len("RESULT "):])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--base", default="d732c00", help="git revision to compare against")
  p.add_argument("--rounds", type=int, default=3)
  _common.add_load_argument(p)
  args = p.parse_args(argv)
  load_start = _common.check_load(args.allow_load, "at the start")
  info = _common.machine_info()
  runs = {"base": [], "this": []}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    base = _export(args.base, tmp)
    worker = tmp / "worker.py"
    worker.write_text(WORKER)
    for r in range(args.rounds):
      for label, pkg in (("base", base), ("this", ROOT)):
        runs[label].append(_run(pkg, worker))
        print(f"round {r} {label}: {runs[label][-1]}", flush=True)
  load_end = _common.check_load(args.allow_load, "at the end")
  keys = sorted(runs["this"][0])
  med = {label: {k: statistics.median(x[k] for x in rs) for k in keys}
         for label, rs in runs.items()}
  rows = [[k, med["base"][k], med["this"][k], med["this"][k] / med["base"][k]] for k in keys]
  command = f"python benchmarks/revision_compare.py --base {args.base} --rounds {args.rounds}"
  _common.write_json("revision_compare.json", {"machine": info, "command": command,
                                               "loadavg_at_end": load_end, "runs": runs,
                                               "medians": med})
  notes = [f"Base: `{args.base}`; this: the working tree. {args.rounds} rounds, alternating "
           "processes; medians over rounds of each process's median of 5 timed calls.",
           "Update: 12 layers, d_model 256, d_ff 1024, vocab 8192, one device; NS: Jordan ×5, "
           "f32, `optax_muon.orthogonalize`.",
           f"Load average at the start {load_start}, at the end {load_end} on "
           f"{os.cpu_count()} cores."]
  md = (_common.md_header(f"This checkout vs {args.base}", info, command, notes) + "\n"
        + _common.md_table(["quantity", "base", "this", "this / base"], rows))
  _common.write_text("revision_compare.md", md)
  print(md)


if __name__ == "__main__":
  main()
