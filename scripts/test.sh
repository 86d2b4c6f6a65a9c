#!/usr/bin/env bash
# The README's test command: creates .venv (if missing), installs conveyor with its test
# extras, starts PostgreSQL with the role the tests use, and runs the suite on SQLite and
# PostgreSQL (and the dashboard in Chromium, installed if missing). Extra arguments go to pytest
# (e.g. scripts/test.sh -k retry).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,calibration]"

# The dashboard's browser tests drive Debian's Chromium.
bash scripts/chromium-up.sh

if [ -z "${CONVEYOR_TEST_DATABASE_URL:-}" ]; then
  bash scripts/postgres-up.sh
  export CONVEYOR_TEST_DATABASE_URL=postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor
fi

# The VA calibration data are not part of the repository (see the README): the shared copy.
if [ -z "${CONVEYOR_VACALIBRATION_DATA:-}" ] && [ -d ../shared/vacalibration/data ]; then
  export CONVEYOR_VACALIBRATION_DATA=$(cd ../shared/vacalibration/data && pwd)
fi

.venv/bin/ruff check .
# Security lint of the package; each exception is justified where it is made (# nosec + why).
.venv/bin/bandit -q -r conveyor
# Both cores (pytest-xdist): PYTEST_WORKERS=0 runs the suite in this process, for debugging.
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
