#!/bin/sh
# PRID2011 (multi-shot), the 10-split protocol: as run_iLIDSVID.sh (cam_a = queries, cam_b = gallery).
# Usage: DATA_DIR=path/to/PRID2011 sh run_PRID2011.sh [flags for both train_NL.py and evaluate.py]
# Settings (environment): DATA_DIR (./PRID2011), SPLIT_FILE (default: DATA_DIR/splits_prid2011.json, else
# DATA_DIR/train_test_splits_prid.mat), DB (./PRID2011_database), RUNS (./ckpt_PRID2011), SPLITS, MODEL,
# INIT, OVERWRITE as run_iLIDSVID.sh. Interpreter: $PY if set, else the repository's .venv, else python3.
set -e
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi
DATA_DIR=${DATA_DIR:-./PRID2011}
DB=${DB:-./PRID2011_database}
RUNS=${RUNS:-./ckpt_PRID2011}
SPLITS=${SPLITS:-0 1 2 3 4 5 6 7 8 9}
MODEL=${MODEL:---model_type resnet50_NL}

# every flag, as train_NL.py and evaluate.py parse it, before the database is built or a split trains
CHECK_ONLY=1 DB=$DB RUNS=$RUNS SPLITS=$SPLITS MODEL=$MODEL INIT=$INIT PY=$PY sh "$HERE/run_splits.sh" "$@"
"$PY" "$HERE/create_PRID2011_database.py" --data_dir "$DATA_DIR" --output_dir "$DB" ${SPLIT_FILE:+--splits "$SPLIT_FILE"}
DB=$DB RUNS=$RUNS SPLITS=$SPLITS MODEL=$MODEL INIT=$INIT PY=$PY sh "$HERE/run_splits.sh" "$@"
