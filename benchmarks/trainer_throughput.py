"""Trainer throughput and the optimizer's share of a train step.

    python benchmarks/trainer_throughput.py             # default model (cpu192), batch 16 x 128
    python benchmarks/trainer_throughput.py --quick     # tiny model, 3 repeats
    python benchmarks/trainer_throughput.py --preset small --batch 8 --seq 256
    python benchmarks/trainer_throughput.py --preset tiny --model d_model=64,n_layers=2 --out NAME

For AdamW, Muon, Muon++ and Muown (built exactly as the trainer builds them,
``train.optimizer.make_optimizer``), on the same model, params and token batch,
timed interleaved in one process:

- ``step``: the trainer's jitted full train step (``train.step.jit_steps``:
  forward, backward, grad clip, optimizer update, apply; state donated);
- ``fwd+bwd``: ``jax.value_and_grad`` of the same loss alone (shared by all);
- ``update``: the optimizer update + apply alone, on a fixed gradient.

Reported per optimizer: tokens/s of the full step, the optimizer share
``(step - fwd+bwd) / step`` and ``update / step``, against the estimate of
docs/algorithms.md: Newton–Schulz costs ``T·(4m²n + 2m³)`` flops per ``m×n``
matrix (m ≤ n, T iterations: ``XXᵀ``, the quadratic in ``A``, ``B·X``) while
forward+backward of that matrix costs ``6·B·m·n`` for B tokens, so the overhead
on the matrices is ``≈ T·m/B`` (square matrices: exactly ``T·m/B``). The
whole-model estimate divides the summed NS flops by the model's forward+backward
flops (``6·B·N`` plus attention ``12·L·S·d·B``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import _common  # noqa: E402
import models  # noqa: E402
from train import labels  # noqa: E402
from train import mesh as mesh_lib  # noqa: E402
from train import optimizer as optimizer_lib  # noqa: E402
from train import step as step_lib  # noqa: E402
from train import trainer  # noqa: E402
from train.configs import default  # noqa: E402
from train.state import init_state  # noqa: E402

OPTS = ("adamw", "muon", "muon_plus_plus", "muown")
NS_STEPS = {"adamw": 0, "muon": 5, "muon_plus_plus": 6, "muown": 5}


def ns_estimate(params: dict, model_cfg, tokens: int, seq: int) -> dict:
  """NS flops over the hidden matrices vs fwd+bwd flops of the model (per NS iteration)."""
  dims = labels.dimension_numbers(params)
  ns, mat_params = 0.0, 0
  ms = []
  for x, d in zip(jax.tree.leaves(params), jax.tree.leaves(
      dims, is_leaf=lambda v: v is None or isinstance(v, optax.contrib.MuonDimensionNumbers))):
    if d is None:
      continue
    m, n = sorted(x.shape[-2:])
    batch = math.prod(x.shape[:-2])
    ns += batch * (4 * m * m * n + 2 * m ** 3)
    mat_params += x.size
    ms.append(m)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  attn = 12 * model_cfg.n_layers * seq * model_cfg.d_model * tokens
  fwd_bwd = 6 * tokens * n_params + attn
  return {"ns_flops_per_iter": ns, "fwd_bwd_flops": fwd_bwd,
          "matrix_fwd_bwd_flops": 6 * tokens * mat_params, "n_params": n_params,
          "matrix_params": mat_params, "m_max": max(ms), "m_mean": float(np.mean(ms))}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default=None, help="model preset (default: the default config's)")
  p.add_argument("--model", default="", help="overrides, e.g. d_model=64,n_layers=2,d_ff=192")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--repeats", type=int, default=None)
  p.add_argument("--quick", action="store_true", help="tiny model, 3 repeats")
  p.add_argument("--out", default="trainer_throughput")
  p.add_argument("--report-only", action="store_true", help="re-render the md from the JSON")
  _common.add_load_argument(p)
  args = p.parse_args(argv)
  if args.report_only:
    payload = json.loads((_common.RESULTS_DIR / f"{args.out}.json").read_text())
    _common.write_text(f"{args.out}.md", render(payload))
    return
  command = "python benchmarks/trainer_throughput.py" + "".join(
      f" {a}" for a in (sys.argv[1:] if argv is None else argv))

  config = default.get_config()
  config.model.preset = args.preset or ("tiny" if args.quick else config.model.preset)
  for kv in filter(None, args.model.split(",")):
    k, v = kv.split("=")
    config.model[k] = int(v)
  config.batch_size, config.seq_len = args.batch, args.seq
  repeats = args.repeats or (3 if args.quick else 9)
  _common.check_load(args.allow_load, "at the start")
  info = _common.machine_info()
  model_cfg = trainer.model_config(config.model)
  mesh = mesh_lib.make_mesh(config.mesh)
  batch_sharding = models.sharding.batch_sharding(mesh)
  rng = np.random.default_rng(0)
  shape = (args.batch, args.seq + 1)
  batch = jax.device_put({"tokens": jnp.asarray(rng.integers(0, 256, shape), jnp.int32),
                          "mask": jnp.ones(shape, jnp.float32)},
                         {"tokens": batch_sharding, "mask": batch_sharding})
  tokens = args.batch * args.seq

  fns, carries = {}, {}
  graphdef = params0 = None
  for name in OPTS:
    config.optimizer.name = name
    tx, use_qk = optimizer_lib.make_optimizer(config.optimizer, model_cfg, config.train_steps)
    graphdef, state, shardings = init_state(model_cfg, tx, mesh, config.seed)
    if params0 is None:
      params0 = jax.tree.map(jnp.copy, state.params)
      grad_fn = jax.jit(lambda params, b: jax.value_and_grad(step_lib.loss_fn, has_aux=True)(
          params, graphdef, b))
      grads = grad_fn(params0, batch)[1]
      fns["fwd+bwd"] = lambda: grad_fn(params0, batch)
    train_fn, _ = step_lib.jit_steps(graphdef, tx, use_qk, shardings, batch_sharding)
    carries[name] = {"state": state,
                     "update_carry": (jax.tree.map(jnp.copy, state.params),
                                      jax.tree.map(jnp.copy, state.opt_state))}

    def update(params, opt_state, tx=tx):
      u, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, u), opt_state

    update_fn = jax.jit(update, donate_argnums=(0, 1))

    def full(name=name, train_fn=train_fn):
      c = carries[name]
      c["state"], metrics = train_fn(c["state"], batch)
      return metrics

    def upd(name=name, update_fn=update_fn):
      c = carries[name]
      c["update_carry"] = update_fn(*c["update_carry"])
      return c["update_carry"]

    fns[f"step/{name}"] = full
    fns[f"update/{name}"] = upd
    print(f"built {name}", flush=True)

  for f in fns.values():  # compile
    _common.block(f())
  inner, one = _common.inner_counts(fns, min_sample_s=0.3)
  samples = _common.interleaved(fns, repeats=repeats, inner=inner, warmup=1)
  # Minimum over samples: the machine is shared, and load only ever adds time.
  med = {k: _common.summarize(v)["min_s"] for k, v in samples.items()}
  medians = {k: _common.summarize(v)["median_s"] for k, v in samples.items()}
  est = ns_estimate(params0, model_cfg, tokens, args.seq)

  results = {}
  fb = med["fwd+bwd"]
  for name in OPTS:
    st, up = med[f"step/{name}"], med[f"update/{name}"]
    t = NS_STEPS[name]
    results[name] = {
        "step_s": st, "update_s": up, "fwd_bwd_s": fb,
        "step_median_s": medians[f"step/{name}"], "update_median_s": medians[f"update/{name}"],
        "tokens_per_s": tokens / st,
        "opt_share_step_minus_fwdbwd": (st - fb) / st, "update_over_step": up / st,
        "update_share": up / (fb + up),
        "estimate_T_m_over_B": t * est["m_max"] / tokens,
        "estimate_ns_over_fwd_bwd": t * est["ns_flops_per_iter"] / est["fwd_bwd_flops"],
        "samples": {k: samples[k] for k in (f"step/{name}", f"update/{name}")}}
  d = model_cfg
  info["loadavg_at_end"] = _common.check_load(args.allow_load, "at the end")
  payload = {"machine": info, "command": command, "preset": config.model.preset,
             "model": {k: str(v) for k, v in d.__dict__.items()},
             "batch": args.batch, "seq": args.seq, "tokens_per_step": tokens,
             "repeats": repeats, "inner": inner, "fwd_bwd_s": fb, "estimate": est,
             "fwd_bwd_samples": samples["fwd+bwd"], "results": results}
  _common.write_report(args.out, payload, render)


def render(payload: dict) -> str:
  """The markdown report of a results payload."""
  est, tokens, fb = payload["estimate"], payload["tokens_per_step"], payload["fwd_bwd_s"]
  m = payload["model"]
  rows = []
  for name, r in payload["results"].items():
    e = r["estimate_ns_over_fwd_bwd"]
    rows.append([name, 1e3 * r["step_s"], r["tokens_per_s"], 1e3 * r["update_s"],
                 r["opt_share_step_minus_fwdbwd"], r["update_s"] / (fb + r["update_s"]),
                 r["estimate_T_m_over_B"], e, e / (1 + e) if e else 0.0])
  notes = [f"Model `{payload['preset']}`: d_model {m['d_model']}, {m['n_layers']} layers, d_ff "
           f"{m['d_ff']}, {est['n_params'] / 1e6:.2f}M params ({est['matrix_params'] / 1e6:.2f}M "
           f"in Muon matrices); batch {payload['batch']} x {payload['seq']} = {tokens} "
           "tokens/step; f32",
           f"Minimum of {payload['repeats']} interleaved samples (shared machine: load only adds "
           f"time; medians and all samples in the JSON); fwd+bwd alone: {1e3 * fb:.1f} ms"]
  text = _common.md_header("Trainer throughput and optimizer share", payload["machine"],
                           payload["command"], notes)
  text += "\n" + _common.md_table(
      ["optimizer", "step ms", "tokens/s", "update ms", "(step - fwd+bwd)/step",
       "update/(fwd+bwd+update)", "T·m/B", "NS/fwd+bwd flops", "est. share"], rows)
  text += f"""
How to read it. `update ms` times the optimizer update + apply alone (jitted, on a fixed
gradient); `update/(fwd+bwd+update)` is the optimizer's share of a step that runs them one
after the other, the robust number here. `(step - fwd+bwd)/step` subtracts two separately
timed, much longer programs (the trainer's full jitted step, which also clips gradients and
computes metrics, and forward+backward alone): with other jobs on the machine the
step-to-step noise is larger than the optimizer's cost, so this column can even come out
negative; read it only on an idle machine.

The estimate (docs/algorithms.md): one Newton–Schulz iteration on an m×n matrix (m ≤ n) costs
`4m²n + 2m³` flops (`A = XXᵀ`, `B = bA + cA²`, `BX`), so T iterations cost `≈ 6·T·m²n` when
m ≈ n, while the matrix's forward+backward costs `6·B·m·n` for B tokens: the overhead on the
matrices is `T·m/B` (here m = {est['m_max']} at most, T = 5 for Muon/Muown and 6 for Muon++
(Polar Express), B = {tokens}). `NS/fwd+bwd flops` sums the exact NS flops over all hidden
matrices (GQA's k/v projections are narrower, so it is below `T·m/B`) and divides by the whole
model's forward+backward flops (`6·B·N` plus attention `12·L·S·d·B`, which include the
embedding, LM head and attention the optimizer does not touch); `est. share` = that ratio
/ (1 + ratio), to compare with `update/(fwd+bwd+update)`. With B = 2048 tokens per step the
overhead is large by construction; at the batch sizes Muon is used with (B ≥ 10⁵–10⁶ tokens)
`T·m/B` is ~1% for m = 1024–4096. On a CPU, small NS matmuls and the elementwise work of the
update run at a different fraction of peak than the batch matmuls, so measured shares differ
from the flop ratio.
"""
  return text


if __name__ == "__main__":
  main()
