"""Executes every notebook in notebooks/ top to bottom (nbclient, small default settings).

The kernel is the interpreter running the tests: the `python3` kernelspec's `python` is
resolved by jupyter_client to `sys.executable`, and a prepended cell checks it, so a
system Python without jax can never be picked up by accident.
"""

import os
import pathlib
import sys

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 600  # per cell; each notebook takes ~1-2 min on 2 CPU cores


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
  nb = nbformat.read(path, as_version=4)
  assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
      f"{path.name} is committed with outputs"
  check = nbformat.v4.new_code_cell(
      "import sys, os\n"
      f"assert os.path.realpath(sys.executable) == {os.path.realpath(sys.executable)!r}, "
      "sys.executable")
  nb.cells.insert(0, check)
  env_dir = str(tmp_path)
  os.environ.setdefault("MPLBACKEND", "Agg")
  client = nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                                   resources={"metadata": {"path": env_dir}})
  client.execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors, errors
