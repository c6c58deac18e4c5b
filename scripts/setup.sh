#!/usr/bin/env bash
# Fresh-machine setup: graphviz's `dot` (Debian), a venv, CPU torch first (a bare `torch`
# would pull a multi-GB CUDA build), then fcngraph with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dot >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) \
      || echo "setup: could not install graphviz; diagrams will be written as .dot only" >&2
  else
    echo "setup: 'dot' not found; install graphviz (apt-get install graphviz) for SVG/PNG diagrams" >&2
  fi
fi
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test,ray]"
