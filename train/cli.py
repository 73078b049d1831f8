"""Command-line checks for `python -m train`, run before absl and ml_collections parse the flags.

ml_collections resolves `--config.a.b=v` overrides while the flags are being defined, and an unknown
key there ends in a long chained traceback. `check_overrides` finds such keys first and names the
nearest valid ones.
"""

import ast
import difflib
import importlib.util
import os

import ml_collections

from train.errors import ConfigError

_PREFIXES = ("--config.", "-config.", "--noconfig.", "-noconfig.")


def config_spec(argv: list[str], default: str) -> str:
  """The `--config` value in `argv` (`path` or `path:arg`), else `default`."""
  spec = default
  for i, arg in enumerate(argv):
    if arg.startswith(("--config=", "-config=")):
      spec = arg.split("=", 1)[1]
    elif arg in ("--config", "-config") and i + 1 < len(argv):
      spec = argv[i + 1]
  return spec


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Runs `get_config()` of a config file given as `path` or `path:arg`."""
  path, _, arg = spec.partition(":") if ".py:" in spec else (spec, "", "")
  if not os.path.isfile(path):
    raise ConfigError(f"--config={spec}: no such file")
  module_spec = importlib.util.spec_from_file_location("_train_cli_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def config_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every dotted field path of `config`, sub-dicts included."""
  keys = []
  for name in config.keys():
    key = prefix + name
    keys.append(key)
    value = config[name]
    if isinstance(value, ml_collections.ConfigDict):
      keys += config_keys(value, key + ".")
  return keys


def nearest(key: str, keys: list[str], n: int = 3) -> list[str]:
  """The `n` valid keys most similar to `key` (whole path or last component)."""
  def score(k: str) -> float:
    return max(difflib.SequenceMatcher(None, key, k).ratio(),
               difflib.SequenceMatcher(None, key.rsplit(".", 1)[-1], k.rsplit(".", 1)[-1]).ratio())
  return sorted(keys, key=lambda k: (-score(k), k))[:n]


def override_keys(argv: list[str]) -> list[str]:
  """The dotted keys of the `--config.KEY[=value]` flags in `argv`."""
  keys = []
  for arg in argv:
    for prefix in _PREFIXES:
      if arg.startswith(prefix):
        keys.append(arg[len(prefix):].split("=", 1)[0])
  return keys


# Open-ended sub-dicts: any key below them is an argument of the optimizer alias.
OPEN_KEYS = ("optimizer.options.", "optimizer.lr_ratios.")


def split_open_overrides(argv: list[str]) -> tuple[list[str], dict[str, object]]:
  """Removes `--config.optimizer.options.NAME=V` (and `lr_ratios`) flags from `argv`.

  ml_collections cannot add keys to a sub-dict from the command line, so these are applied to
  the config after parsing (`apply_open_overrides`). Values are Python literals (`8`, `0.3`,
  `None`, `'jordan'`), or strings otherwise (`mup`).
  """
  rest, found = [], {}
  for arg in argv:
    body = next((arg[len(p):] for p in ("--config.", "-config.") if arg.startswith(p)), None)
    if body is not None and body.startswith(OPEN_KEYS) and "=" in body:
      key, value = body.split("=", 1)
      try:
        found[key] = ast.literal_eval(value)
      except (ValueError, SyntaxError):
        found[key] = value
      continue
    rest.append(arg)
  return rest, found


def apply_open_overrides(config: ml_collections.ConfigDict, overrides: dict[str, object]) -> None:
  """Sets the values `split_open_overrides` took out of the flags."""
  for key, value in overrides.items():
    parent, name = key.rsplit(".", 1)
    section = config
    for part in parent.split("."):
      section = section[part]
    with section.unlocked():
      section[name] = value


def check_overrides(argv: list[str], default_config: str) -> None:
  """Raises `ConfigError` for a missing config file or a `--config.KEY` that is not a field."""
  config = load_config(config_spec(argv, default_config))
  keys = config_keys(config)
  for key in override_keys(argv):
    if key not in keys:
      raise ConfigError(f"unknown config key {key!r}; nearest valid keys: "
                        f"{', '.join(nearest(key, keys))}")
