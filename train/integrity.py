"""Per-file checksums of a checkpoint directory: `checksums.json` with size and CRC32 of each file.

Written once orbax has committed a step (the step directory is final), read back before a restore.
A flipped bit, a truncated or zeroed file, or a missing file is reported with its path.
"""

import json
import zlib

from etils import epath

CHECKSUMS = "checksums.json"
_CHUNK = 1 << 24


class ChecksumError(Exception):
  """A checkpoint file does not match its recorded size or CRC32 (or the record is unreadable)."""


def _crc32(path: epath.Path) -> int:
  crc = 0
  with path.open("rb") as f:
    while chunk := f.read(_CHUNK):
      crc = zlib.crc32(chunk, crc)
  return crc


def _files(directory: epath.Path, prefix: str = "") -> list[str]:
  """Relative paths of every file under `directory` except the checksums file itself."""
  out = []
  for p in sorted(directory.iterdir(), key=lambda p: p.name):
    if p.is_dir():
      out += _files(p, f"{prefix}{p.name}/")
    elif p.name not in (CHECKSUMS, CHECKSUMS + ".tmp"):
      out.append(prefix + p.name)
  return out


def write_checksums(directory: epath.Path) -> dict:
  """Records size and CRC32 of every file under `directory`; returns the record."""
  record = {"algorithm": "crc32", "files": {
      rel: {"size": (directory / rel).stat().length, "crc32": _crc32(directory / rel)}
      for rel in _files(directory)}}
  tmp = directory / (CHECKSUMS + ".tmp")
  tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
  tmp.rename(directory / CHECKSUMS)  # Atomic on local disks: never a half-written record.
  return record


def verify_checksums(directory: epath.Path) -> bool:
  """Checks every recorded file; False if there is no record, `ChecksumError` on a mismatch."""
  path = directory / CHECKSUMS
  if not path.exists():
    return False
  try:
    files = json.loads(path.read_text())["files"]
  except (ValueError, KeyError, TypeError) as e:
    raise ChecksumError(f"{path}: unreadable ({type(e).__name__})") from e
  for rel, want in sorted(files.items()):
    file = directory / rel
    if not file.exists():
      raise ChecksumError(f"{file}: missing")
    size = file.stat().length
    if size != want["size"]:
      raise ChecksumError(f"{file}: {size} bytes, expected {want['size']} (truncated or "
                          "overwritten)")
    if _crc32(file) != want["crc32"]:
      raise ChecksumError(f"{file}: checksum mismatch (corrupted in place)")
  return True
