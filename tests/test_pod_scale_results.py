"""What `benchmarks/results/pod_scale.json` (deviceless TPU compiles) must hold.

The compiles themselves need libtpu and minutes per row (`python benchmarks/pod_scale.py`);
these tests read the committed results, so a rerun that loses a row or breaks a claim fails.
"""

import json
import pathlib

import pytest

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "results"
OURS = ("muon", "muon_plus_plus", "muown", "normuon")


def _results() -> dict:
  return json.loads((RESULTS / "pod_scale.json").read_text())


@pytest.mark.parametrize("optimizer", ("adamw", *OURS))
def test_a_70b_llama_trains_on_a_v5p_256_at_two_sequences_of_4096_per_chip(optimizer):
  r = _results()["rows"]["v5p-256/llama-70b"][optimizer]
  assert (r["d_model"], r["n_layers"]) == (8192, 80) and r["params"] > 69e9
  assert r["chips"] == 128 and r["seq_len"] == 4096 and r["batch_size"] >= 2 * r["chips"]
  assert r["fits"] and r["total_GiB"] <= r["hbm_limit_GiB"]


@pytest.mark.parametrize("key, required", [("v5e-256x2/llama-1b", ("adamw", *OURS)),
                                           ("v5p-128x2/llama-8b", ("adamw", "muon"))])
def test_on_two_slices_no_optimizer_sends_its_own_collectives_over_dcn(key, required):
  row = _results()["rows"][key]
  assert set(required) <= set(row), sorted(row)
  adamw_bytes = row["adamw"]["dcn_transfers"]["ALL_REDUCE"]["bytes"]
  for optimizer in sorted(set(row) - {"optax.contrib.muon"}):
    r = row[optimizer]
    assert r["num_slices"] == 2 and r["fits"], optimizer
    # Its update compiled alone sends nothing across slices ...
    assert r["dcn_ns_collectives"] == 0, (optimizer, r["dcn_update_transfers"])
    # ... and the whole step sends the gradient all-reduce, no larger than AdamW's.
    assert set(r["dcn_transfers"]) == {"ALL_REDUCE"}, (optimizer, r["dcn_transfers"])
    assert r["dcn_transfers"]["ALL_REDUCE"]["bytes"] <= adamw_bytes, optimizer
  assert "dcn_ns_collectives" in row["optax.contrib.muon"], "optax is measured the same way"


def test_every_max_model_row_names_its_fields():
  rows = _results()["max_model"]
  assert {r["slice"] for r in rows} >= {"v5p-128", "v5p-256"}
  for r in rows:
    assert r["fits"] and r["hbm_total_GiB"] <= r["hbm_limit_GiB"], r
    assert {"slice", "num_slices", "preset", "params_B", "per_chip_batch", "seq", "optimizer",
            "hbm_total_GiB", "hbm_temp_GiB", "ns_flops_ratio", "dcn_ns_collectives"} <= set(r)
    assert r["next_batch_fits"] is False or r["per_chip_batch"] == 16, r  # bracketed
