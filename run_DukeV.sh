#!/bin/sh
# DukeMTMC-VideoReID end to end: the database, then NVAN and STE-NVAN trained with the paper's MARS recipe
# (the paper trains DukeV with the same flags), then each scored on query / gallery.
# Expected (paper, rank-1 / mAP): NVAN 96.3 / 94.9, STE-NVAN 95.2 / 93.5.
# Usage: DATA_DIR=path/to/DukeMTMC-VideoReID sh run_DukeV.sh [flags for both train_NL.py and evaluate.py,
#        e.g. --device cuda --amp bf16]; later flags override the recipe's.
# Settings (environment): DATA_DIR (./DukeMTMC-VideoReID), DB (./DukeV_database), RUNS (. : where the
# ckpt_DukeV_* directories go). Interpreter: $PY if set, else the repository's .venv, else python3.
set -e
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi
DATA_DIR=${DATA_DIR:-./DukeMTMC-VideoReID}
DB=${DB:-./DukeV_database}
RUNS=${RUNS:-.}

"$PY" "$HERE/create_DukeV_database.py" --data_dir "$DATA_DIR" --output_dir "$DB"

# DukeV's test split is its gallery (every query tracklet is in it; the junk rule removes it from its ranking).
TEST="--test_txt $DB/gallery_path.txt --test_info $DB/gallery_info.npy --query_info $DB/query_IDX.npy"
TRAIN="--train_txt $DB/train_path.txt --train_info $DB/train_info.npy $TEST"
RECIPE="--batch_size 64 --n_epochs 200 --lr 0.0001 --lr_step_size 50 --optimizer adam --log_path loss.txt
        --class_per_batch 8 --track_per_class 4 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done
        --track_id_loss --non_layers 0 2 3 0"
EVAL="--batch_size 64 --num_workers 8 --S 8 --latent_dim 2048 --temporal Done --non_layers 0 2 3 0"

# NVAN (R50 + 5 NL)
CKPT=$RUNS/ckpt_DukeV_NVAN
"$PY" "$HERE/train_NL.py" $TRAIN $RECIPE --model_type resnet50_NL --ckpt "$CKPT" "$@"
"$PY" "$HERE/evaluate.py" $TEST $EVAL --model_type resnet50_NL --load_ckpt "$CKPT/ckpt_best.pth" \
    --results "$CKPT/results.json" "$@"

# STE-NVAN (R50 + 5 NL + stripes + hierarchical)
CKPT=$RUNS/ckpt_DukeV_STE_NVAN
"$PY" "$HERE/train_NL.py" $TRAIN $RECIPE --model_type resnet50_NL_stripe_hr --stripes 16 16 16 16 \
    --ckpt "$CKPT" "$@"
"$PY" "$HERE/evaluate.py" $TEST $EVAL --model_type resnet50_NL_stripe_hr --stripes 16 16 16 16 \
    --load_ckpt "$CKPT/ckpt_best.pth" --results "$CKPT/results.json" "$@"
