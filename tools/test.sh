#!/usr/bin/env bash
# Install the test dependencies and run the whole test suite (README command 2).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]"
# OpenMMLab (mmcv with ops): from $VISIONATTN_MMCV_WHEELHOUSE or the local wheel cache, else compiled once.
bash tools/install_openmmlab.sh
export PYTHONUNBUFFERED=1
python -m pytest -n "${PYTEST_WORKERS:-2}" --durations=25 "$@"
