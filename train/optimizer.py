"""Learning-rate schedules and the optimizer chain, chosen by name from config."""

import functools

from absl import logging
import jax
import ml_collections
import optax
import optax_muon as om

from models.config import ModelConfig
from train import labels
from train.errors import ConfigError

OPTIMIZERS = ("adamw", "muon", "muon_plus_plus", "muown", "normuon")
SCHEDULES = ("cosine", "wsd", "constant")
# Peak lr when `optimizer.learning_rate` is unset: the best (or, for Muon, a tied) lr of the
# bracketed sweeps on the default model at 600 steps (`benchmarks/headline.py --family`).
# Muon++'s is in spectral units (‖ΔW‖₂ = lr·sqrt(fan_out/fan_in)); the others in AdamW's.
# NorMuon has not been swept on its own: it shares Muon's Moonlight scale (update RMS 0.2·lr)
# and takes Muon's default.
DEFAULT_LEARNING_RATES = {"adamw": 3e-3, "muon": 6e-3, "muown": 1.2e-2, "muon_plus_plus": 2e-2,
                          "normuon": 6e-3}
# Peak lr of the AdamW leaves (embeddings, head, norms) of each Muon variant when
# `optimizer.adam_learning_rate` is unset, in AdamW units whatever the matrices' units, and
# independent of `optimizer.learning_rate`. Muon++: the bracketed best of its leaves' lr sweep
# at its default lr (0.003 / 0.01 / 0.02 -> 1.156 / 1.140 / 1.146; headline.py --leaves-sweep),
# 0.5x its spectral lr as in the library (`SPECTRAL_ADAM_LR_RATIO`); before that the leaves
# took its spectral lr, 0.02. Muon, Muown, NorMuon: the lr their default lr was measured with
# (the leaves ran at the optimizer's lr); Muon's own leaves sweep at lr 0.012 has its best at
# 0.024, 0.003 nats under 0.012's.
DEFAULT_ADAM_LEARNING_RATES = {"muon": 6e-3, "muown": 1.2e-2, "muon_plus_plus": 1e-2,
                               "normuon": 6e-3}
# Model fields an optimizer's default lr was measured with, used where the config leaves them
# unset (None): Muon++ calls for the μP init (‖W₀‖₂ = sqrt(fan_out/fan_in)), the one its lr (in
# those spectral units) and its weight radius were measured with.
MODEL_DEFAULTS = {"muon_plus_plus": {"mup_init": True}}


def peak_learning_rate(opt: ml_collections.ConfigDict) -> float:
  """`opt.learning_rate`, or the optimizer's default (`DEFAULT_LEARNING_RATES`) when unset."""
  return DEFAULT_LEARNING_RATES[opt.name] if opt.learning_rate is None else opt.learning_rate


def adam_learning_rate(opt: ml_collections.ConfigDict) -> float | None:
  """The AdamW leaves' peak lr: `opt.adam_learning_rate`, or `DEFAULT_ADAM_LEARNING_RATES`
  (None for AdamW itself, which has no separate leaves)."""
  if opt.name == "adamw":
    if opt.get("adam_learning_rate", None) is not None:
      raise ConfigError("optimizer.adam_learning_rate applies to the Muon variants only "
                        "(AdamW steps every leaf at optimizer.learning_rate)")
    return None
  if opt.get("adam_learning_rate", None) is not None:
    if opt.adam_learning_rate <= 0:
      raise ConfigError(f"optimizer.adam_learning_rate must be > 0, got {opt.adam_learning_rate}")
    return opt.adam_learning_rate
  return DEFAULT_ADAM_LEARNING_RATES[opt.name]


def make_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup, then cosine decay, WSD (constant + final linear decay), or constant."""
  peak, warmup = peak_learning_rate(opt), opt.warmup_steps
  final = peak * opt.final_lr_fraction
  warmup_fn = optax.linear_schedule(0.0, peak, max(warmup, 1))
  if opt.schedule == "cosine":
    main = optax.cosine_decay_schedule(peak, max(total_steps - warmup, 1),
                                       alpha=opt.final_lr_fraction)
    return optax.join_schedules([warmup_fn, main], [warmup])
  if opt.schedule == "wsd":
    decay_start = max(int(total_steps * (1 - opt.decay_fraction)), warmup)
    decay = optax.linear_schedule(peak, final, max(total_steps - decay_start, 1))
    return optax.join_schedules([warmup_fn, optax.constant_schedule(peak), decay],
                                [warmup, decay_start])
  if opt.schedule == "constant":
    return optax.join_schedules([warmup_fn, optax.constant_schedule(peak)], [warmup])
  raise ValueError(f"unknown optimizer.schedule {opt.schedule!r}; choose from {SCHEDULES}")


def matrix_dimension_numbers(model_cfg: ModelConfig, split_fused_qkv: bool = True):
  """The trainer's matrices: `labels.dimension_numbers`, with a fused QKV kernel
  (`model.fused_qkv`) split into its three `[d, d]` matrices (`FusedDimensionNumbers`) unless
  `split_fused_qkv=False` (then one `[d, 3d]` matrix, the library's default rule)."""
  if not (model_cfg.fused_qkv and split_fused_qkv):
    return labels.dimension_numbers

  def split_qkv(path, x):
    name = om.path_to_str(path)
    dims = om.default_matrix_rule(name, x)
    if dims is None or om.path_kind(name) != "qkv":
      return dims
    return om.FusedDimensionNumbers(dims.reduction_axis, dims.output_axis, parts=3)

  return lambda params: jax.tree_util.tree_map_with_path(split_qkv, params)


def _base(name: str, lr: optax.Schedule, weight_decay: float | None, diagnostics=None,
          lr_ratios=None, options=None, adam_lr: optax.Schedule | None = None,
          dimension_numbers=labels.dimension_numbers) -> optax.GradientTransformation:
  """The optimizer proper; Muon variants route non-matrix leaves (labels = None) to AdamW.

  `adam_lr` is the AdamW leaves' schedule. `lr_ratios` maps learning-rate arguments of the
  alias to a multiple of the schedule (e.g. `{"magnitude_learning_rate": 0.3}`;
  `{"adam_learning_rate": 0.3}` replaces `adam_lr` by 0.3x the schedule); `options` are
  further keyword arguments of the alias (e.g. `scale="mup"`). `weight_decay=None` keeps the
  optimizer's own default (AdamW: 0.1).
  """
  if name == "adamw" and (lr_ratios or options):
    raise ConfigError("optimizer.lr_ratios and optimizer.options apply to the Muon variants only")
  if name == "adamw":
    return optax.adamw(lr, b1=0.9, b2=0.95,
                       weight_decay=0.1 if weight_decay is None else weight_decay,
                       mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p))
  factory = {"muon": om.muon, "muon_plus_plus": om.muon_plus_plus, "muown": om.muown,
             "normuon": om.normuon}[name]
  extra = dict(options or {})
  if weight_decay is not None:
    extra["weight_decay"] = weight_decay
  extra["skip_nonfinite"] = False  # `make_optimizer` wraps the whole chain once.
  if adam_lr is not None:
    extra["adam_learning_rate"] = adam_lr
  for arg, ratio in (lr_ratios or {}).items():
    extra[arg] = functools.partial(lambda t, r: r * lr(t), r=float(ratio))
  if diagnostics is not None:
    extra["diagnostics"] = diagnostics
  try:
    return factory(lr, dimension_numbers=dimension_numbers, **extra)
  except (ValueError, TypeError) as e:  # a bad optimizer.options / lr_ratios value or name
    raise ConfigError(f"optimizer.name={name} with options {options or {}} and lr_ratios "
                      f"{lr_ratios or {}}: {e}") from None


def make_optimizer(opt: ml_collections.ConfigDict, model_cfg: ModelConfig,
                   total_steps: int,
                   diagnostics=None) -> tuple[optax.GradientTransformationExtraArgs, bool]:
  """`skip_nonfinite(clip -> optimizer -> (qk_clip))`, and whether the update needs `max_logits=`.

  A step whose gradients are not finite changes nothing and counts one in
  `opt_state.skipped_steps` (for every optimizer, AdamW included).
  """
  if opt.name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer.name {opt.name!r}; choose from {OPTIMIZERS}")
  parts = []
  if opt.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(opt.grad_clip))
  as_dict = lambda key: opt[key].to_dict() if opt.get(key, None) is not None else None
  schedule = make_schedule(opt, total_steps)
  adam_peak, adam_lr = adam_learning_rate(opt), None
  if adam_peak is not None:  # the schedule's shape at the leaves' own peak
    ratio = adam_peak / peak_learning_rate(opt)
    adam_lr = lambda t: ratio * schedule(t)
    if (as_dict("lr_ratios") or {}).get("adam_learning_rate") is not None:
      if opt.get("adam_learning_rate", None) is not None:
        raise ConfigError("set optimizer.adam_learning_rate or "
                          "optimizer.lr_ratios.adam_learning_rate, not both")
      adam_peak = opt.lr_ratios.adam_learning_rate * peak_learning_rate(opt)
    logging.info("optimizer %s: matrices at peak lr %g, AdamW leaves at peak lr %g", opt.name,
                 peak_learning_rate(opt), adam_peak)
  parts.append(_base(opt.name, schedule, opt.weight_decay, diagnostics,
                     lr_ratios=as_dict("lr_ratios"), options=as_dict("options"), adam_lr=adam_lr,
                     dimension_numbers=matrix_dimension_numbers(
                         model_cfg, opt.get("split_fused_qkv", True))))
  use_qk_clip = opt.qk_clip > 0
  if use_qk_clip:
    if model_cfg.scan_layers:
      raise ValueError("optimizer.qk_clip needs model.scan_layers=False")
    if model_cfg.qk_norm:  # RMSNorm of q and k would undo the clip's rescaling of W_q, W_k.
      raise ValueError("optimizer.qk_clip has no effect with QK-norm: set model.qk_norm=False")
    parts.append(om.qk_clip(opt.qk_clip, functools.partial(labels.qk_clip_specs, cfg=model_cfg)))
  return om.skip_nonfinite(optax.chain(*parts)), use_qk_clip
