"""The benchmarks' sweep harness (``benchmarks/_sweep.py``): keys, cache, bracketing.

These check the harness itself, which decides which runs a report trains and how its lr
sweeps end; no library property is tested through it. No training runs here.
"""

import doctest
import importlib.util
import math
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "_sweep.py"
_spec = importlib.util.spec_from_file_location("_sweep", _PATH)
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def test_doctests():
  assert doctest.testmod(sweep).failed == 0


def test_every_key_records_the_adamw_leaves_lr():
  base = {"optimizer": "muon", "lr": 0.012, "steps": 600, "seed": 0}
  with pytest.raises(ValueError, match="adam_lr"):
    sweep.run_key(base)
  a = sweep.run_key({**base, "adam_lr": 0.012})
  b = sweep.run_key({**base, "adam_lr": 0.024})
  assert a != b and "adam_lr=0.024" in b
  # Field order does not matter; None fields are left out (adding one later keeps old keys).
  assert sweep.run_key({"adam_lr": 0.012, **base, "wd": None}) == a
  with pytest.raises(TypeError):
    sweep.run_key({**base, "adam_lr": 0.012, "options": {"scale": "mup"}})


def test_cache_merges_runs_of_two_processes(tmp_path):
  path = tmp_path / "runs.json"
  one, two = sweep.RunCache(path), sweep.RunCache(path)
  s1 = {"optimizer": "adamw", "lr": 1e-3, "adam_lr": 1e-3, "steps": 10}
  s2 = {**s1, "lr": 2e-3, "adam_lr": 2e-3}
  one.put(s1, {"eval_curve": [(10, 2.0)]})
  two.put(s2, {"eval_curve": [(10, 1.5)]})  # saved after re-reading one's run
  again = sweep.RunCache(path)
  assert set(again.runs) == {sweep.run_key(s1), sweep.run_key(s2)}
  assert [r["spec"]["lr"] for r in again.find(optimizer="adamw", steps=10)] == [1e-3, 2e-3]
  calls = []
  rec = again.ensure(s1, lambda s: calls.append(s) or {})
  assert calls == [] and sweep.final_eval(rec) == 2.0
  assert not list(tmp_path.glob("*.tmp"))


def test_bracket_walks_to_the_optimum_and_treats_divergence_as_worse():
  calls = []

  def loss(lr):
    calls.append(lr)
    return math.inf if lr > 0.5 else 2.0 + 0.05 * math.log2(lr / 0.01) ** 2

  out = sweep.bracket(loss, [0.04, 0.08, 0.16], max_extend=8)
  assert sweep.best_of(out) == (0.01, 2.0) and sweep.bracketed(out)
  assert sorted(out) == [0.005, 0.01, 0.02, 0.04, 0.08, 0.16] and len(calls) == 6
  # Stops after max_extend even when not bracketed.
  assert not sweep.bracketed(sweep.bracket(loss, [0.04, 0.08, 0.16], max_extend=1))
  assert sweep.bracketed({0.1: 1.5, 0.2: 1.4, 0.4: math.inf})


def test_plateau_and_first_step_reaching():
  losses = {0.01: 1.50, 0.02: 1.31, 0.04: 1.30, 0.08: 1.315, 0.16: 1.6}
  assert sweep.plateau(losses) == [0.02, 0.08]
  curve = [(25, 3.0), (50, 2.0), (75, 1.5)]
  assert sweep.first_step_reaching(curve, 1.75) == pytest.approx(62.5)
  assert sweep.first_step_reaching(curve, 3.5) == 25.0
  assert sweep.first_step_reaching(curve, 1.0) is None


def test_trainer_config_sets_the_adamw_leaves_peak_lr_explicitly():
  spec = {"optimizer": "muon", "lr": 0.012, "adam_lr": 0.003, "steps": 20, "seed": 1,
          "batch": 8, "wd": 0.0, "adam_wd": 0.1, "model.mup_init": True,
          "options.ns_method": "standard", "lr_ratios.magnitude_learning_rate": 2.0}
  c = sweep.trainer_config(spec)
  assert c.optimizer.adam_learning_rate == 0.003
  assert "adam_learning_rate" not in c.optimizer.lr_ratios
  assert (c.optimizer.name, c.optimizer.learning_rate, c.train_steps, c.seed, c.batch_size) == (
      "muon", 0.012, 20, 1, 8)
  assert c.optimizer.weight_decay == 0.0 and c.optimizer.options.adam_weight_decay == 0.1
  assert c.model.mup_init is True and c.optimizer.options.ns_method == "standard"
  assert c.optimizer.lr_ratios.magnitude_learning_rate == 2.0
  same = sweep.trainer_config({**spec, "adam_lr": 0.012})  # explicit even when equal to lr
  assert same.optimizer.adam_learning_rate == 0.012
  with pytest.raises(ValueError, match="AdamW"):
    sweep.trainer_config({"optimizer": "adamw", "lr": 1e-3, "adam_lr": 2e-3, "steps": 5})
