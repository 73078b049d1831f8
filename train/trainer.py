"""The training loop: config -> mesh, data, sharded state, jitted steps, eval, checkpoints.

Rerunning with the same workdir resumes from the latest complete checkpoint (params, optimizer
state, step and data-iterator position). SIGTERM saves a checkpoint and returns cleanly.
"""

import logging
import math
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
from etils import epath
import numpy as np
import tqdm

import models
from models.config import ModelConfig
from train import diagnostics
from train import mesh as mesh_lib
from train import optimizer as optimizer_lib
from train.checkpoint import Checkpointer
from train.data import pipeline
from train.metrics import MetricsWriter, plot_losses
from train.state import init_state
from train.step import jit_steps


def model_config(model: ml_collections.ConfigDict) -> ModelConfig:
  """The preset with every non-None field of `model` overriding it."""
  overrides = {k: v for k, v in model.items() if k != "preset" and v is not None}
  for k in ("dtype", "param_dtype"):
    if k in overrides:
      overrides[k] = jnp.dtype(overrides[k])
  return models.get_config(model.preset, **overrides)


def maybe_initialize_distributed(dist: ml_collections.ConfigDict) -> None:
  """`jax.distributed.initialize` from config (fields left empty/-1 are auto-detected)."""
  if not dist.initialize:
    return
  kwargs = {}
  if dist.coordinator_address:
    kwargs["coordinator_address"] = dist.coordinator_address
  if dist.num_processes > 0:
    kwargs["num_processes"] = dist.num_processes
  if dist.process_id >= 0:
    kwargs["process_id"] = dist.process_id
  if dist.local_device_ids:
    kwargs["local_device_ids"] = [int(i) for i in str(dist.local_device_ids).split(",")]
  jax.distributed.initialize(**kwargs)


def validate(config: ml_collections.ConfigDict, model_cfg: ModelConfig,
             mesh: jax.sharding.Mesh) -> None:
  """Fails fast with a `ValueError` on configs that cannot work."""
  if config.optimizer.name not in optimizer_lib.OPTIMIZERS:
    raise ValueError(f"unknown optimizer.name {config.optimizer.name!r}; "
                     f"choose from {optimizer_lib.OPTIMIZERS}")
  if config.optimizer.schedule not in optimizer_lib.SCHEDULES:
    raise ValueError(f"unknown optimizer.schedule {config.optimizer.schedule!r}; "
                     f"choose from {optimizer_lib.SCHEDULES}")
  batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.batch_size % batch_shards:
    raise ValueError(f"batch_size={config.batch_size} is not divisible by the data axes "
                     f"(data*fsdp={batch_shards})")
  if config.batch_size % jax.process_count():
    raise ValueError(f"batch_size={config.batch_size} is not divisible by "
                     f"{jax.process_count()} processes")
  if config.seq_len > model_cfg.max_len:
    raise ValueError(f"seq_len={config.seq_len} exceeds model max_len={model_cfg.max_len}")
  if config.optimizer.qk_clip > 0 and model_cfg.scan_layers:
    raise ValueError("optimizer.qk_clip needs model.scan_layers=False")
  if min(config.train_steps, config.eval_every, config.checkpoint_every, config.log_every) <= 0:
    raise ValueError("train_steps, eval_every, checkpoint_every and log_every must be > 0")
  pipeline.resolve_data_dir(config)


class _StopFlag:
  """Set by SIGTERM; the loop checkpoints and exits at the next step boundary.

  Installed only from the main thread (Python delivers signals there).
  """

  def __init__(self):
    self.requested = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: checkpointing and stopping.")
    self.requested = True

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def compile_train_step(train_fn, state, config: ml_collections.ConfigDict, batch_sharding):
  """AOT-compiles the train step for the configured batch and logs its memory use."""
  shape = (config.batch_size, config.seq_len + 1)
  batch = {"tokens": jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding),
           "mask": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch_sharding)}
  # The mesh in context lets optax_muon give each device whole matrices to orthogonalize.
  with jax.set_mesh(batch_sharding.mesh):
    compiled = train_fn.lower(state, batch).compile()
  memory = compiled.memory_analysis()
  if memory is not None:
    logging.info("Train step memory per device: args %.1f MiB, temp %.1f MiB, out %.1f MiB",
                 memory.argument_size_in_bytes / 2**20, memory.temp_size_in_bytes / 2**20,
                 memory.output_size_in_bytes / 2**20)
  return compiled


def _host(metrics: dict) -> dict:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       stop_at: int | None = None) -> dict:
  """Trains to `config.train_steps` (resuming if possible); returns the last metrics row.

  `stop_at` ends this run early with a checkpoint after that step, as a preemption would.
  """
  maybe_initialize_distributed(config.distributed)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)  # Local or gs://.
  is_main = jax.process_index() == 0
  model_cfg = model_config(config.model)
  mesh = mesh_lib.make_mesh(config.mesh)
  validate(config, model_cfg, mesh)
  tx, use_qk_clip = optimizer_lib.make_optimizer(config.optimizer, model_cfg, config.train_steps,
                                                 diagnostics.optimizer_config(config))

  builder = pipeline.prepare(config)
  data_iter = iter(pipeline.train_dataset(config, builder))
  batch_sharding = models.sharding.batch_sharding(mesh)
  eval_data = [pipeline.to_global(b, batch_sharding)
               for b in pipeline.eval_batches(config, builder)]

  graphdef, state, shardings = init_state(model_cfg, tx, mesh, config.seed)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), config.max_checkpoints)
  start = ckpt.latest_step() or 0
  if start:
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    del state
    state = ckpt.restore(start, shardings, abstract, data_iter)
    logging.info("Resumed from step %d.", start)
  total = config.train_steps
  train_fn, eval_fn = jit_steps(graphdef, tx, use_qk_clip, shardings, batch_sharding)
  if start < total:
    train_fn = compile_train_step(train_fn, state, config, batch_sharding)
  writer = MetricsWriter(workdir, start, enabled=is_main)
  n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))
  logging.info("Model %s: %.2fM params; mesh %s over %d process(es)", config.model.preset,
               n_params / 1e6, dict(mesh.shape), jax.process_count())

  def evaluate() -> float:
    return float(np.mean([float(eval_fn(state.params, b)) for b in eval_data]))

  tokens_per_step = config.batch_size * config.seq_len
  schedule = optimizer_lib.make_schedule(config.optimizer, total)
  stop = _StopFlag()
  bar = tqdm.tqdm(total=total, initial=start, disable=not is_main, desc="train",
                  dynamic_ncols=True)
  last_row, pending = {}, None
  clock, clock_step = time.perf_counter(), start

  def record(step: int, device_metrics: dict, force: bool = False) -> None:
    """Fetches a step's metrics, stops on NaN, updates the bar and writes the row."""
    nonlocal clock, clock_step, last_row
    row = {"step": step, **_host(device_metrics)}
    if not math.isfinite(row["loss"]):
      raise FloatingPointError(f"loss is {row['loss']} at step {step}; stopping.")
    now = time.perf_counter()
    row["tokens_per_sec"] = tokens_per_step * (step - clock_step) / max(now - clock, 1e-9)
    row["lr"] = float(schedule(step - 1))
    bar.update(step - bar.n)
    steps_per_sec = bar.format_dict["rate"]  # tqdm's smoothed rate (per-step fetches jitter).
    bar.set_postfix(loss=f"{row['loss']:.3f}",
                    tok_s=f"{tokens_per_step * steps_per_sec:.0f}" if steps_per_sec else "-")
    if step % config.log_every == 0 or force:
      extra_start = time.perf_counter()  # Time spent on diagnostics and eval is not training.
      if force and config.diagnostics.every and step % config.diagnostics.every == 0:
        row.update(diagnostics.compute(state, mesh))
      if step % config.eval_every == 0 or step == total:
        row["eval_loss"] = evaluate()
      writer.write(row)
      clock, clock_step = now + (time.perf_counter() - extra_start), step
    last_row = row

  try:
    for step in range(start, total):
      batch = pipeline.to_global(next(data_iter), batch_sharding)
      state, metrics = train_fn(state, batch)
      if pending is not None:
        record(*pending)
      pending, done = (step + 1, metrics), step + 1
      stopping = stop.requested or done == stop_at
      save = done % config.checkpoint_every == 0 or done == total or stopping
      diagnose = config.diagnostics.every and done % config.diagnostics.every == 0
      if save or diagnose or done % config.eval_every == 0:
        record(*pending, force=True)
        pending = None
        if save:
          ckpt.save(done, state, data_iter)
        if stopping:
          break
  finally:
    stop.restore()
    bar.close()
    ckpt.close()

  if int(state.step) < total:
    logging.warning("Stopped at step %d (checkpointed); rerun to resume.", int(state.step))
    return last_row
  if "eval_loss" not in last_row:  # Nothing left to train: report the restored state.
    last_row = {"step": int(state.step), "eval_loss": evaluate()}
  plot = plot_losses(writer.path, os.path.join(workdir, "loss.png")) if is_main else ""
  if is_main:
    print(f"final eval loss: {last_row['eval_loss']:.4f} (step {last_row['step']})")
    print(f"loss plot: {plot}")
  return last_row
