#!/bin/sh
# iLIDS-VID, the 10-split protocol: the databases, then for every split NVAN trained with the MARS recipe
# (validation on the split's own query / gallery) and scored with --results, then one table of each split's
# rank-1/5/10/20 and mAP with their mean and standard deviation (also written as CSV).
# Usage: DATA_DIR=path/to/iLIDS-VID sh run_iLIDSVID.sh [flags for both train_NL.py and evaluate.py,
#        e.g. --device cuda]; later flags override the recipe's. For STE-NVAN set
#        MODEL="--model_type resnet50_NL_stripe_hr --stripes 16 16 16 16".
# Settings (environment): DATA_DIR (./iLIDS-VID), DB (./iLIDSVID_database), RUNS (./ckpt_iLIDSVID: one
# directory per split), SPLITS ("0 1 2 3 4 5 6 7 8 9"), MODEL, INIT (weights to start each split from,
# e.g. a MARS model: --load_ckpt), OVERWRITE (1: start every split afresh). Interpreter: $PY if set, else the
# repository's .venv, else python3. Flags are checked before anything runs; run again after an interruption,
# it continues (see run_splits.sh).
set -e
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi
DATA_DIR=${DATA_DIR:-./iLIDS-VID}
DB=${DB:-./iLIDSVID_database}
RUNS=${RUNS:-./ckpt_iLIDSVID}
SPLITS=${SPLITS:-0 1 2 3 4 5 6 7 8 9}
MODEL=${MODEL:---model_type resnet50_NL}

# every flag, as train_NL.py and evaluate.py parse it, before the database is built or a split trains
CHECK_ONLY=1 DB=$DB RUNS=$RUNS SPLITS=$SPLITS MODEL=$MODEL INIT=$INIT PY=$PY sh "$HERE/run_splits.sh" "$@"
"$PY" "$HERE/create_iLIDSVID_database.py" --data_dir "$DATA_DIR" --output_dir "$DB"
DB=$DB RUNS=$RUNS SPLITS=$SPLITS MODEL=$MODEL INIT=$INIT PY=$PY sh "$HERE/run_splits.sh" "$@"
