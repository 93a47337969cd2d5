#!/bin/sh
# Train and score every split of a 10-split database (create_iLIDSVID_database.py, create_PRID2011_database.py):
# for split k, train_NL.py on DB/split_k with the MARS recipe, validating on the split's query / gallery, then
# evaluate.py --results RUNS/split_k/results.json; at the end, python -m util.splits_summary prints each
# split's rank-1/5/10/20 and mAP with their mean and standard deviation and writes RUNS/summary.csv.
# run_iLIDSVID.sh and run_PRID2011.sh build the database and call this.
# Usage: DB=./iLIDSVID_database RUNS=./ckpt_iLIDSVID sh run_splits.sh [flags for train_NL.py and evaluate.py]
# Settings (environment): DB, RUNS, SPLITS ("0 1 ... 9"), MODEL ("--model_type resnet50_NL"), INIT (weights
# to start each split from: --load_ckpt). Interpreter: $PY if set, else the repository's .venv, else python3.
set -e
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi
: "${DB:?set DB to a directory holding split_0 .. split_9}"
: "${RUNS:?set RUNS to the directory for the runs}"
SPLITS=${SPLITS:-0 1 2 3 4 5 6 7 8 9}
MODEL=${MODEL:---model_type resnet50_NL}

RECIPE="--batch_size 64 --n_epochs 200 --lr 0.0001 --lr_step_size 50 --optimizer adam --log_path loss.txt
        --class_per_batch 8 --track_per_class 4 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done
        --track_id_loss --non_layers 0 2 3 0"
EVAL="--batch_size 64 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done --non_layers 0 2 3 0"

RESULTS=
for k in $SPLITS; do
    D=$DB/split_$k
    TEST="--test_txt $D/test_path.txt --test_info $D/test_info.npy --query_info $D/query_IDX.npy
          --gallery_info $D/gallery_IDX.npy"
    "$PY" "$HERE/train_NL.py" --train_txt "$D/train_path.txt" --train_info "$D/train_info.npy" $TEST $RECIPE \
        $MODEL ${INIT:+--load_ckpt "$INIT"} --ckpt "$RUNS/split_$k" "$@"
    "$PY" "$HERE/evaluate.py" $TEST $EVAL $MODEL --load_ckpt "$RUNS/split_$k/ckpt_best.pth" \
        --results "$RUNS/split_$k/results.json" "$@"
    RESULTS="$RESULTS $RUNS/split_$k/results.json"
done
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m util.splits_summary $RESULTS --csv "$RUNS/summary.csv"
