"""The trainer logs the optimizer's plan (optax_muon.describe) at start."""

import logging

from train import trainer


def test_trainer_logs_the_plan(make_config, tmp_path, caplog):
  caplog.set_level(logging.INFO)
  config = make_config(train_steps=1, eval_every=1, checkpoint_every=1, log_every=1,
                       optimizer__name="muown")
  trainer.train_and_evaluate(config, str(tmp_path))
  plans = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Optimizer plan:")]
  assert len(plans) == 1
  lines = plans[0].splitlines()
  assert lines[1].startswith("optax_muon.describe: muown, scale 'moonlight' (rms 0.2)")
  rows = {line.split()[0]: line for line in lines[3:]}
  assert "  adamw  " in rows["lm_head/kernel"] and "  adamw  " in rows["embed/embedding"]
  assert "  muon  " in rows["layers/0/mlp/up/kernel"]
