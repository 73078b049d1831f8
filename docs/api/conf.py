"""Sphinx configuration of the API reference (docs/api), built from the docstrings.

Build: ``python -m sphinx -W -b html docs/api <out>`` (tests/test_api_docs.py does, with
warnings as errors). Nothing is downloaded: no intersphinx, the builtin theme.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

project = "optax_muon"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# An "Attributes:" section as a field list: NamedTuple fields are documented once, by autodoc.
napoleon_use_ivar = True
autodoc_member_order = "bysource"
# Signatures show the types as written (optax.ScalarOrSchedule, jax.typing.ArrayLike).
autodoc_typehints = "signature"
autodoc_default_options = {"undoc-members": False}
html_theme = "alabaster"
exclude_patterns = ["_build"]


# The type aliases the signatures are written with, in place of their expansions.
def _aliases():
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from sphinx.util.typing import stringify_annotation  # pylint: disable=g-import-not-at-top
  named = (("optax.ScalarOrSchedule", optax.ScalarOrSchedule),
           ("jax.typing.ArrayLike", jax.typing.ArrayLike),
           ("jax.typing.DTypeLike", jax.typing.DTypeLike))
  return [(stringify_annotation(t, "smart"), name) for name, t in named]


def _short_types(app, what, name, obj, options, signature, return_annotation):
  del app, what, name, obj, options
  for long, short in _aliases():
    signature = signature and signature.replace(long, short)
    return_annotation = return_annotation and return_annotation.replace(long, short)
  return signature, return_annotation


def setup(app):
  app.connect("autodoc-process-signature", _short_types)
