"""Kernel variants of the Newton–Schulz loop, timed interleaved (a scratch probe).

    python benchmarks/ns_kernel_variants.py [--shapes 1024x1024,512x2048] [--repeats 5]

Each variant is a float32, 5-step Jordan NS on one [m, n] matrix (m <= n) with
the same Frobenius normalization; only the loop body differs:

* ``library``: ``optax_muon._src.newton_schulz.orthogonalize_matrices`` itself.
* ``dot_general``: A = dot_general(X, X) contracting the long side, B = bA + cA·A,
  X ← aX + B·X (the library's body, without its amax prescale).
* ``explicit_T``: the same with ``x @ x.T`` and ``a @ a`` (optax's body).
* ``sym_AAT``: A² computed as ``dot_general(A, A)`` contracting dim 1 with dim 1
  (A·Aᵀ = A² for symmetric A: both operands read row-major).
* ``scan``: the library body under ``lax.scan`` over the coefficient rows.
* ``expand``: X ← aX + b(AX) + c(A(AX)) (no A², 6m²n instead of 4m²n + 2m³).
* ``matmul``: the three product shapes alone (the roofline).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import _common  # noqa: E402
from optax_muon._src import newton_schulz as ns  # noqa: E402

COEFFS = [(3.4445, -4.7750, 2.0315)] * 5
TABLE = np.asarray(COEFFS)


def _norm(x):
  return x / (jnp.sqrt(jnp.sum(x * x)) + 1e-7)


def dot_general_body(x):
  x = _norm(x)
  for a, b, c in COEFFS:
    g = jax.lax.dot_general(x, x, (((1,), (1,)), ((), ())))
    bm = b * g + c * (g @ g)
    x = a * x + bm @ x
  return x


def explicit_t_body(x):
  x = _norm(x)
  for a, b, c in COEFFS:
    g = x @ x.T
    x = a * x + (b * g + c * g @ g) @ x
  return x


def sym_body(x):
  x = _norm(x)
  for a, b, c in COEFFS:
    g = jax.lax.dot_general(x, x, (((1,), (1,)), ((), ())))
    g2 = jax.lax.dot_general(g, g, (((1,), (1,)), ((), ())))
    x = a * x + (b * g + c * g2) @ x
  return x


def scan_body(x):
  x = _norm(x)

  def body(x, abc):
    a, b, c = abc[0], abc[1], abc[2]
    g = jax.lax.dot_general(x, x, (((1,), (1,)), ((), ())))
    return a * x + (b * g + c * (g @ g)) @ x, None

  x, _ = jax.lax.scan(body, x, jnp.asarray(TABLE, jnp.float32))
  return x


def expand_body(x):
  x = _norm(x)
  for a, b, c in COEFFS:
    g = jax.lax.dot_general(x, x, (((1,), (1,)), ((), ())))
    gx = g @ x
    x = a * x + b * gx + c * (g @ gx)
  return x


def library(x):
  return ns.orthogonalize_matrices(x[None], TABLE)[0]


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--shapes", default="1024x1024,512x2048")
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args()
  info = _common.machine_info()
  print(f"{info['date']} {info['platform']} cpu_count={info['cpu_count']} jax {info['jax']}")
  for spec in args.shapes.split(","):
    m, n = map(int, spec.split("x"))
    x = jax.random.normal(jax.random.key(0), (m, n), jnp.float32)
    xt = jnp.asarray(np.asarray(x).T.copy())
    a = jax.random.normal(jax.random.key(1), (m, m), jnp.float32)
    mm = jax.jit(lambda u, v: u @ v)
    variants = {name: jax.jit(f) for name, f in [
        ("library", library), ("dot_general", dot_general_body), ("explicit_T", explicit_t_body),
        ("sym_AAT", sym_body), ("scan", scan_body), ("expand", expand_body)]}
    fns = {k: (lambda f=f: f(x)) for k, f in variants.items()}
    fns["matmul"] = lambda: (mm(x, xt), mm(a, a), mm(a, x))
    ref = np.asarray(variants["library"](x))
    for k, f in variants.items():
      d = float(np.linalg.norm(np.asarray(f(x)) - ref) / np.linalg.norm(ref))
      print(f"  {k}: rel diff vs library {d:.2e}")
    samples = _common.interleaved(fns, repeats=args.repeats, warmup=1)
    step_flops = 4 * m * m * n + 2 * m**3
    base = np.median(samples["library"])
    print(f"[{m}x{n}] median ms / GFLOP/s / time vs library:")
    for k, v in samples.items():
      t = float(np.median(v))
      fl = step_flops * (1 if k == "matmul" else 5)
      if k == "expand":
        fl_note = f" (does {5 * 6 * m * m * n / 1e9:.1f} GFLOP; NS-equivalent shown)"
      else:
        fl_note = ""
      print(f"  {k:12s} {t * 1e3:9.1f} ms {fl / t / 1e9:7.1f} GFLOP/s  x{t / base:.3f}{fl_note}")


if __name__ == "__main__":
  main()
