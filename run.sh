#!/usr/bin/env bash
# One entry point for the README's two commands:
#   bash run.sh train   set up .venv, train the default model on the built-in corpus with Muon
#   bash run.sh test    set up .venv, run the test suite
# Extra arguments are passed on (e.g. bash run.sh train --config.train_steps=100,
# bash run.sh test -m slow). Needs only Python >= 3.11 and the package registry.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'
    touch "$stamp"
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  train)
    setup
    exec "$VENV/bin/python" -m train --workdir "${WORKDIR:-runs/default}" "$@"
    ;;
  test)
    setup
    # -n 2: the suite runs on both cores; doctests of the library run too.
    exec "$VENV/bin/python" -m pytest -n 2 -q --doctest-modules optax_muon tests "$@"
    ;;
  *)
    echo "usage: bash run.sh train|test [args...]" >&2
    exit 2
    ;;
esac
