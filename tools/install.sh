#!/usr/bin/env bash
# Create (or update) ./.venv with the pinned dependencies and build mxpose into it.
# Usage: bash tools/install.sh        (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[install] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --disable-pip-version-check --upgrade pip setuptools wheel
# The constraints keep the resolver from pulling numpy 2 / opencv 5 (mxnet 1.9.1 needs numpy<1.24).
$PIP install -q --disable-pip-version-check -c constraints.txt -r requirements.txt
# No build isolation: compile the Cython kernels against the pinned numpy installed above.
$PIP install -q --disable-pip-version-check -c constraints.txt --no-build-isolation --no-deps -e .
.venv/bin/python -c "import mxpose, mxnet; print('[install] mxpose', mxpose.__version__, '| mxnet', mxnet.__version__)"
