#!/usr/bin/env bash
# Create .venv and install the project with its development extras, idempotently: a second
# run with an unchanged pyproject.toml takes well under a second.
#   deploy/bootstrap.sh [EXTRAS]      (default: dev)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${1:-dev}
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: Python 3.11 or newer is needed as '$PYTHON' (set PYTHON=...)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then  # Debian keeps venv in its own package
    rm -rf .venv
    apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends python3-venv >/dev/null
    "$PYTHON" -m venv .venv
  fi
fi
stamp=".venv/.installed-$EXTRAS-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing orchestration-service[$EXTRAS] into .venv" >&2
  mkdir -p var
  # The project was once named "orchestration": drop that install, whose finder kept apps/,
  # orchestration/ and workers/ importable from anywhere (they import from the checkout now).
  if ! { .venv/bin/python -m pip install -q --upgrade pip \
         && .venv/bin/python -m pip uninstall -q -y orchestration \
         && .venv/bin/python -m pip install -q -e ".[$EXTRAS]"; } >var/bootstrap.log 2>&1; then
    tail -n 30 var/bootstrap.log >&2
    echo "bootstrap: pip install failed (whole output in var/bootstrap.log)" >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
