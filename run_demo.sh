#!/usr/bin/env bash
# The whole pipeline on a laptop, without MARS or a GPU: a synthetic MARS-layout data set -> the database
# files -> NVAN (resnet50_NL, non-local blocks 0 2 3 0) trained from random initialisation on the CPU at
# reduced size -> evaluation, with rank-1 and mAP printed next to chance level.
# Usage: bash run_demo.sh [extra train_NL.py flags, e.g. --device cuda]. Outputs go to ./demo/.
source "$(dirname "$0")/setup_env.sh"
set -euo pipefail
cd "$ROOT"

DEMO=demo
DB=$DEMO/MARS_database
CKPT=$DEMO/ckpt_NVAN
START=$(date +%s)

# 1. synthetic MARS (bbox_train, bbox_test, MARS-evaluation/info), kept between runs. 150 training identities
# instead of the generator's default 40: from random initialisation, ResNet-50 memorises 40 identities long
# before it generalises to new ones. The test split keeps the default 40 identities (+ junk and distractors).
if [ ! -f "$DEMO/MARS/synthetic.json" ]; then
    "$PY" -m util.synthetic mars --out "$DEMO/MARS" --seed 0 --num_train_ids 150
fi

# 2. database files, exactly as for the real MARS
"$PY" create_MARS_database.py --data_dir "$DEMO/MARS" --info_dir "$DEMO/MARS/MARS-evaluation/info" \
    --output_dir "$DB"

# 3. NVAN from scratch. The paper's recipe (P8 K4 S8, 256x128, lr 1e-4 from ImageNet weights, 200 epochs)
# scaled down for two CPU cores: the native 64x32 frames, S=2, P8 K4, 14 epochs of 18 iterations, and a
# higher learning rate for random initialisation, divided by 10 for the last three epochs.
rm -rf "$CKPT"
"$PY" train_NL.py --train_txt "$DB/train_path.txt" --train_info "$DB/train_info.npy" \
    --test_txt "$DB/test_path.txt" --test_info "$DB/test_info.npy" --query_info "$DB/query_IDX.npy" \
    --model_type resnet50_NL --non_layers 0 2 3 0 --temporal Done --track_id_loss \
    --S 2 --class_per_batch 8 --track_per_class 4 --height 64 --width 32 --batch_size 32 \
    --n_epochs 14 --lr 0.001 --lr_step_size 11 --optimizer adam --eval_every 2 \
    --pretrained none --num_workers 0 --seed 0 --ckpt "$CKPT" --log_path loss.txt "$@"

# 4. score the best checkpoint as a user would, keeping its features
"$PY" evaluate.py --test_txt "$DB/test_path.txt" --test_info "$DB/test_info.npy" --query_info "$DB/query_IDX.npy" \
    --model_type resnet50_NL --non_layers 0 2 3 0 --temporal Done --S 2 --height 64 --width 32 \
    --batch_size 32 --num_workers 0 --load_ckpt "$CKPT/ckpt_best.pth" --save_features "$DEMO/nvan_features.npz" \
    | tee "$DEMO/evaluation.txt"

# 5. the saved features re-scored over the whole gallery, next to what random ranking gets on the same test
# split, with the results file and the CMC curve a researcher keeps
"$PY" evaluate.py --features "$DEMO/nvan_features.npz" --rank_size 0 --chance_level \
    --results "$DEMO/results.json" --cmc_plot "$DEMO/cmc.png"
echo "total time $(( $(date +%s) - START )) s; checkpoints, log and metrics.csv in $CKPT/"
