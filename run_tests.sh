#!/usr/bin/env bash
# Lint (ruff, the rules of pyproject.toml) and then the test suite, in ./.venv (created on first use). Extra
# arguments go to pytest, e.g. -k metric. The tests run in two processes (pytest-xdist), the machine's cores.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
cd "$ROOT"
"$PY" -m ruff check .
exec "$PY" -m pytest -n "${TEST_WORKERS:-2}" --dist loadgroup "$@"
