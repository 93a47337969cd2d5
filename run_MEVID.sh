#!/bin/sh
# MEVID end to end: the database (with clothes, location and, given the scale file, scale labels), NVAN and
# STE-NVAN trained with the paper's MARS recipe, then each scored with MEVID's published protocol: the plain AP
# (--ap_rule plain), CAL's strided test clips (--test_sampling strided --test_stride 4), and the overall,
# clothes (SC / CC), location (SL / DL) and scale (SS / DS) results, written to <ckpt>/results.json.
# See docs/datasets-clothes.md for the published baselines.
# Usage: DATA_DIR=path/to/MEVID sh run_MEVID.sh [flags for train_NL.py and evaluate.py, e.g. --device cuda]
# Settings (environment): DATA_DIR (./MEVID), SCALE_FILE (DATA_DIR/test_track_scale.txt when present: the MEVID
# repository's file), DB (./MEVID_database), RUNS (.: where ckpt_MEVID_NVAN and ckpt_MEVID_STE-NVAN go),
# MODELS ("NVAN STE-NVAN"), TEST_S (8: frames per test clip; MEVID's CAL baselines use 16), OVERWRITE (1: start
# the runs afresh). Interpreter: $PY if set, else the repository's .venv, else python3.
# Every flag is checked before the training starts; run again after an interruption, it continues (--resume
# from last.pth), or skips a run whose results.json already scores it with the same protocol.
set -e
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi
DATA_DIR=${DATA_DIR:-./MEVID}
DB=${DB:-./MEVID_database}
RUNS=${RUNS:-.}
MODELS=${MODELS:-NVAN STE-NVAN}
TEST_S=${TEST_S:-8}
if [ -z "$SCALE_FILE" ] && [ -f "$DATA_DIR/test_track_scale.txt" ]; then SCALE_FILE=$DATA_DIR/test_track_scale.txt; fi
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH

RECIPE="--batch_size 64 --n_epochs 200 --lr 0.0001 --lr_step_size 50 --optimizer adam --log_path loss.txt
        --class_per_batch 8 --track_per_class 4 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done
        --track_id_loss --non_layers 0 2 3 0"
EVAL="--batch_size 64 --num_workers 8 --S $TEST_S --latent_dim 2048 --temporal Done --non_layers 0 2 3 0
      --test_sampling strided --test_stride 4 --rank_size 0"

model_flags() {
    case $1 in
        NVAN) MODEL="--model_type resnet50_NL" ;;
        STE-NVAN) MODEL="--model_type resnet50_NL_stripe_hr --stripes 16 16 16 16" ;;
        *) echo "error: MODELS: unknown model $1 (expected NVAN, STE-NVAN)" >&2; exit 2 ;;
    esac
    CKPT=$RUNS/ckpt_MEVID_$1
}

# train [flags] / evaluate [flags]: the two steps of one model; with CHECK set only the flags are checked
# (CHECK=state: evaluate prints how far the run got, see util/cli/run_state.py).
train() {
    set -- --train_txt "$DB/train_path.txt" --train_info "$DB/train_info.npy" --test_txt "$DB/test_path.txt" \
        --test_info "$DB/test_info.npy" --query_info "$DB/query_IDX.npy" --gallery_info "$DB/gallery_IDX.npy" \
        --ap_rule plain --clothes_info "$DB/test_clothes.npy" \
        --location_info "$DB/test_location.npy" $RECIPE $MODEL --ckpt "$CKPT" "$@"
    if [ -n "$SCALE_FILE" ]; then set -- --scale_info "$DB/test_scale.npy" "$@"; fi
    if [ -n "$CHECK" ]; then "$PY" -m util.cli.run_state check NL "$@"; else "$PY" "$HERE/train_NL.py" "$@"; fi
}
evaluate() {
    set -- --test_txt "$DB/test_path.txt" --test_info "$DB/test_info.npy" --query_info "$DB/query_IDX.npy" \
        --gallery_info "$DB/gallery_IDX.npy" --ap_rule plain --clothes_info "$DB/test_clothes.npy" \
        --location_info "$DB/test_location.npy" $EVAL $MODEL \
        --load_ckpt "$CKPT/ckpt_best.pth" --results "$CKPT/results.json" "$@"
    if [ -n "$SCALE_FILE" ]; then set -- --scale_info "$DB/test_scale.npy" "$@"; fi
    case $CHECK in
        state) "$PY" -m util.cli.run_state state "$@" ;;
        ?*) "$PY" -m util.cli.run_state check evaluate "$@" ;;
        *) "$PY" "$HERE/evaluate.py" "$@" ;;
    esac
}

CHECK=1
for NAME in $MODELS; do
    model_flags "$NAME"
    train "$@"
    evaluate "$@"
done
CHECK=

if [ -n "$SCALE_FILE" ]; then
    "$PY" "$HERE/create_MEVID_database.py" --data_dir "$DATA_DIR" --scale_file "$SCALE_FILE" --output_dir "$DB"
else
    "$PY" "$HERE/create_MEVID_database.py" --data_dir "$DATA_DIR" --output_dir "$DB"
fi

for NAME in $MODELS; do
    model_flags "$NAME"
    if [ -n "$OVERWRITE" ] && [ "$OVERWRITE" != 0 ]; then state=overwrite; else CHECK=state; state=$(evaluate "$@"); CHECK=; fi
    case $state in
        done) echo "$CKPT/results.json already scores this run; nothing to do (OVERWRITE=1 starts over)"; continue ;;
        resume) train "$@" --resume "$CKPT" ;;
        restart|overwrite) train "$@" --overwrite ;;
        *) train "$@" ;;
    esac
    evaluate "$@"
done
