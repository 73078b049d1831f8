"""The results files compare matrix optimizers, not their embeddings' learning rates.

Every Muon variant hands its embeddings, head and norms to AdamW. A table that puts two
optimizers side by side is fair only when those AdamW leaves ran at one peak lr for all of
them, or when each optimizer's leaves' lr was itself swept and bracketed (its best has a
worse neighbour on both sides). These tests read the results JSON and check that, from the
``adam_lr`` every run records.
"""

import json
import math
import pathlib

import pytest

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "results"
HEADLINES = sorted(RESULTS.glob("headline*.json"))


def _load(path: pathlib.Path) -> dict:
  return json.loads(path.read_text())


def _bracketed(losses: dict) -> bool:
  """The best of >= 3 points has a worse neighbour on both sides (independent of _sweep)."""
  xs = sorted(losses, key=float)
  if len(xs) < 3:
    return False
  best = min(range(len(xs)), key=lambda i: losses[xs[i]])
  return 0 < best < len(xs) - 1


def _same(values) -> bool:
  values = [float(v) for v in values]
  return all(math.isclose(v, values[0], rel_tol=1e-6) for v in values)


def test_the_family_is_compared_on_the_default_and_the_fused_qkv_model():
  fam = _load(RESULTS / "headline.json")["summary"]["family"]
  assert set(fam) == {"cpu192", "cpu192_fused"}
  for preset, opts in fam.items():
    assert {"muon", "muon_plus_plus"} <= set(opts), preset


@pytest.mark.parametrize("path", HEADLINES, ids=lambda p: p.name)
def test_muon_against_tuned_adamw_runs_its_leaves_at_adamws_lr(path):
  s = _load(path)["summary"]
  runs = s["runs"]
  adamw_lr = runs[s["tuned_adamw"]]["spec"]["lr"]
  muon_leaves = runs[s["muon"]]["spec"]["adam_lr"] if s["muon"] in runs else s["muon_adam_lr"]
  assert s["adamw_bracketed"], "tuned AdamW's lr sweep must be bracketed"
  assert math.isclose(muon_leaves, adamw_lr, rel_tol=1e-6), (
      f"{path.name}: Muon's AdamW leaves ran at {muon_leaves}, tuned AdamW at {adamw_lr}")
  if "muon_half_run" in s:
    assert math.isclose(runs.get(s["muon_half_run"], {}).get("spec", {}).get(
        "adam_lr", float("nan")), adamw_lr, rel_tol=1e-6), "the half-length Muon run's leaves"


def _with(table: str) -> list[pathlib.Path]:
  """The results files that hold `table` (headline.json must: checked below)."""
  return [p for p in HEADLINES if _load(p)["summary"].get(table)]


def test_headline_holds_a_family_and_a_weight_decay_table():
  assert RESULTS / "headline.json" in _with("family")
  assert RESULTS / "headline.json" in _with("weight_decay")


@pytest.mark.parametrize("path", _with("family"), ids=lambda p: p.name)
def test_family_tables_hold_the_adamw_leaves_equal_or_sweep_them(path):
  s = _load(path)["summary"]
  for preset, fam in s["family"].items():
    _check_family(path.name, preset, fam, s["family_adamw"][preset])


def _check_family(name_: str, preset: str, fam: dict, adamw: dict) -> None:
  """One model's table: every optimizer's leaves at one lr, tuned AdamW's (bracketed), or
  each one's leaves swept and bracketed."""
  leaves = {name: set(f["sweep_adam_lr"].values()) for name, f in fam.items()}
  for name, f in fam.items():
    # Every point of a sweep ran its leaves at the lr the table says.
    assert set(f["sweep_adam_lr"]) == set(f["sweep"]), name
    assert len(leaves[name]) == 1 and _same([*leaves[name], f["adam_lr"]]), (name, leaves[name])
    assert _bracketed(f["sweep"]) and f["bracketed"], f"{name}'s lr sweep is not bracketed"
  held = _same([f["adam_lr"] for f in fam.values()])
  swept = all(_bracketed(f.get("leaves_sweep", {})) for f in fam.values())
  assert held or swept, f"{name_} {preset}: leaves at {({n: f['adam_lr'] for n, f in fam.items()})}"
  if held:  # held at the model's tuned AdamW lr, itself bracketed
    assert math.isclose(next(iter(fam.values()))["adam_lr"], adamw["lr"], rel_tol=1e-6)
    assert adamw["bracketed"] and _bracketed(adamw["sweep"]), f"{preset}: AdamW not bracketed"


@pytest.mark.parametrize("path", _with("weight_decay"), ids=lambda p: p.name)
def test_weight_decay_tables_compare_at_equal_leaves(path):
  wd = _load(path)["summary"]["weight_decay"]
  assert _same([w["adam_lr"] for w in wd.values()]), {n: w["adam_lr"] for n, w in wd.items()}


def test_a_table_with_unequal_leaves_fails_the_check(tmp_path):
  # The check can fail: the family table as it was once (each optimizer's
  # leaves at its own lr, none of them swept).
  fam = {"muon": {"sweep": {"0.006": 1.154, "0.012": 1.150, "0.024": 1.170},
                  "sweep_adam_lr": {"0.006": 0.006, "0.012": 0.012, "0.024": 0.024},
                  "adam_lr": 0.012, "bracketed": True},
         "muon_plus_plus": {"sweep": {"0.01": 1.176, "0.02": 1.146, "0.04": 1.161},
                            "sweep_adam_lr": {"0.01": 0.01, "0.02": 0.02, "0.04": 0.04},
                            "adam_lr": 0.02, "bracketed": True}}
  adamw = {"lr": 0.003, "bracketed": True, "sweep": {"0.001": 1.43, "0.003": 1.29, "0.01": 1.33}}
  path = tmp_path / "headline_old.json"
  path.write_text(json.dumps({"summary": {"family": {"cpu192": fam},
                                          "family_adamw": {"cpu192": adamw}}}))
  with pytest.raises(AssertionError):
    test_family_tables_hold_the_adamw_leaves_equal_or_sweep_them(path)
  for f in fam.values():  # held equal, at tuned AdamW's lr: it passes
    f["adam_lr"], f["sweep_adam_lr"] = 0.003, {k: 0.003 for k in f["sweep"]}
  path.write_text(json.dumps({"summary": {"family": {"cpu192": fam},
                                          "family_adamw": {"cpu192": adamw}}}))
  test_family_tables_hold_the_adamw_leaves_equal_or_sweep_them(path)


def test_transfer_records_the_leaves_lr_per_optimizer_and_width():
  out = _load(RESULTS / "transfer.json")
  for name, res in out["optimizers"].items():
    assert set(res["adam_lr"]) == set(res["best_lr"]), name
    for w, lr in res["adam_lr"].items():
      assert lr > 0, (name, w)


def test_transfer_compares_the_optimizers_at_equal_leaves_per_width():
  out = _load(RESULTS / "transfer.json")
  opts = out["optimizers"]
  for w in out["widths"]:
    adamw = opts["adamw"]["best_lr"][w]
    for name, res in opts.items():
      assert math.isclose(res["adam_lr"][w], adamw, rel_tol=1e-6), (name, w)
