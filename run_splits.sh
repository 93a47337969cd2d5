#!/bin/sh
# Train and score every split of a 10-split database (create_iLIDSVID_database.py, create_PRID2011_database.py):
# for split k, train_NL.py on DB/split_k with the MARS recipe, validating on the split's query / gallery, then
# evaluate.py --results RUNS/split_k/results.json; at the end, python -m util.splits_summary prints each
# split's rank-1/5/10/20 and mAP with their mean and standard deviation and writes RUNS/summary.csv.
# run_iLIDSVID.sh and run_PRID2011.sh build the database and call this.
# Usage: DB=./iLIDSVID_database RUNS=./ckpt_iLIDSVID sh run_splits.sh [flags for train_NL.py and evaluate.py]
# Settings (environment): DB, RUNS, SPLITS ("0 1 ... 9"), MODEL ("--model_type resnet50_NL"), INIT (weights
# to start each split from: --load_ckpt), OVERWRITE (1: start every split afresh, replacing its run).
# Interpreter: $PY if set, else the repository's .venv, else python3.
# Every flag is checked (as train_NL.py and evaluate.py parse it) before the first split trains. Run again
# after an interruption, it continues: a split whose results.json scores this run's checkpoint with the same
# protocol is skipped, a split with a last.pth is resumed (--resume), the others start.
set -e
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi
: "${DB:?set DB to a directory holding split_0 .. split_9}"
: "${RUNS:?set RUNS to the directory for the runs}"
SPLITS=${SPLITS:-0 1 2 3 4 5 6 7 8 9}
MODEL=${MODEL:---model_type resnet50_NL}
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH

RECIPE="--batch_size 64 --n_epochs 200 --lr 0.0001 --lr_step_size 50 --optimizer adam --log_path loss.txt
        --class_per_batch 8 --track_per_class 4 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done
        --track_id_loss --non_layers 0 2 3 0"
EVAL="--batch_size 64 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done --non_layers 0 2 3 0"

# train K [flags]: train_NL.py on split K; with CHECK set, only its flags are checked.
train() {
    d=$DB/split_$1
    c=$RUNS/split_$1
    shift
    set -- --train_txt "$d/train_path.txt" --train_info "$d/train_info.npy" --test_txt "$d/test_path.txt" \
        --test_info "$d/test_info.npy" --query_info "$d/query_IDX.npy" --gallery_info "$d/gallery_IDX.npy" \
        $RECIPE $MODEL ${INIT:+--load_ckpt "$INIT"} --ckpt "$c" "$@"
    if [ -n "$CHECK" ]; then "$PY" -m util.cli.run_state check NL "$@"; else "$PY" "$HERE/train_NL.py" "$@"; fi
}

# evaluate K [flags]: evaluate.py on split K's best checkpoint; with CHECK=1 only its flags are checked, with
# CHECK=state it prints how far the split's run got (util/cli/run_state.py).
evaluate() {
    d=$DB/split_$1
    c=$RUNS/split_$1
    shift
    set -- --test_txt "$d/test_path.txt" --test_info "$d/test_info.npy" --query_info "$d/query_IDX.npy" \
        --gallery_info "$d/gallery_IDX.npy" $EVAL $MODEL --load_ckpt "$c/ckpt_best.pth" --results "$c/results.json" "$@"
    case $CHECK in
        state) "$PY" -m util.cli.run_state state "$@" ;;
        ?*) "$PY" -m util.cli.run_state check evaluate "$@" ;;
        *) "$PY" "$HERE/evaluate.py" "$@" ;;
    esac
}

# every flag, before the first split trains (CHECK_ONLY=1: only that, before the database is built)
for k in $SPLITS; do
    CHECK=1
    train "$k" "$@"
    evaluate "$k" "$@"
    CHECK=
    break
done
if [ -n "$CHECK_ONLY" ]; then exit 0; fi

for k in $SPLITS; do
    if [ -n "$OVERWRITE" ] && [ "$OVERWRITE" != 0 ]; then
        state=overwrite
    else
        CHECK=state
        state=$(evaluate "$k" "$@")
        CHECK=
    fi
    case $state in
        done) echo "split $k: $RUNS/split_$k/results.json already scores this run; skipped (OVERWRITE=1 starts over)"
              continue ;;
        resume) echo "split $k: continuing the interrupted run in $RUNS/split_$k"
                train "$k" "$@" --resume "$RUNS/split_$k" ;;
        restart) echo "split $k: $RUNS/split_$k stopped before its first last.pth; starting it again"
                 train "$k" "$@" --overwrite ;;
        overwrite) train "$k" "$@" --overwrite ;;
        *) train "$k" "$@" ;;
    esac
    evaluate "$k" "$@"
done

set --
for k in $SPLITS; do set -- "$@" "$RUNS/split_$k/results.json"; done
"$PY" -m util.splits_summary "$@" --csv "$RUNS/summary.csv"
