"""Errors the trainer reports as one line, each with its own process exit code.

`python -m train` exits with:
  0  finished (or stopped by SIGTERM after a checkpoint),
  1  a bug or an unexpected failure (Python traceback),
  2  `ConfigError`: a bad flag, config field or data path,
  3  `NoUsableCheckpoint`: checkpoints exist but none passes verification and restore,
  4  `TooManySkippedSteps`: too many consecutive steps with non-finite gradients.
"""


class TrainerError(Exception):
  """Base of the errors that end a run with a message and `exit_code`, not a traceback."""

  exit_code = 1
  kind = "error"


class ConfigError(TrainerError, ValueError):
  """A user error in flags, config fields or data paths, found before any work is done."""

  exit_code = 2
  kind = "config error"


class NoUsableCheckpoint(TrainerError, RuntimeError):
  """Every checkpoint in the workdir failed verification, restore or the finiteness check."""

  exit_code = 3
  kind = "checkpoint error"


class TooManySkippedSteps(TrainerError, FloatingPointError):
  """`max_consecutive_skipped` steps in a row had non-finite gradients."""

  exit_code = 4
  kind = "non-finite training"

