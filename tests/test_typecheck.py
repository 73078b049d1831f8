"""mypy on the library (config: pyproject.toml [tool.mypy]), clean."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mypy_is_clean_on_the_library(tmp_path):
  # A cache of its own per run: no state shared with another run or a developer's checkout.
  out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
                        "optax_muon"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
  assert "Success: no issues found" in out.stdout, out.stdout
