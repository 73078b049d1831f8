"""Entry point: `python -m train --workdir DIR [--config.field=value ...]`."""

import logging as std_logging
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from train import trainer

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.",
                               required=True)
_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")
_CONFIG = config_flags.DEFINE_config_file("config", default=_DEFAULT_CONFIG,
                                          help_string="Training config file.")


def _not_orbax(record) -> bool:
  return "/orbax/" not in record.pathname or record.levelno >= std_logging.WARNING


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_not_orbax)  # Orbax logs every file it writes.
  trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
