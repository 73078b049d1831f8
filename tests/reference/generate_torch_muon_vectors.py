"""Generate reference test vectors from PyTorch's own ``torch.optim.Muon``.

Run ONCE, outside the project environment (the project and its tests never
import torch):

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python tests/reference/generate_torch_muon_vectors.py

Writes ``tests/reference/torch_muon_vectors.npz`` next to this file. The key
layout and the semantics of torch's Muon are documented in README.md in this
directory. Everything is seeded; on CPU the output is bit-for-bit reproducible
for a given torch build.

Besides the torch outputs, the file holds a float64 NumPy re-implementation of
the same algorithm WITHOUT the bf16 cast (keys ending in ``_f64``). It is not
from torch; it only exists so a test can tell how much of a mismatch is bf16
rounding inside torch's Newton-Schulz.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import torch
from torch.optim import _muon as torch_muon_mod

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_PATH = os.path.join(HERE, "torch_muon_vectors.npz")

SEED = 20240917
N_STEPS = 4
NS_STEPS = 5
NS_COEFFS = (torch_muon_mod.DEFAULT_A, torch_muon_mod.DEFAULT_B, torch_muon_mod.DEFAULT_C)
EPS = torch_muon_mod.EPS

# Torch layout: [out, in] (nn.Linear.weight).
SHAPES = {"32x64": (32, 64), "64x32": (64, 32), "48x48": (48, 48)}

SETTINGS = {
    "a": dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, adjust_lr_fn="original"),
    "b": dict(lr=0.01, momentum=0.95, nesterov=True, weight_decay=0.1, adjust_lr_fn="match_rms_adamw"),
    "c": dict(lr=0.02, momentum=0.95, nesterov=False, weight_decay=0.0, adjust_lr_fn="original"),
}


# ---------------------------------------------------------------------------
# float64 NumPy mirror of torch's algorithm, minus the bf16 cast (diagnostic only)
# ---------------------------------------------------------------------------
def ns_f64(g: np.ndarray, coeffs=NS_COEFFS, steps=NS_STEPS, eps=EPS) -> np.ndarray:
    a, b, c = coeffs
    x = np.asarray(g, dtype=np.float64)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / max(np.linalg.norm(x), eps)
    for _ in range(steps):
        gram = x @ x.T
        upd = b * gram + c * (gram @ gram)
        x = a * x + upd @ x
    return x.T if tall else x


def adjust_lr(lr, fn, shape):
    A, B = shape[:2]
    if fn is None or fn == "original":
        return lr * math.sqrt(max(1, A / B))
    if fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(A, B))
    return lr


def muon_f64(p0, grads, s):
    p = p0.astype(np.float64)
    buf = np.zeros_like(p)
    mu = s["momentum"]
    out = []
    for g in grads.astype(np.float64):
        buf = buf + (1 - mu) * (g - buf)  # buf.lerp_(g, 1-mu)
        upd = g + mu * (buf - g) if s["nesterov"] else buf  # g.lerp(buf, mu)
        o = ns_f64(upd)
        p = p * (1 - s["lr"] * s["weight_decay"])
        p = p - adjust_lr(s["lr"], s["adjust_lr_fn"], p.shape) * o
        out.append(p.copy())
    return np.stack(out)


# ---------------------------------------------------------------------------
def run_torch_muon(p0: np.ndarray, grads: np.ndarray, s: dict):
    """Run torch.optim.Muon for len(grads) steps; return params, bufs, NS updates."""
    param = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.Muon(
        [param],
        lr=s["lr"],
        weight_decay=s["weight_decay"],
        momentum=s["momentum"],
        nesterov=s["nesterov"],
        ns_coefficients=NS_COEFFS,
        eps=EPS,
        ns_steps=NS_STEPS,
        adjust_lr_fn=s["adjust_lr_fn"],
    )
    params, bufs, updates = [], [], []
    for g in grads:
        prev = param.detach().clone()
        param.grad = torch.from_numpy(g.copy())
        opt.step()
        params.append(param.detach().numpy().copy())
        buf = opt.state[param]["momentum_buffer"].detach().clone()
        bufs.append(buf.numpy().copy())
        # Recover the exact NS output torch applied (bf16 values) by recomputing
        # it with torch's own kernel on the same input as in _single_tensor_muon.
        g_t = param.grad
        upd_in = g_t.lerp(buf, s["momentum"]) if s["nesterov"] else buf
        o = torch_muon_mod._zeropower_via_newtonschulz(upd_in, NS_COEFFS, NS_STEPS, EPS)
        # Sanity: replaying the param update with this o reproduces torch's step.
        adj = torch_muon_mod._adjust_lr(s["lr"], s["adjust_lr_fn"], param.shape)
        replay = prev.mul(1 - s["lr"] * s["weight_decay"]).add_(o, alpha=-adj)
        assert torch.equal(replay, param.detach()), "replay mismatch"
        updates.append(o.float().numpy().copy())
        opt.zero_grad(set_to_none=True)
    return np.stack(params), np.stack(bufs), np.stack(updates)


def rel_err(x, ref):
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def main():
    assert hasattr(torch.optim, "Muon"), "this torch has no torch.optim.Muon"
    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic CPU reductions
    rng = np.random.default_rng(SEED)
    data: dict[str, np.ndarray] = {}
    stats = {}

    for sname, shape in SHAPES.items():
        # Same p0 / grads across settings for a given shape.
        p0 = (rng.standard_normal(shape) / math.sqrt(shape[1])).astype(np.float32)
        # Gradients with a shared low-rank-ish component plus noise, varying scale,
        # so momentum actually matters.
        base = rng.standard_normal(shape)
        grads = np.stack(
            [
                ((0.5 * base + rng.standard_normal(shape)) * (0.1 * (k + 1))).astype(np.float32)
                for k in range(N_STEPS)
            ]
        )
        for setname, s in SETTINGS.items():
            key = f"case_{sname}_{setname}"
            params, bufs, updates = run_torch_muon(p0, grads, s)
            params_f64 = muon_f64(p0, grads, s)
            meta = dict(
                shape=list(shape),
                layout="torch [out, in]",
                steps=N_STEPS,
                ns_steps=NS_STEPS,
                ns_coefficients=list(NS_COEFFS),
                eps=EPS,
                adjusted_lr=torch_muon_mod._adjust_lr(s["lr"], s["adjust_lr_fn"], torch.Size(shape)),
                **s,
            )
            data[f"{key}_p0"] = p0
            data[f"{key}_grads"] = grads
            data[f"{key}_params"] = params.astype(np.float32)
            data[f"{key}_bufs"] = bufs.astype(np.float32)
            data[f"{key}_updates"] = updates.astype(np.float32)
            data[f"{key}_params_f64"] = params_f64.astype(np.float32)
            data[f"{key}_meta"] = np.array(json.dumps(meta, sort_keys=True))
            deltas = params - np.concatenate([p0[None], params[:-1]])
            deltas64 = params_f64 - np.concatenate([p0[None], params_f64[:-1]])
            stats[key] = dict(
                param_max_abs_vs_f64=float(np.max(np.abs(params - params_f64))),
                step_delta_rel_vs_f64=max(rel_err(deltas[i], deltas64[i]) for i in range(N_STEPS)),
                adjusted_lr=meta["adjusted_lr"],
            )

    # Raw Newton-Schulz kernel vectors.
    ns_inputs = {
        "32x64": rng.standard_normal((32, 64)),
        "64x32": rng.standard_normal((64, 32)),
        "48x48": rng.standard_normal((48, 48)),
        "16x8": rng.standard_normal((16, 8)) * 1e-3,  # tiny scale, tall
        "48x48_lowrank": rng.standard_normal((48, 4)) @ rng.standard_normal((4, 48)),
    }
    for name, x in ns_inputs.items():
        x = x.astype(np.float32)
        out = torch_muon_mod._zeropower_via_newtonschulz(torch.from_numpy(x.copy()), NS_COEFFS, NS_STEPS, EPS)
        assert out.dtype == torch.bfloat16, out.dtype
        out32 = out.float().numpy()
        ref64 = ns_f64(x)
        data[f"ns_{name}_in"] = x
        data[f"ns_{name}_out"] = out32
        data[f"ns_{name}_out_f64"] = ref64.astype(np.float32)
        stats[f"ns_{name}"] = dict(
            rel_fro_vs_f64=rel_err(out32, ref64), max_abs_vs_f64=float(np.max(np.abs(out32 - ref64)))
        )

    data["meta"] = np.array(
        json.dumps(
            dict(
                torch_version=torch.__version__,
                numpy_version=np.__version__,
                python=sys.version.split()[0],
                seed=SEED,
                steps=N_STEPS,
                ns_steps=NS_STEPS,
                ns_coefficients=list(NS_COEFFS),
                eps=EPS,
                ns_dtype="bfloat16",
                layout="torch [out, in]",
                shapes=SHAPES,
                settings=SETTINGS,
                ns_cases=list(ns_inputs),
                stats=stats,
            ),
            sort_keys=True,
        )
    )
    np.savez_compressed(OUT_PATH, **data)
    print(f"wrote {OUT_PATH} ({os.path.getsize(OUT_PATH)} bytes, {len(data)} keys), torch {torch.__version__}")
    for k, v in stats.items():
        print(k, json.dumps(v))


if __name__ == "__main__":
    main()
