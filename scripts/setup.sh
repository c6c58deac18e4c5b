#!/usr/bin/env bash
# Fresh-machine setup: graphviz's `dot` and chromium (Debian), a venv, CPU torch first (a bare
# `torch` would pull a multi-GB CUDA build), then fcngraph with its test extras.
# chromium renders the HTML report headless in tests/test_report.py (Debian 12: ~130 packages,
# ~115 MB download, ~470 MB installed, ~45 s).
set -euo pipefail
cd "$(dirname "$0")/.."
apt_updated=""
apt_install() {  # apt_install PACKAGE WHY: as root with apt-get, else say what to install
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    [ -n "$apt_updated" ] || { apt-get update -qq && apt_updated=1; } || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null \
      || echo "setup: could not install $1; $2" >&2
  else
    echo "setup: $1 not found; install it (apt-get install $1): $2" >&2
  fi
}
command -v dot >/dev/null 2>&1 || apt_install graphviz "diagrams will be written as .dot only"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome \
  >/dev/null 2>&1 || apt_install chromium "the headless-browser check of the HTML report will fail"
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test,ray]"
