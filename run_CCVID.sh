#!/bin/sh
# CCVID end to end: the database (with clothes labels), NVAN and STE-NVAN trained with the paper's MARS recipe,
# then each scored with CAL's CCVID protocol: the plain AP (--ap_rule plain), CAL's test clips, the general and the
# same-clothes / clothes-changing results (SC / CC), written to <ckpt>/results.json. See docs/datasets-clothes.md
# for the published baselines.
# Usage: DATA_DIR=path/to/CCVID sh run_CCVID.sh [flags for train_NL.py and evaluate.py, e.g. --device cuda]
# Settings (environment): DATA_DIR (./CCVID), DB (./CCVID_database), RUNS (.: where ckpt_CCVID_NVAN and
# ckpt_CCVID_STE-NVAN go), MODELS ("NVAN STE-NVAN"), TEST_SAMPLING (strided: CAL's test clips, which its CCVID
# figures use; chunks: the paper's one clip), TEST_S (8). Interpreter: $PY if set, else the .venv, else python3.
set -e
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi
DATA_DIR=${DATA_DIR:-./CCVID}
DB=${DB:-./CCVID_database}
RUNS=${RUNS:-.}
MODELS=${MODELS:-NVAN STE-NVAN}
TEST_SAMPLING=${TEST_SAMPLING:-strided}
TEST_S=${TEST_S:-8}

"$PY" "$HERE/create_CCVID_database.py" --data_dir "$DATA_DIR" --output_dir "$DB"

TEST="--test_txt $DB/test_path.txt --test_info $DB/test_info.npy --query_info $DB/query_IDX.npy
      --gallery_info $DB/gallery_IDX.npy --ap_rule plain"
RECIPE="--batch_size 64 --n_epochs 200 --lr 0.0001 --lr_step_size 50 --optimizer adam --log_path loss.txt
        --class_per_batch 8 --track_per_class 4 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done
        --track_id_loss --non_layers 0 2 3 0"
EVAL="--batch_size 64 --num_workers 8 --S $TEST_S --latent_dim 2048 --temporal Done --non_layers 0 2 3 0
      --test_sampling $TEST_SAMPLING --test_stride 4 --rank_size 0"

for NAME in $MODELS; do
    case $NAME in
        NVAN) MODEL="--model_type resnet50_NL" ;;
        STE-NVAN) MODEL="--model_type resnet50_NL_stripe_hr --stripes 16 16 16 16" ;;
        *) echo "error: MODELS: unknown model $NAME (expected NVAN, STE-NVAN)" >&2; exit 2 ;;
    esac
    CKPT=$RUNS/ckpt_CCVID_$NAME
    "$PY" "$HERE/train_NL.py" --train_txt "$DB/train_path.txt" --train_info "$DB/train_info.npy" $TEST \
        --clothes_info "$DB/test_clothes.npy" $RECIPE $MODEL --ckpt "$CKPT" "$@"
    "$PY" "$HERE/evaluate.py" $TEST --clothes_info "$DB/test_clothes.npy" $EVAL $MODEL \
        --load_ckpt "$CKPT/ckpt_best.pth" --results "$CKPT/results.json" "$@"
done
