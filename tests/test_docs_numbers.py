"""The docs agree with the generated results files, and the README reads top-down.

Numbers live in ``benchmarks/results/*.md`` (written by the benchmark scripts). A doc may
quote a block of one verbatim between ``<!-- quoted from PATH -->`` and
``<!-- end quote -->``; any other number with three or more significant digits in a doc
must agree, to the digits it shows, with a number in a results file.
"""

import math
import pathlib
import re

import jax
import jax.numpy as jnp
import optax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
INDEX = ROOT / "benchmarks" / "README.md"
OWN_DOCS = [README, ROOT / "docs" / "algorithms.md", ROOT / "docs" / "spectral_diagnostics.md",
            *sorted((ROOT / "docs" / "notes").glob("*.md"))]
# Docs whose measured numbers come from the results files (algorithms.md holds the math).
MEASURED_DOCS = [README, INDEX, ROOT / "docs" / "spectral_diagnostics.md",
                 *sorted((ROOT / "docs" / "notes").glob("*.md"))]
QUOTE = re.compile(r"<!-- quoted from (\S+) -->\n(.*?)<!-- end quote -->", re.S)
NUMBER = re.compile(r"(?<![\w.\-/])(\d+\.\d+)(?![\d.]*\d)")


def _prose(text: str) -> str:
  """The text without code blocks, quoted blocks, arXiv ids and Python versions."""
  text = re.sub(r"```.*?```", "", text, flags=re.S)
  text = QUOTE.sub("", text)
  return re.sub(r"arXiv \d+\.\d+|arxiv\.org/\S*|Python (?:≥ )?\d+\.\d+", "", text)


def _significant(number: str) -> int:
  return len(number.replace(".", "").lstrip("0"))


def _results_numbers() -> list[tuple[float, int]]:
  """Every decimal number in the results markdown: (value, decimals shown)."""
  text = "\n".join(p.read_text() for p in sorted(RESULTS.glob("*.md")))
  return [(float(n), len(n.split(".")[1])) for n in NUMBER.findall(text)]


def _agrees(number: str, known: list[tuple[float, int]]) -> bool:
  """``number`` is a results number, shown with as many or fewer decimals (rounded)."""
  decimals = len(number.split(".")[1])
  half = 0.5 * 10.0 ** -decimals + 1e-12
  return any(d >= decimals and abs(v - float(number)) <= half for v, d in known)


@pytest.mark.parametrize("doc", [README, INDEX, *OWN_DOCS[1:]], ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_blocks_are_copied_verbatim_from_their_results_file(doc):
  for source, block in QUOTE.findall(doc.read_text()):
    path = ROOT / source
    assert path.parent == RESULTS and path.exists(), f"{doc.name} quotes {source}"
    lines = set(path.read_text().splitlines())
    for line in filter(None, block.splitlines()):
      assert line in lines, f"{doc.name}: not in {source}: {line}"


def test_readme_quotes_the_headline_table():
  quotes = QUOTE.findall(README.read_text())
  assert quotes[0][0] == "benchmarks/results/headline.md"
  assert {s for s, _ in quotes[1:]} <= {"benchmarks/results/transfer.md",
                                        "benchmarks/results/pod_scale.md"}
  header = quotes[0][1].splitlines()[0]
  assert header.startswith("| optimizer |") and len(quotes[0][1].splitlines()) >= 4


@pytest.mark.parametrize("doc", MEASURED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_numbers_agree_with_the_results_files(doc):
  known = _results_numbers()
  bad = [(i, n) for i, line in enumerate(_prose(doc.read_text()).splitlines(), 1)
         for n in NUMBER.findall(line) if _significant(n) >= 3 and not _agrees(n, known)]
  assert not bad, f"{doc.name}: numbers found in no results file: {bad}"


def test_agreement_rule():
  known = [(1.6165, 4), (0.0166, 4), (2.0, 1)]
  assert _agrees("1.617", known) and _agrees("1.6165", known) and _agrees("0.017", known)
  assert not _agrees("1.618", known) and not _agrees("1.61650", known)
  assert not _agrees("2.00", known)  # shown with more digits than the results file has


@pytest.mark.parametrize("doc", [README, INDEX], ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_and_index_hold_no_numbers_outside_quotes(doc):
  prose = re.sub(r"`[^`]*`", "", _prose(doc.read_text()))  # commands may hold lrs
  assert NUMBER.findall(prose) == []
  assert not re.findall(r"\d(?:\.\d+)?\s?×", prose)


def test_readme_reads_top_down():
  lines = README.read_text().splitlines()
  assert len(lines) <= 180
  first_code = next(i for i, line in enumerate(lines) if line.startswith("```python"))
  assert first_code < 60
  start = lines.index("## Quickstart")
  end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
  section = "\n".join(lines[start:end])
  commands = re.findall(r"^bash run\.sh \w+", section, flags=re.M)
  assert commands == ["bash run.sh train", "bash run.sh test"]
  for link in ("docs/", "benchmarks/README.md", "train/README.md", "docs/pod_scale.md"):
    assert link in README.read_text(), link


def test_readme_examples_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert len(blocks) == 2
  scope = {}
  exec(blocks[0], scope)  # the example: one Muon step
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(scope["params"]))
  assert float(jnp.abs(scope["params"]["mlp"]["kernel"]).max()) > 0
  exec(blocks[1], scope)  # a NorMuon-like optimizer of public pieces
  tx = scope["my_normuon"](1e-2)
  params = scope["params"]
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  assert not math.isclose(float(jnp.abs(new["mlp"]["kernel"] - params["mlp"]["kernel"]).max()), 0)


def test_index_lists_every_script_and_results_file():
  index = INDEX.read_text()
  scripts = [p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")]
  assert scripts and all(f"`{s}`" in index for s in scripts), scripts
  reports = [p.name for p in RESULTS.glob("*.md")]
  missing = [r for r in reports if f"results/{r}" not in index]
  assert not missing, missing
  assert max(len(line.split()) for line in index.splitlines()) < 120  # no wall of text


@pytest.mark.parametrize("doc", OWN_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_existing_benchmarks_and_results(doc):
  text = doc.read_text()
  paths = re.findall(r"benchmarks/[\w/.]+\.(?:py|md|json|png)", text)
  missing = [p for p in paths if not (ROOT / p).exists()]
  assert not missing, f"{doc.name} names {missing}"
