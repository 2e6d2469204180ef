#!/usr/bin/env bash
# Install the test dependencies and run the whole test suite (README command 2).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]"
export PYTHONUNBUFFERED=1
python -m pytest -n "${PYTEST_WORKERS:-2}" --durations=25 "$@"
