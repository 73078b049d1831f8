"""The distribution: one top-level package, the library's own dependencies only, no upper pins.

The slow test installs the wheel into a fresh virtual environment (network: the package
registry) and runs the library's tests there.
"""

import ast
import os
import pathlib
import re
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY_DEPS = {"jax", "optax", "chex", "numpy"}
TRAINER_ONLY = {"flax", "orbax-checkpoint", "tensorflow-datasets", "grain", "array-record",
                "ml-collections", "matplotlib", "tqdm", "sentencepiece"}
# Test files that need nothing but the library, numpy, optax and pytest.
LIBRARY_TESTS = ("test_newton_schulz.py", "test_gram_newton_schulz.py", "test_invariants.py",
                 "test_bad_input.py", "test_optax_equivalence.py", "test_torch_reference.py",
                 "test_optax_contract_battery.py", "test_hyperparameter_validation.py",
                 "test_normuon.py")


def _normalize(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("wheel")
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                  "-w", str(out), str(ROOT)], check=True, capture_output=True)
  (path,) = out.glob("optax_muon-*.whl")
  return path


def _metadata(wheel: pathlib.Path) -> list[str]:
  with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    return z.read(name).decode().splitlines()


def test_wheel_holds_one_top_level_package(wheel):
  with zipfile.ZipFile(wheel) as z:
    tops = {n.split("/")[0] for n in z.namelist()}
  assert {t for t in tops if not t.endswith(".dist-info")} == {"optax_muon"}, tops


def test_wheel_marks_the_package_typed(wheel):
  # PEP 561: a user's type checker reads the aliases' written-out signatures.
  with zipfile.ZipFile(wheel) as z:
    assert "optax_muon/py.typed" in z.namelist()
    assert "optax_muon/matrices.py" in z.namelist()


def test_wheel_requires_only_what_the_library_imports(wheel):
  requires = [l.split(":", 1)[1].strip() for l in _metadata(wheel) if l.startswith("Requires-Dist:")]
  base = [r for r in requires if "extra ==" not in r]
  names = {_normalize(re.split(r"[ <>=!~;\[]", r)[0]) for r in base}
  assert names == LIBRARY_DEPS, base
  for r in requires:  # lower bounds only: no release of jax, optax or flax is locked out
    name = _normalize(re.split(r"[ <>=!~;\[]", r)[0])
    if name in ("jax", "optax", "flax"):
      assert "<" not in r.split(";")[0], r
  assert not names & TRAINER_ONLY


def test_library_imports_nothing_beyond_its_dependencies():
  allowed = LIBRARY_DEPS | {"optax_muon"}
  stdlib = set(sys.stdlib_module_names)
  for f in (ROOT / "optax_muon").rglob("*.py"):
    for node in ast.walk(ast.parse(f.read_text())):
      if isinstance(node, ast.Import):
        tops = [a.name.split(".")[0] for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        tops = [node.module.split(".")[0]]
      else:
        continue
      for top in tops:
        assert top in allowed or top in stdlib, (f, top)


def test_nothing_in_the_repository_points_outside_it():
  # Every tracked text file (results JSON included), as CI's clean clone has them.
  pattern = re.compile(r"\.\./shared|ALGORITHMS\.md")
  tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
  assert tracked
  for name in tracked:
    f = ROOT / name
    if f.suffix in (".png", ".jpg", ".model") or f.name == "test_packaging.py" or not f.is_file():
      continue
    assert not pattern.search(f.read_text(errors="ignore")), f


@pytest.mark.slow
def test_wheel_installs_alone_in_a_fresh_venv_and_passes_the_library_tests(wheel, tmp_path):
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  py = str(venv / "bin" / "python")
  subprocess.run([py, "-m", "pip", "install", "-q", str(wheel)], check=True)
  subprocess.run([py, "-c", "import optax_muon, sys; "
                  "assert 'flax' not in sys.modules and 'train' not in sys.modules"], check=True)
  subprocess.run([py, "-m", "pip", "install", "-q", "pytest", "pytest-xdist"], check=True)
  tests = [str(ROOT / "tests" / t) for t in LIBRARY_TESTS]
  assert all(os.path.exists(t) for t in tests), tests
  # Run from an empty directory with the installed package, not the checkout.
  subprocess.run([py, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                  "--rootdir", str(tmp_path), "-c", "/dev/null", *tests], check=True,
                 cwd=tmp_path)
