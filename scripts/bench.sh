#!/usr/bin/env bash
# Measures conveyor on PostgreSQL and SQLite against procrastinate and pgqueuer on the same
# PostgreSQL (bench/engine.py says what and how). Creates bench/.venv (if missing) with
# conveyor and the peers of bench/requirements.txt, starts PostgreSQL with conveyor's role,
# and passes its arguments on: scripts/bench.sh [--json] [--n 10000] [--skip-peers] [--only …]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x bench/.venv/bin/python ]; then
  "$PYTHON" -m venv bench/.venv
fi
# Quiet and to stderr, so that with --json stdout holds the JSON alone.
bench/.venv/bin/python -m pip install -q --upgrade pip >&2
bench/.venv/bin/python -m pip install -q -e . -r bench/requirements.txt >&2

bash scripts/postgres-up.sh >&2

exec bench/.venv/bin/python -m bench.engine "$@"
