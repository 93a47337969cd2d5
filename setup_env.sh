# Sourced by run_demo.sh and run_tests.sh: creates (or reuses) the virtual environment ./.venv with the
# pinned packages of requirements.txt (and requirements-nodeps.txt, without their declared dependencies), and sets PY to its interpreter. The environment is rebuilt only
# when requirements.txt, requirements-nodeps.txt or pyproject.toml changes. Set PYTHON to choose the interpreter that creates it (default python3).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
_stamp="$VENV/.requirements.sha256"
_want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$PY" ] || [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
    echo "Setting up $VENV (first run only; torch is a large download) ..."
    "${PYTHON:-python3}" -m venv "$VENV" || { echo "error: could not create a virtual environment with ${PYTHON:-python3}" >&2; exit 2; }
    "$PY" -m pip install --disable-pip-version-check -q -r "$ROOT/requirements.txt" \
        || { echo "error: pip could not install requirements.txt into $VENV" >&2; exit 2; }
    "$PY" -m pip install --disable-pip-version-check -q --no-deps -r "$ROOT/requirements-nodeps.txt" \
        || { echo "error: pip could not install requirements-nodeps.txt into $VENV" >&2; exit 2; }
    # The project itself, editable: models/ and util/ (and tests/, benchmarks/) import from any directory
    "$PY" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation \
        --config-settings editable_mode=compat -e "$ROOT" \
        || { echo "error: pip could not install the project (pyproject.toml) into $VENV" >&2; exit 2; }
    echo "$_want" > "$_stamp"
fi
export PYTHONUNBUFFERED=1
# OpenMP threads that spin while waiting slow CPU training several-fold whenever another process (a data
# worker, a second rank) shares the cores; passive waiting costs nothing measurable when they do not.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
unset _stamp _want
