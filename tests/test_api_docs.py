"""The API reference (docs/api, Sphinx autodoc from the docstrings) builds with no warning."""

import inspect
import pathlib
import re
import subprocess
import sys

import optax_muon as om
from optax_muon import diagnostics
from optax_muon import matrices

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docs" / "api"


def test_api_reference_builds_with_warnings_as_errors(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-E", "-b", "html",
       "-d", str(tmp_path / "doctrees"), str(SOURCE), str(tmp_path / "html")],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
  page = (tmp_path / "html" / "optimizers.html").read_text()
  for alias in ("muon", "muon_plus_plus", "muown", "normuon"):
    assert f'id="optax_muon.{alias}"' in page, alias
  assert "jax.typing.ArrayLike" in page and "@@shared@@" not in page


def _documented(text: str, module: str) -> set[str]:
  names, current = set(), "optax_muon"
  for line in text.splitlines():
    m = re.match(r"\.\. currentmodule:: (\S+)", line)
    if m:
      current = m.group(1)
    m = re.match(r"\.\. (?:auto)?(?:function|class|data):: (\S+)", line)
    if m and current == module:
      names.add(m.group(1))
  return names


def test_api_reference_lists_every_public_name():
  text = "\n".join(f.read_text() for f in sorted(SOURCE.glob("*.rst")))
  for module in (om, matrices, diagnostics):
    # Modules aside, and the names a submodule re-exports from the top level (documented there).
    public = {n for n in module.__all__ if not inspect.ismodule(getattr(module, n))
              and (module is om or getattr(om, n, None) is not getattr(module, n))}
    assert public <= _documented(text, module.__name__), (
        module.__name__, sorted(public - _documented(text, module.__name__)))


def test_documented_arguments_are_all_there():
  # A public function of the library that has an Args section lists every argument.
  for module in (om, matrices):
    for name in module.__all__:
      fn = getattr(module, name)
      doc = inspect.getdoc(fn) or ""
      if not inspect.isfunction(fn) or "Args:" not in doc:
        continue
      for p in inspect.signature(fn).parameters.values():
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
          assert re.search(rf"^\s*{p.name}( \(.*\))?:", doc, re.M), (name, p.name)
