#!/bin/sh
# NVAN (ResNet-50 + 5 non-local blocks) and, commented out, STE-NVAN: the original README's training
# settings on MARS. Swap the comments to train STE-NVAN.
# Usage: sh run_NL.sh [extra flags, e.g. --device cuda --amp bf16; torchrun: see README]
# Interpreter: $PY if set, else the repository's .venv (bash setup_env.sh creates it), else python3.
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi

TRAIN_TXT=./MARS_database/train_path.txt
TRAIN_INFO=./MARS_database/train_info.npy
TEST_TXT=./MARS_database/test_path.txt
TEST_INFO=./MARS_database/test_info.npy
QUERY_INFO=./MARS_database/query_IDX.npy

# For NVAN
CKPT=ckpt_NL_0230
"$PY" "$HERE/train_NL.py" --train_txt $TRAIN_TXT --train_info $TRAIN_INFO --batch_size 64 \
    --test_txt $TEST_TXT --test_info $TEST_INFO --query_info $QUERY_INFO \
    --n_epochs 200 --lr 0.0001 --lr_step_size 50 --optimizer adam --ckpt $CKPT --log_path loss.txt --class_per_batch 8 \
    --model_type resnet50_NL --num_workers 8 --track_per_class 4 --S 8 --latent_dim 2048 --temporal Done --track_id_loss \
    --non_layers 0 2 3 0 "$@"

# For STE-NVAN
#CKPT=ckpt_NL_stripe16_hr_0230
#"$PY" "$HERE/train_NL.py" --train_txt $TRAIN_TXT --train_info $TRAIN_INFO --batch_size 64 \
#    --test_txt $TEST_TXT --test_info $TEST_INFO --query_info $QUERY_INFO \
#    --n_epochs 200 --lr 0.0001 --lr_step_size 50 --optimizer adam --ckpt $CKPT --log_path loss.txt --class_per_batch 8 \
#    --model_type resnet50_NL_stripe_hr --num_workers 8 --track_per_class 4 --S 8 --latent_dim 2048 --temporal Done --track_id_loss \
#    --non_layers 0 2 3 0 --stripes 16 16 16 16 "$@"
