"""The config a run was started with, kept beside its checkpoints (`<workdir>/config.json`).

A checkpoint only restores into a train state of the same structure. When none restores,
the difference between the recorded config and the current one usually names the cause
(another optimizer, an option that adds or removes state, another model shape), so the
trainer puts it in the error.

Example:
  >>> import ml_collections
  >>> old = {"optimizer": {"name": "muon", "options": {"power_iterations": 2}}}
  >>> new = ml_collections.ConfigDict({"optimizer": {"name": "muon", "options": {}}})
  >>> differences(old, new)
  ['optimizer.options.power_iterations: 2 -> unset']
"""

import json
from typing import Any

import ml_collections
from etils import epath

FILE = "config.json"
_UNSET = object()


def save(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes `config` as JSON to `<workdir>/config.json` (replacing an older record).

  A torn write only loses the record: `load` then returns None.
  """
  (epath.Path(workdir) / FILE).write_text(
      json.dumps(_plain(config), indent=1, sort_keys=True, default=str) + "\n")


def load(workdir: str) -> dict | None:
  """The recorded config, or None if there is none (or it is unreadable)."""
  path = epath.Path(workdir) / FILE
  try:
    return json.loads(path.read_text())
  except (FileNotFoundError, OSError, ValueError):
    return None


def differences(old: dict, new: ml_collections.ConfigDict | dict) -> list[str]:
  """`key: old -> new` for every dotted key whose value differs (sorted)."""
  a, b = _flat(old), _flat(json.loads(json.dumps(_plain(new), default=str)))
  return [f"{k}: {_show(a.get(k, _UNSET))} -> {_show(b.get(k, _UNSET))}"
          for k in sorted(set(a) | set(b)) if a.get(k, _UNSET) != b.get(k, _UNSET)]


def _plain(config: Any) -> Any:
  return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  """Dotted keys of the leaves (an empty section has none)."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
  return out


def _show(value: Any) -> str:
  return "unset" if value is _UNSET else json.dumps(value)
