#!/bin/sh
# DukeMTMC-VideoReID end to end: the database, then NVAN and STE-NVAN trained with the paper's MARS recipe
# (the paper trains DukeV with the same flags), then each scored on query / gallery.
# Expected (paper, rank-1 / mAP): NVAN 96.3 / 94.9, STE-NVAN 95.2 / 93.5.
# Usage: DATA_DIR=path/to/DukeMTMC-VideoReID sh run_DukeV.sh [flags for both train_NL.py and evaluate.py,
#        e.g. --device cuda --amp bf16]; later flags override the recipe's.
# Settings (environment): DATA_DIR (./DukeMTMC-VideoReID), DB (./DukeV_database), RUNS (. : where the
# ckpt_DukeV_* directories go), OVERWRITE (1: start both runs afresh, replacing them). Interpreter: $PY if
# set, else the repository's .venv, else python3.
# Every flag is checked before the first training starts; run again after an interruption, it continues
# (--resume from last.pth), or skips a run whose results.json already scores it with the same protocol.
set -e
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi
DATA_DIR=${DATA_DIR:-./DukeMTMC-VideoReID}
DB=${DB:-./DukeV_database}
RUNS=${RUNS:-.}
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH

RECIPE="--batch_size 64 --n_epochs 200 --lr 0.0001 --lr_step_size 50 --optimizer adam --log_path loss.txt
        --class_per_batch 8 --track_per_class 4 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done
        --track_id_loss --non_layers 0 2 3 0"
EVAL="--batch_size 64 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done --non_layers 0 2 3 0"
NVAN="--model_type resnet50_NL"
STE_NVAN="--model_type resnet50_NL_stripe_hr --stripes 16 16 16 16"

# train CKPT MODEL [flags] / evaluate CKPT MODEL [flags]. DukeV's test split is its gallery (every query
# tracklet is in it; the junk rule removes it from its ranking). With CHECK set only the flags are checked
# (CHECK=state: evaluate prints how far the run got, see util/cli/run_state.py).
train() {
    c=$1
    m=$2
    shift 2
    set -- --train_txt "$DB/train_path.txt" --train_info "$DB/train_info.npy" --test_txt "$DB/gallery_path.txt" \
        --test_info "$DB/gallery_info.npy" --query_info "$DB/query_IDX.npy" $RECIPE $m --ckpt "$c" "$@"
    if [ -n "$CHECK" ]; then "$PY" -m util.cli.run_state check NL "$@"; else "$PY" "$HERE/train_NL.py" "$@"; fi
}
evaluate() {
    c=$1
    m=$2
    shift 2
    set -- --test_txt "$DB/gallery_path.txt" --test_info "$DB/gallery_info.npy" --query_info "$DB/query_IDX.npy" \
        $EVAL $m --load_ckpt "$c/ckpt_best.pth" --results "$c/results.json" "$@"
    case $CHECK in
        state) "$PY" -m util.cli.run_state state "$@" ;;
        ?*) "$PY" -m util.cli.run_state check evaluate "$@" ;;
        *) "$PY" "$HERE/evaluate.py" "$@" ;;
    esac
}

# run CKPT MODEL [flags]: train (or continue, or skip) and score one model
run() {
    if [ -n "$OVERWRITE" ] && [ "$OVERWRITE" != 0 ]; then
        state=overwrite
    else
        CHECK=state
        state=$(evaluate "$@")
        CHECK=
    fi
    c=$1
    m=$2
    shift 2
    case $state in
        done) echo "$c/results.json already scores this run; skipped (OVERWRITE=1 starts over)"; return 0 ;;
        resume) train "$c" "$m" "$@" --resume "$c" ;;
        restart|overwrite) train "$c" "$m" "$@" --overwrite ;;
        *) train "$c" "$m" "$@" ;;
    esac
    evaluate "$c" "$m" "$@"
}

CHECK=1
train "$RUNS/ckpt_DukeV_NVAN" "$NVAN" "$@"
evaluate "$RUNS/ckpt_DukeV_NVAN" "$NVAN" "$@"
CHECK=

"$PY" "$HERE/create_DukeV_database.py" --data_dir "$DATA_DIR" --output_dir "$DB"

run "$RUNS/ckpt_DukeV_NVAN" "$NVAN" "$@"     # NVAN (R50 + 5 NL)
run "$RUNS/ckpt_DukeV_STE_NVAN" "$STE_NVAN" "$@"  # STE-NVAN (R50 + 5 NL + stripes + hierarchical)
