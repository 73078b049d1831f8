"""Learning-rate schedules and the optimizer chosen by name (with or without QK-clip)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import optimizer as optimizer_lib
from train import trainer
from train.configs import tiny


def _opt(**overrides):
  opt = tiny.get_config().optimizer
  opt.update({"learning_rate": 1.0, "warmup_steps": 10, "final_lr_fraction": 0.1, **overrides})
  return opt


def test_warmup_then_cosine():
  lr = optimizer_lib.make_schedule(_opt(schedule="cosine"), total_steps=110)
  np.testing.assert_allclose([lr(0), lr(5), lr(10)], [0.0, 0.5, 1.0], atol=1e-6)
  np.testing.assert_allclose(lr(60), 0.55, atol=1e-6)  # Halfway through the cosine.
  np.testing.assert_allclose(lr(110), 0.1, atol=1e-6)
  assert all(lr(t) >= lr(t + 1) for t in range(10, 110))


def test_warmup_stable_decay():
  lr = optimizer_lib.make_schedule(_opt(schedule="wsd", decay_fraction=0.2), total_steps=110)
  np.testing.assert_allclose([lr(5), lr(10), lr(50), lr(88)], [0.5, 1.0, 1.0, 1.0], atol=1e-6)
  np.testing.assert_allclose([lr(99), lr(110)], [0.55, 0.1], atol=1e-6)  # Linear decay 88..110.


@pytest.mark.parametrize("name", optimizer_lib.OPTIMIZERS)
def test_unset_learning_rate_is_the_optimizers_default(name):
  expected = {"adamw": 3e-3, "muon": 6e-3, "muown": 1.2e-2, "muon_plus_plus": 2e-2,
              "normuon": 6e-3}[name]
  lr = optimizer_lib.make_schedule(_opt(name=name, learning_rate=None, schedule="constant"), 100)
  np.testing.assert_allclose(lr(50), expected, rtol=1e-6)
  lr = optimizer_lib.make_schedule(_opt(name=name, learning_rate=0.5, schedule="constant"), 100)
  np.testing.assert_allclose(lr(50), 0.5, rtol=1e-6)  # A set value wins.


@pytest.mark.parametrize("name", optimizer_lib.OPTIMIZERS)
def test_unset_init_is_the_one_the_optimizers_default_lr_was_measured_with(name):
  # Muon++'s default lr is in spectral units, measured with the μP init: a user who only
  # picks the optimizer gets that init. A value set in the config wins.
  model = tiny.get_config().model
  assert model.mup_init is None
  assert trainer.model_config(model, optimizer=name).mup_init == (name == "muon_plus_plus")
  assert trainer.model_config(model).mup_init is False
  model.mup_init = False
  assert trainer.model_config(model, optimizer=name).mup_init is False


def _step_q(name: str, qk_clip: float):
  """The new q kernel after one step of optimizer `name` on a toy tree shaped like the model's."""
  config = tiny.get_config()
  config.model.n_layers = 1
  config.model.qk_norm = False
  model_cfg = trainer.model_config(config.model)
  opt = _opt(name=name, qk_clip=qk_clip, warmup_steps=1)
  tx, use_qk_clip = optimizer_lib.make_optimizer(opt, model_cfg, total_steps=100)
  assert use_qk_clip == (qk_clip > 0)
  d, hk = model_cfg.d_model, model_cfg.n_heads * model_cfg.head_dim
  params = {"embed": {"embedding": jnp.ones((256, d))},
            "layers": {0: {"attn": {"q": {"kernel": jnp.ones((d, hk))}}}}}
  grads = jax.tree.map(lambda x: jnp.sin(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape),
                       params)
  extra = {"max_logits": {"layers_0": jnp.full((model_cfg.n_heads,), 20.0)}} if qk_clip else {}
  state = tx.init(params)
  for _ in range(2):  # Step 0 has lr = 0 (warmup).
    updates, state = tx.update(grads, state, params, **extra)
  assert jax.tree.structure(updates) == jax.tree.structure(params)
  assert all(bool(jnp.isfinite(u).all()) for u in jax.tree.leaves(updates))
  q = params["layers"][0]["attn"]["q"]["kernel"]
  return q + updates["layers"][0]["attn"]["q"]["kernel"]


@pytest.mark.parametrize("name", optimizer_lib.OPTIMIZERS)
def test_optimizer_by_name_with_and_without_qk_clip(name):
  q = _step_q(name, qk_clip=0.0)
  assert not np.allclose(q, 1.0)  # It stepped.
  # Every head's max logit (20) is 4x over τ=5: with shared (GQA) keys the query heads take γ=1/4.
  np.testing.assert_allclose(_step_q(name, qk_clip=5.0), 0.25 * q, rtol=1e-5, atol=1e-6)


def test_unknown_optimizer_name():
  with pytest.raises(ValueError, match="unknown optimizer.name 'sgd'"):
    optimizer_lib.make_optimizer(_opt(name="sgd"), trainer.model_config(tiny.get_config().model),
                                 total_steps=10)


def _toy_tree(d: int):
  """(params, grads) shaped like the model's embedding and one q kernel; grads deterministic."""
  params = {"embed": {"embedding": jnp.ones((256, d))},
            "layers": {0: {"attn": {"q": {"kernel": jnp.eye(d)}}}}}
  grads = jax.tree.map(lambda x: jnp.sin(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape),
                       params)
  return params, grads


def _second_step(tx, params, grads):
  """The updates of the second step (step 0 has lr = 0 under warmup)."""
  state = tx.init(params)
  for _ in range(2):
    updates, state = tx.update(grads, state, params)
  return updates


def _q(updates):
  return updates["layers"][0]["attn"]["q"]["kernel"]


def test_lr_ratios_and_alias_options_reach_the_alias():
  # lr_ratios.adam_learning_rate scales the AdamW leaves' schedule (AdamW's step, decay
  # included, is linear in its lr); options are passed to the alias as keyword arguments.
  import optax_muon as om
  from train import labels
  model_cfg = trainer.model_config(tiny.get_config().model)
  params, grads = _toy_tree(model_cfg.d_model)
  second_step = lambda tx: _second_step(tx, params, grads)
  opt = _opt(name="muon_plus_plus", warmup_steps=1, grad_clip=0.0)
  base, _ = optimizer_lib.make_optimizer(opt, model_cfg, total_steps=100)
  opt.lr_ratios.adam_learning_rate = 0.25  # 0.25 x the schedule (peak 1) instead of the default
  scaled, _ = optimizer_lib.make_optimizer(opt, model_cfg, total_steps=100)
  u0, u1 = second_step(base), second_step(scaled)
  default = optimizer_lib.DEFAULT_ADAM_LEARNING_RATES["muon_plus_plus"]
  np.testing.assert_allclose(u1["embed"]["embedding"], 0.25 / default * u0["embed"]["embedding"],
                             rtol=1e-5)
  np.testing.assert_allclose(_q(u1), _q(u0), rtol=1e-5)  # the matrices keep the full lr
  opt = _opt(name="muon", warmup_steps=1, grad_clip=0.0, weight_decay=0.0)
  opt.options.scale = "mup"
  tx, _ = optimizer_lib.make_optimizer(opt, model_cfg, total_steps=100)
  direct = om.muon(optimizer_lib.make_schedule(opt, 100), scale="mup", weight_decay=0.0,
                   dimension_numbers=labels.dimension_numbers)
  np.testing.assert_allclose(_q(second_step(tx)), _q(second_step(direct)), rtol=1e-6)
  assert not np.allclose(_q(second_step(tx)), _q(second_step(base)))


def test_alias_options_are_refused_for_adamw():
  opt = _opt(name="adamw")
  opt.options.scale = "mup"
  with pytest.raises(ValueError, match="optimizer.options"):
    optimizer_lib.make_optimizer(opt, trainer.model_config(tiny.get_config().model), 100)


@pytest.mark.parametrize("name", ["muown", "muon_plus_plus"])
def test_unset_weight_decay_keeps_the_alias_default(name):
  # optimizer.weight_decay=None (the default) must not override the alias's own decay (0 on
  # the matrices of Muown and Muon++); an explicit value must reach it.
  import optax_muon as om
  from train import labels
  model_cfg = trainer.model_config(tiny.get_config().model)
  params, grads = _toy_tree(model_cfg.d_model)
  second_step = lambda tx: _q(_second_step(tx, params, grads))
  factory = {"muown": om.muown, "muon_plus_plus": om.muon_plus_plus}[name]
  opt = _opt(name=name, warmup_steps=1, grad_clip=0.0)
  assert opt.weight_decay is None
  sched = optimizer_lib.make_schedule(opt, 100)
  tx, _ = optimizer_lib.make_optimizer(opt, model_cfg, total_steps=100)
  direct = factory(sched, dimension_numbers=labels.dimension_numbers)
  np.testing.assert_allclose(second_step(tx), second_step(direct), rtol=1e-6)
  opt.weight_decay = 0.4
  tx, _ = optimizer_lib.make_optimizer(opt, model_cfg, total_steps=100)
  decayed = factory(sched, weight_decay=0.4, dimension_numbers=labels.dimension_numbers)
  np.testing.assert_allclose(second_step(tx), second_step(decayed), rtol=1e-6)
  assert not np.allclose(second_step(tx), second_step(direct))


def test_the_trainer_builds_normuon_as_the_alias_with_the_shared_arguments():
  # optimizer.name=normuon with a shared argument in options (per-leaf-capable ns_steps)
  # steps exactly as the library's alias built by hand with the trainer's schedule.
  import optax_muon as om
  from train import labels
  model_cfg = trainer.model_config(tiny.get_config().model)
  params, grads = _toy_tree(model_cfg.d_model)
  opt = _opt(name="normuon", warmup_steps=1, grad_clip=0.0, weight_decay=0.05)
  opt.options.ns_steps = 3
  tx, _ = optimizer_lib.make_optimizer(opt, model_cfg, total_steps=100)
  direct = om.normuon(optimizer_lib.make_schedule(opt, 100), ns_steps=3, weight_decay=0.05,
                      dimension_numbers=labels.dimension_numbers)
  ours = _second_step(tx, params, grads)
  np.testing.assert_allclose(_q(ours), _q(_second_step(direct, params, grads)), rtol=1e-6)
  five = om.normuon(optimizer_lib.make_schedule(opt, 100), weight_decay=0.05)
  assert not np.allclose(_q(ours), _q(_second_step(five, params, grads)))


@pytest.mark.parametrize("name", ["muon", "muown", "muon_plus_plus", "normuon"])
def test_the_adamw_leaves_lr_is_its_own_setting(name):
  # optimizer.adam_learning_rate is the AdamW leaves' peak whatever optimizer.learning_rate
  # is (AdamW's step, decay included, is linear in its lr); unset, the optimizer's measured
  # default in AdamW units, never Muon++'s spectral lr.
  model_cfg = trainer.model_config(tiny.get_config().model)
  params, grads = _toy_tree(model_cfg.d_model)
  step = lambda **o: _second_step(optimizer_lib.make_optimizer(
      _opt(name=name, warmup_steps=1, grad_clip=0.0, **o), model_cfg, 100)[0], params, grads)
  emb = lambda u: u["embed"]["embedding"]
  a, b, c = step(adam_learning_rate=0.01), step(adam_learning_rate=0.01, learning_rate=2.0), \
      step(adam_learning_rate=0.02)
  np.testing.assert_allclose(emb(b), emb(a), rtol=1e-6)  # the matrices' lr leaves them alone
  assert not np.allclose(_q(b), _q(a))
  np.testing.assert_allclose(emb(c), 2 * emb(a), rtol=1e-5)
  np.testing.assert_allclose(_q(c), _q(a), rtol=1e-6)
  default = optimizer_lib.DEFAULT_ADAM_LEARNING_RATES[name]
  np.testing.assert_allclose(emb(step()), default / 0.01 * emb(a), rtol=1e-5)
  assert optimizer_lib.adam_learning_rate(_opt(name=name, learning_rate=None)) == default
  if name == "muon_plus_plus":
    assert default != optimizer_lib.DEFAULT_LEARNING_RATES[name]


def test_bad_adamw_leaves_settings_are_refused():
  model_cfg = trainer.model_config(tiny.get_config().model)
  make = lambda opt: optimizer_lib.make_optimizer(opt, model_cfg, 100)
  with pytest.raises(ValueError, match="optimizer.adam_learning_rate"):
    make(_opt(name="adamw", adam_learning_rate=0.01))
  with pytest.raises(ValueError, match="optimizer.adam_learning_rate"):
    make(_opt(name="muon", adam_learning_rate=-0.01))
  opt = _opt(name="muon", adam_learning_rate=0.01)
  opt.lr_ratios.adam_learning_rate = 0.5
  with pytest.raises(ValueError, match="not both"):
    make(opt)


def test_fused_qkv_model_computes_the_separate_projections_and_is_split_for_the_optimizer():
  # The fused variant ([q | k | v] in one [d, 3d] kernel) computes what separate q, k, v
  # kernels holding its three blocks compute; the trainer hands the optimizer its three
  # [d, d] matrices, or one [d, 3d] matrix with split_fused_qkv=False.
  import models
  import optax_muon as om
  from flax import nnx
  cfg = models.get_config("cpu192_fused", d_model=32, n_heads=2, n_kv_heads=2, n_layers=1,
                          d_ff=64, max_len=16)
  plain_cfg = models.get_config("cpu192_fused", d_model=32, n_heads=2, n_kv_heads=2, n_layers=1,
                                d_ff=64, max_len=16, fused_qkv=False)
  with nnx.use_eager_sharding(False):
    fused, plain = models.Transformer(cfg, rngs=nnx.Rngs(0)), models.Transformer(
        plain_cfg, rngs=nnx.Rngs(1))
  f_state, p_state = nnx.to_pure_dict(nnx.state(fused)), nnx.to_pure_dict(nnx.state(plain))
  qkv = f_state["layers"][0]["attn"].pop("qkv")["kernel"]
  assert qkv.shape == (32, 96)
  np.testing.assert_allclose(float(jnp.std(qkv)), 0.02, rtol=0.1)  # GPT-2's init
  for i, name in enumerate("qkv"):
    f_state["layers"][0]["attn"][name] = {"kernel": qkv[:, 32 * i:32 * (i + 1)]}
  assert jax.tree.structure(f_state) == jax.tree.structure(p_state)
  nnx.replace_by_pure_dict(p_state := nnx.state(plain), f_state)
  nnx.update(plain, p_state)
  tokens = jnp.arange(16, dtype=jnp.int32).reshape(1, 16) * 7 % 256
  np.testing.assert_allclose(fused(tokens)[0], plain(tokens)[0], rtol=1e-5, atol=1e-5)
  params = nnx.to_pure_dict(nnx.state(fused, nnx.Param))
  split = optimizer_lib.matrix_dimension_numbers(cfg)(params)
  assert split["layers"][0]["attn"]["qkv"]["kernel"] == om.FusedDimensionNumbers(0, 1, parts=3)
  whole = optimizer_lib.matrix_dimension_numbers(cfg, split_fused_qkv=False)(params)
  assert whole["layers"][0]["attn"]["qkv"]["kernel"] == om.MuonDimensionNumbers(0, 1)
  with pytest.raises(ValueError, match="fused_qkv needs n_kv_heads == n_heads"):
    models.get_config("cpu192_fused", n_kv_heads=2)
