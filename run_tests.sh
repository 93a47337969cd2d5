#!/usr/bin/env bash
# Lint (ruff, the rules of pyproject.toml) and then the test suite, in ./.venv (created on first use). Extra
# arguments go to pytest, e.g. -k metric. The tests run in two processes (pytest-xdist), the machine's cores.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
cd "$ROOT"
"$PY" -m ruff check .
WORKERS=${TEST_WORKERS:-2}
# One intra-op thread per worker process (and per script a test starts): two workers with two threads each
# oversubscribe two cores and slow the model tests several-fold. An OMP_NUM_THREADS already set is kept.
if [ "$WORKERS" != 0 ]; then export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"; fi
# The training tests write (and fsync) checkpoints of hundreds of MB each: on a memory file system when TMPDIR
# is not set and /dev/shm has 8 GB free (in it and in memory) and runs the scripts the tests write there. A
# passing test's directory is removed when it ends (tmp_path_retention_policy in pyproject.toml), so the tests
# hold a few GB at most; there, only the last run's directories are kept (about 1.3 GB after a failed run).
KEEP=()
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    _shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
    _mem_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null)
    if [ "${_shm_kb:-0}" -ge 8388608 ] && [ "${_mem_kb:-0}" -ge 8388608 ] && _probe=$(mktemp /dev/shm/tests.XXXXXX)
    then
        printf '#!/bin/sh\n' > "$_probe" && chmod +x "$_probe" && "$_probe" 2>/dev/null && export TMPDIR=/dev/shm \
            && KEEP=(-o tmp_path_retention_count=1)
        rm -f "$_probe"
    fi
    unset _shm_kb _mem_kb _probe
fi
exec "$PY" -m pytest -n "$WORKERS" --dist loadgroup ${KEEP[@]+"${KEEP[@]}"} "$@"
