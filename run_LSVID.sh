#!/bin/sh
# LS-VID end to end: the database, NVAN trained with the MARS recipe (validation on query / gallery), then
# scored with --results. The query is not in the gallery (gallery_IDX.npy: every other test sequence).
# Usage: DATA_DIR=path/to/LS-VID sh run_LSVID.sh [flags for both train_NL.py and evaluate.py, e.g. --device cuda]
# Settings (environment): DATA_DIR (./LS-VID), DB (./LSVID_database), RUNS (.: where ckpt_LSVID_NVAN goes),
# MODEL ("--model_type resnet50_NL"), OVERWRITE (1: start the run afresh, replacing it). Interpreter: $PY if
# set, else the repository's .venv, else python3.
# Every flag is checked before the training starts; run again after an interruption, it continues (--resume
# from last.pth), or skips a run whose results.json already scores it with the same protocol.
set -e
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi
DATA_DIR=${DATA_DIR:-./LS-VID}
DB=${DB:-./LSVID_database}
RUNS=${RUNS:-.}
MODEL=${MODEL:---model_type resnet50_NL}
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH

RECIPE="--batch_size 64 --n_epochs 200 --lr 0.0001 --lr_step_size 50 --optimizer adam --log_path loss.txt
        --class_per_batch 8 --track_per_class 4 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done
        --track_id_loss --non_layers 0 2 3 0"
EVAL="--batch_size 64 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done --non_layers 0 2 3 0"
CKPT=$RUNS/ckpt_LSVID_NVAN

# train [flags] / evaluate [flags]: the two steps; with CHECK set only the flags are checked (CHECK=state:
# evaluate prints how far the run got, see util/cli/run_state.py).
train() {
    set -- --train_txt "$DB/train_path.txt" --train_info "$DB/train_info.npy" --test_txt "$DB/test_path.txt" \
        --test_info "$DB/test_info.npy" --query_info "$DB/query_IDX.npy" --gallery_info "$DB/gallery_IDX.npy" \
        $RECIPE $MODEL --ckpt "$CKPT" "$@"
    if [ -n "$CHECK" ]; then "$PY" -m util.cli.run_state check NL "$@"; else "$PY" "$HERE/train_NL.py" "$@"; fi
}
evaluate() {
    set -- --test_txt "$DB/test_path.txt" --test_info "$DB/test_info.npy" --query_info "$DB/query_IDX.npy" \
        --gallery_info "$DB/gallery_IDX.npy" $EVAL $MODEL --load_ckpt "$CKPT/ckpt_best.pth" \
        --results "$CKPT/results.json" "$@"
    case $CHECK in
        state) "$PY" -m util.cli.run_state state "$@" ;;
        ?*) "$PY" -m util.cli.run_state check evaluate "$@" ;;
        *) "$PY" "$HERE/evaluate.py" "$@" ;;
    esac
}

CHECK=1
train "$@"
evaluate "$@"
CHECK=

"$PY" "$HERE/create_LSVID_database.py" --data_dir "$DATA_DIR" --output_dir "$DB"

if [ -n "$OVERWRITE" ] && [ "$OVERWRITE" != 0 ]; then state=overwrite; else CHECK=state; state=$(evaluate "$@"); CHECK=; fi
case $state in
    done) echo "$CKPT/results.json already scores this run; nothing to do (OVERWRITE=1 starts over)"; exit 0 ;;
    resume) train "$@" --resume "$CKPT" ;;
    restart|overwrite) train "$@" --overwrite ;;
    *) train "$@" ;;
esac
evaluate "$@"
