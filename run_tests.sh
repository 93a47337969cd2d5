#!/usr/bin/env bash
# Runs the test suite in ./.venv (created on first use). Extra arguments go to pytest, e.g. -k metric.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
cd "$ROOT"
exec "$PY" -m pytest "$@"
