"""Entry point: `python -m train --workdir DIR [--config.field=value ...]`.

User errors (bad flags or config, no usable checkpoint, too many skipped steps) end with a
one-line message on stderr and the exit code of `train.errors`; only bugs print a traceback.
"""

import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from train import cli
from train import errors

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")


def _fail(error: errors.TrainerError) -> None:
  print(f"{error.kind}: {error}", file=sys.stderr)
  sys.exit(error.exit_code)


def _not_orbax(record) -> bool:
  return "/orbax/" not in record.pathname or record.levelno >= std_logging.WARNING


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parse, with a flag error as one line and exit code 2 instead of usage text."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(errors.ConfigError(str(e)))


def main(argv):
  if len(argv) > 1:
    _fail(errors.ConfigError(f"unexpected arguments: {argv[1:]}"))
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_not_orbax)  # Orbax logs every file it writes.
  from train import trainer  # pylint: disable=g-import-not-at-top  # After the flag checks.
  config = _CONFIG.value
  cli.apply_open_overrides(config, _OPEN_OVERRIDES)
  try:
    trainer.train_and_evaluate(config, _WORKDIR.value)
  except errors.TrainerError as e:
    _fail(e)


if __name__ == "__main__":
  sys.argv[1:], _OPEN_OVERRIDES = cli.split_open_overrides(sys.argv[1:])
  try:
    cli.check_overrides(sys.argv[1:], _DEFAULT_CONFIG)
  except errors.ConfigError as e:
    _fail(e)
  _WORKDIR = flags.DEFINE_string("workdir", None,
                                 "Directory for checkpoints, metrics and plots.", required=True)
  _CONFIG = config_flags.DEFINE_config_file("config", default=_DEFAULT_CONFIG,
                                            help_string="Training config file.")
  app.run(main, flags_parser=_parse_flags)
