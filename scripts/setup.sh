#!/usr/bin/env bash
# Create .venv (if missing) and install roost with the given extras.
# Usage: scripts/setup.sh EXTRAS   e.g. scripts/setup.sh local,dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-local}"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "roost needs Python >= 3.11")'
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv" >&2
    python3 -m venv .venv
fi
echo "==> installing roost[$extras] (the first install builds llama-cpp-python: a few minutes)" >&2
# torch is pinned to the CPU build (see pyproject); pip finds it in the machine's wheel dir or PyPI.
.venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip >/dev/null
.venv/bin/python -m pip install --disable-pip-version-check -q -e ".[$extras]"
