#!/bin/sh
# Score the three released MARS checkpoints (put them in ./ckpt/). As in the original, one block is active
# (NVAN); uncomment another to score it. Expected (rank-1 / mAP): baseline 87.42 / 79.44,
# NVAN 90.00 / 82.79, STE-NVAN 88.69 / 81.27.
# Usage: sh run_evaluate.sh [extra flags, e.g. --device cuda, --save_features nvan.npz, --results nvan.json,
#        --test_sampling all_continuous (every frame), --rerank (k-reciprocal re-ranking, both tables printed)]
# Interpreter: $PY if set, else the repository's .venv (bash setup_env.sh creates it), else python3.
HERE=$(dirname "$0")
if [ -z "$PY" ]; then
    if [ -x "$HERE/.venv/bin/python" ]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi

TEST_TXT=./MARS_database/test_path.txt
TEST_INFO=./MARS_database/test_info.npy
QUERY_INFO=./MARS_database/query_IDX.npy

# Evaluate ResNet50 + FPL (mean or max)
#LOAD_CKPT=./ckpt/R50_baseline_mean.pth
#"$PY" "$HERE/evaluate.py" --test_txt $TEST_TXT --test_info $TEST_INFO --query_info $QUERY_INFO \
#    --batch_size 64 --model_type resnet50_s1 --num_workers 8 --S 8 \
#    --latent_dim 2048 --temporal mean --stride 1 --load_ckpt $LOAD_CKPT "$@"

# Evaluate NVAN (R50 + 5 NL + FPL)
LOAD_CKPT=./ckpt/NVAN.pth
"$PY" "$HERE/evaluate.py" --test_txt $TEST_TXT --test_info $TEST_INFO --query_info $QUERY_INFO \
    --batch_size 64 --model_type resnet50_NL --num_workers 8 --S 8 --latent_dim 2048 \
    --temporal Done --non_layers 0 2 3 0 --load_ckpt $LOAD_CKPT "$@"

# Evaluate STE-NVAN (R50 + 5 NL + Stripe + Hierarchical + FPL)
#LOAD_CKPT=./ckpt/STE_NVAN.pth
#"$PY" "$HERE/evaluate.py" --test_txt $TEST_TXT --test_info $TEST_INFO --query_info $QUERY_INFO \
#    --batch_size 128 --model_type resnet50_NL_stripe_hr --num_workers 8 --S 8 --latent_dim 2048 \
#    --temporal Done --non_layers 0 2 3 0 --stripe 16 16 16 16 --load_ckpt $LOAD_CKPT "$@"
