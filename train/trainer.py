"""The training loop: config -> mesh, data, sharded state, jitted steps, eval, checkpoints.

Rerunning with the same workdir resumes from the newest checkpoint that passes verification
(checksums, restore, finite state; see `checkpoint.py`), falling back past corrupt ones. SIGTERM
saves a checkpoint and returns cleanly. A step with non-finite gradients is skipped
(counted in `skipped_steps`); `max_consecutive_skipped` in a row stop the run with
`TooManySkippedSteps`. Config errors are raised as `ConfigError` before any data is built.
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
import optax_muon as om
from models.config import ModelConfig
from train import spectral_metrics as diagnostics
from train import mesh as mesh_lib
from train import nonfinite_leaves as nonfinite
from train import optimizer as optimizer_lib
from train import run_config
from train import config_checks as validation
from train.checkpoint import Checkpointer
from train.data import pipeline
from train.errors import ConfigError
from train.errors import NoUsableCheckpoint
from train.errors import TooManySkippedSteps
from train.metrics import MetricsWriter, plot_losses
from train.state import init_state
from train.step import jit_steps


def model_config(model: ml_collections.ConfigDict, vocab_size: int | None = None,
                 optimizer: str | None = None) -> ModelConfig:
  """The preset with every non-None field of `model` (and `vocab_size`) overriding it.

  With `optimizer`, fields left unset take the init that optimizer calls for
  (`optimizer_lib.MODEL_DEFAULTS`: Muon++ starts from the μP init).
  """
  overrides = {k: v for k, v in model.items() if k != "preset" and v is not None}
  for k, v in optimizer_lib.MODEL_DEFAULTS.get(optimizer, {}).items():
    if k not in overrides:
      logging.info("model.%s unset: %s, what optimizer %s calls for", k, v, optimizer)
      overrides[k] = v
  if vocab_size is not None:
    overrides["vocab_size"] = vocab_size
  for k in ("dtype", "param_dtype"):
    if k in overrides:
      overrides[k] = jnp.dtype(overrides[k])
  try:
    return models.get_config(model.preset, **overrides)
  except ValueError as e:
    raise ConfigError(f"model: {e}") from e


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


def compile_train_step(train_fn, state, example_batch: dict, batch_sharding):
  """AOT-compiles the train step for batches shaped like `example_batch`; logs its memory use."""
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_sharding),
                       example_batch)
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


def _listed(items: list[str], limit: int = 6) -> str:
  more = f" and {len(items) - limit} more" if len(items) > limit else ""
  return ", ".join(items[:limit]) + more


def setup(config: ml_collections.ConfigDict):
  """Validates everything that needs no data: `(model_cfg, mesh, tokenizer, tx, use_qk_clip)`."""
  validation.check_config(config)
  maybe_initialize_distributed(config.distributed)
  try:
    mesh = mesh_lib.make_mesh(config.mesh)
  except ValueError as e:
    raise ConfigError(f"mesh: {e}") from e
  try:
    tokenizer = pipeline.load_tokenizer(config)
  except (OSError, RuntimeError, ValueError) as e:
    raise ConfigError(f"data.tokenizer={config.data.tokenizer!r}: cannot load ({e})") from e
  model_cfg = model_config(config.model, tokenizer.vocab_size, config.optimizer.name)
  validation.check_for_mesh(config, model_cfg, mesh)
  tx, use_qk_clip = optimizer_lib.make_optimizer(config.optimizer, model_cfg, config.train_steps,
                                                 diagnostics.optimizer_config(config))
  return model_cfg, mesh, tokenizer, tx, use_qk_clip


def _config_changes(workdir: str, config: ml_collections.ConfigDict) -> str:
  """What differs from the config of the run that wrote `workdir`'s checkpoints (for errors)."""
  recorded = run_config.load(workdir)
  if recorded is None:
    return ""
  changes = run_config.differences(recorded, config)
  if not changes:
    return " The config is the one that wrote them."
  return (" The run that wrote them had another config (a different optimizer, option or model "
          "changes the state's structure): " + "; ".join(changes) + ".")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       stop_at: int | None = None) -> dict:
  """Trains to `config.train_steps` (resuming if possible); returns the last metrics row.

  `stop_at` ends this run early with a checkpoint after that step, as a preemption would.
  """
  model_cfg, mesh, tokenizer, tx, use_qk_clip = setup(config)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)  # Local or gs://.
  is_main = jax.process_index() == 0

  corpus = pipeline.prepare(config)
  data_iter = iter(pipeline.train_dataset(config, corpus, tokenizer))
  batch_sharding = models.sharding.batch_sharding(mesh)
  eval_data = [pipeline.to_global(b, batch_sharding)
               for b in pipeline.eval_batches(config, corpus, tokenizer)]
  logging.info("Data: %s, tokenizer %s (vocab %d), %s rows of %d tokens.",
               config.data.files or config.data.tfds_name, tokenizer.name, tokenizer.vocab_size,
               "packed" if pipeline.is_packed(config) else "unpacked", config.seq_len + 1)

  graphdef, state, shardings = init_state(model_cfg, tx, mesh, config.seed)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), config.max_checkpoints)
  start = 0
  if ckpt.latest_step() is not None:
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    del state
    try:
      start, state = ckpt.restore_latest(shardings, abstract, data_iter)
    except NoUsableCheckpoint as e:
      raise NoUsableCheckpoint(f"{e}{_config_changes(workdir, config)}") from None
    logging.info("Resumed from step %d.", start)
  if is_main:
    run_config.save(workdir, config)
  total = config.train_steps
  train_fn, eval_fn = jit_steps(graphdef, tx, use_qk_clip, shardings, batch_sharding,
                                tokenizer.byte_lengths_V)
  if start < total:
    train_fn = compile_train_step(train_fn, state, eval_data[0], batch_sharding)
  writer = MetricsWriter(workdir, start, enabled=is_main)
  n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))
  logging.info("Model %s: %.2fM params; mesh %s over %d process(es)", config.model.preset,
               n_params / 1e6, dict(mesh.shape), jax.process_count())
  if config.optimizer.name != "adamw":  # which leaves get Muon, as which matrices, at what scale
    logging.info("Optimizer plan:\n%s", om.describe(state.params, tx))

  def evaluate() -> dict[str, float]:
    """Mean eval loss (nats/token) and bits per byte over the eval batches."""
    outs = [_host(eval_fn(state.params, b)) for b in eval_data]
    loss_sum, n_bytes = sum(o["loss_sum"] for o in outs), sum(o["bytes"] for o in outs)
    return {"eval_loss": float(np.mean([o["loss"] for o in outs])),
            "eval_bpb": loss_sum / math.log(2) / max(n_bytes, 1.0)}

  def checkpoint(step: int) -> None:
    bad = nonfinite.state_report(state)
    if bad:  # Never let a non-finite state displace a good checkpoint.
      logging.warning("Not checkpointing step %d: non-finite values in %s.", step, _listed(bad))
      return
    ckpt.save(step, state, data_iter)

  def stop_skipping(step: int, batch: dict) -> None:
    """Raises `TooManySkippedSteps` naming the last checkpoint and the non-finite leaves."""
    n = config.max_consecutive_skipped
    last = ckpt.latest_step()
    where = ("no checkpoint saved yet" if last is None else
             f"last finite checkpoint: step {last} ({ckpt.directory / str(last)})")
    bad = nonfinite.step_report(state, batch, graphdef)
    raise TooManySkippedSteps(
        f"{n} consecutive steps skipped (steps {step - n + 1}..{step}: non-finite "
        f"gradients); {where}; non-finite: {_listed(bad) if bad else 'nothing in the current state'}"
        ". Lower optimizer.learning_rate or check the data, then rerun to resume.")

  tokens_per_step = config.batch_size * config.seq_len
  schedule = optimizer_lib.make_schedule(config.optimizer, total)
  stop = _StopFlag()
  bar = tqdm.tqdm(total=total, initial=start, disable=not is_main, desc="train",
                  dynamic_ncols=True)
  last_row, pending = {}, None
  clock, clock_step = time.perf_counter(), start
  consecutive_skips = 0

  def record(step: int, device_metrics: dict, batch: dict, force: bool = False) -> None:
    """Fetches a step's metrics, counts skips, updates the bar and writes the row."""
    nonlocal clock, clock_step, last_row, consecutive_skips
    row = {"step": step, **_host(device_metrics)}
    consecutive_skips = consecutive_skips + 1 if row.pop("skipped") else 0
    row["skipped_steps"] = int(row["skipped_steps"])
    too_many = consecutive_skips >= config.max_consecutive_skipped
    if consecutive_skips:
      logging.warning("Step %d skipped: non-finite gradients (loss %s); %d in a row.",
                      step, row["loss"], consecutive_skips)
    now = time.perf_counter()
    row["tokens_per_sec"] = tokens_per_step * (step - clock_step) / max(now - clock, 1e-9)
    row["lr"] = float(schedule(step - 1))
    bar.update(step - bar.n)
    steps_per_sec = bar.format_dict["rate"]  # tqdm's smoothed rate (per-step fetches jitter).
    bar.set_postfix(loss=f"{row['loss']:.3f}",
                    tok_s=f"{tokens_per_step * steps_per_sec:.0f}" if steps_per_sec else "-",
                    skipped=row["skipped_steps"])
    if step % config.log_every == 0 or force or too_many:
      extra_start = time.perf_counter()  # Time spent on diagnostics and eval is not training.
      if force and config.diagnostics.every and step % config.diagnostics.every == 0:
        row.update(diagnostics.compute(state, mesh))
      if (step % config.eval_every == 0 or step == total) and not too_many:
        row.update(evaluate())
      writer.write(row)
      clock, clock_step = now + (time.perf_counter() - extra_start), step
    last_row = row
    if too_many:
      stop_skipping(step, batch)

  try:
    for step in range(start, total):
      batch = pipeline.to_global(next(data_iter), batch_sharding)
      state, metrics = train_fn(state, batch)
      if pending is not None:
        record(*pending)
      pending, done = (step + 1, metrics, batch), step + 1
      stopping = stop.requested or done == stop_at
      save = done % config.checkpoint_every == 0 or done == total or stopping
      diagnose = config.diagnostics.every and done % config.diagnostics.every == 0
      if save or diagnose or done % config.eval_every == 0:
        record(*pending, force=True)
        pending = None
        if save:
          checkpoint(done)
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
    last_row = {"step": int(state.step), **evaluate()}
  plot = plot_losses(writer.path, os.path.join(workdir, "loss.png")) if is_main else ""
  if is_main:
    print(f"final eval loss: {last_row['eval_loss']:.4f} (step {last_row['step']}), "
          f"{last_row['eval_bpb']:.4f} bits/byte")
    print(f"loss plot: {plot}")
  return last_row
