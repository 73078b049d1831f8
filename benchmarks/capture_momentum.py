"""Captures real Muon momentum matrices from a short run of the project's trainer.

    python benchmarks/capture_momentum.py [--steps 150] [--preset cpu192]

Builds the ``models`` transformer (default: the ``cpu192`` preset of
``train/configs/default.py``), trains it with ``optax_muon.muon`` through the
project's own pieces (``train.optimizer.make_optimizer``, ``train.state``,
``train.step``, the ``stdlib_source`` grain pipeline: nothing is downloaded),
then reads the Muon momentum buffers ``M`` out of the optimizer state (the
``mu`` stacks of the matrix branch) and saves those of the first,
middle and last layer (q, k, v, o, gate, up, down kernels) to
``benchmarks/data/momentum_samples.npz``:

* one float32 array per matrix, keyed ``layers_<i>/<kind>``, in the kernel's
  own ``[fan_in, fan_out]`` layout (the layout ``orthogonalize`` expects);
* ``meta``: a JSON string with, per key, ``layer``, ``position`` (first /
  middle / last), ``kind``, ``shape``, ``step``, plus the run's config and the
  last training losses.

The buffer is ``M`` (sum form ``M ← βM + G``); with Nesterov the NS input is
``G + βM``, which has nearly the same spectrum after ~1/(1-β) steps.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import optax_muon  # noqa: E402

OUT = ROOT / "benchmarks" / "data" / "momentum_samples.npz"
KINDS = ("q", "k", "v", "o", "gate", "up", "down")


def momentum_buffers(opt_state) -> dict[tuple[str, ...], np.ndarray]:
  """The Muon momentum buffers (the matrix branch's ``MomentumState.mu``), keyed by param path."""
  is_momentum = lambda x: isinstance(x, optax_muon.MomentumState)
  out = {}
  for m in jax.tree.leaves(opt_state, is_leaf=is_momentum):
    if is_momentum(m):
      for path, x in m.mu.by_path().items():
        out[tuple(path.split("/"))] = np.asarray(x, np.float32)
  return out


def select(buffers, n_layers: int) -> dict[str, tuple[np.ndarray, dict]]:
  """First, middle and last layer's q/k/v/o/gate/up/down momentum, with metadata."""
  positions = {0: "first", n_layers // 2: "middle", n_layers - 1: "last"}
  picked = {}
  for names, x in sorted(buffers.items()):
    # ('layers', '<i>', 'attn'|'mlp', kind, 'kernel')
    if len(names) < 4 or names[0] != "layers" or names[3] not in KINDS:
      continue
    layer = int(names[1])
    if layer in positions:
      picked[f"layers_{layer}/{names[3]}"] = (x, {
          "layer": layer, "position": positions[layer], "kind": names[3],
          "shape": list(x.shape), "param_path": "/".join(names)})
  return picked


def train_and_capture(steps: int, preset: str, seed: int = 0, batch_size: int = 16,
                      seq_len: int = 128) -> tuple[dict, dict]:
  """Trains ``steps`` Muon steps; returns ``(selected buffers, run info)``."""
  # The trainer's stack (flax, grain, TFDS) is imported here only: ``load`` and
  # the extraction helpers stay light.
  import models  # pylint: disable=import-outside-toplevel
  from train import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from train import optimizer as optimizer_lib  # pylint: disable=import-outside-toplevel
  from train.configs import default  # pylint: disable=import-outside-toplevel
  from train.data import pipeline  # pylint: disable=import-outside-toplevel
  from train.state import init_state  # pylint: disable=import-outside-toplevel
  from train.step import jit_steps  # pylint: disable=import-outside-toplevel
  from train.trainer import model_config  # pylint: disable=import-outside-toplevel

  config = default.get_config()
  config.train_steps, config.seed = steps, seed
  config.batch_size, config.seq_len = batch_size, seq_len
  config.model.preset = preset
  config.optimizer.name = "muon"
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, steps // 4)
  model_cfg = model_config(config.model)
  mesh = mesh_lib.make_mesh(config.mesh)
  tx, use_qk_clip = optimizer_lib.make_optimizer(config.optimizer, model_cfg, steps)
  builder = pipeline.prepare(config)
  data_iter = iter(pipeline.train_dataset(config, builder))
  batch_sharding = models.sharding.batch_sharding(mesh)
  graphdef, state, shardings = init_state(model_cfg, tx, mesh, seed)
  train_fn, _ = jit_steps(graphdef, tx, use_qk_clip, shardings, batch_sharding)
  losses, t0 = [], time.perf_counter()
  for step in range(steps):
    state, metrics = train_fn(state, pipeline.to_global(next(data_iter), batch_sharding))
    if (step + 1) % 25 == 0 or step + 1 == steps:
      losses.append((step + 1, float(metrics["loss"])))
      print(f"step {step + 1}: loss {losses[-1][1]:.3f}", flush=True)
  picked = select(momentum_buffers(state.opt_state), model_cfg.n_layers)
  info = {"preset": preset, "steps": steps, "seed": seed, "batch_size": batch_size,
          "seq_len": seq_len, "optimizer": "optax_muon.muon (train.optimizer defaults)",
          "learning_rate": optimizer_lib.peak_learning_rate(config.optimizer), "losses": losses,
          "train_seconds": round(time.perf_counter() - t0, 1),
          "model": {k: getattr(model_cfg, k) for k in
                    ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff")}}
  return picked, info


def save(picked: dict, info: dict, path: pathlib.Path = OUT) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  meta = {"run": info, "matrices": {k: {**m, "step": info["steps"]} for k, (_, m) in picked.items()}}
  arrays = {k: x.astype(np.float32) for k, (x, _) in picked.items()}
  np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
  return path


def load(path: os.PathLike = OUT) -> tuple[dict[str, np.ndarray], dict]:
  """``({key: matrix}, meta)`` from a saved sample file."""
  with np.load(path) as f:
    meta = json.loads(str(f["meta"]))
    return {k: f[k] for k in meta["matrices"]}, meta


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--preset", default="cpu192")
  parser.add_argument("--out", default=str(OUT))
  args = parser.parse_args()
  picked, info = train_and_capture(args.steps, args.preset)
  path = save(picked, info, pathlib.Path(args.out))
  print(f"wrote {len(picked)} matrices to {path} ({path.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
  main()
