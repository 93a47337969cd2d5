#!/usr/bin/env bash
# From camera footage to identities across cameras, on a synthetic scene: videos + a tracker's output ->
# tracklet crops -> features with the demo's trained NVAN -> global identities -> multi-camera IDF1, printed
# next to what random ids and one identity per tracklet score.
# Usage: bash run_cameras_demo.sh [extra associate.py flags, e.g. --threshold 0.3]. Outputs go to ./demo/.
# Trains the demo model first (bash run_demo.sh, about 10 minutes on a laptop CPU) when demo/ has none.
source "$(dirname "$0")/setup_env.sh"
set -euo pipefail
cd "$ROOT"

DEMO=demo
CKPT=$DEMO/ckpt_NVAN/ckpt_best.pth
SCENE=$DEMO/scene
START=$(date +%s)

if [ ! -f "$CKPT" ]; then
    echo "No trained model in $CKPT: training the demo model first (run_demo.sh)"
    bash run_demo.sh
fi

# 1. the scene: 3 cameras, 6 people, 200 frames of 320x240 at 10 fps (H.264), ground truth and tracker output
"$PY" -m util.synthetic scene --out "$SCENE" --seed 0 --cameras 3 --num_persons 6 --num_frames 200

# 2. one folder of crops per track, and tracklets.csv
"$PY" tracklets_from_video.py --scene "$SCENE" --out "$DEMO/scene_crops" --overwrite

# 3. one feature per tracklet, with the demo model's flags (run_demo.sh); the file carries the camera,
# track id and frame range of each tracklet
"$PY" extract_features.py --load_ckpt "$CKPT" --model_type resnet50_NL --non_layers 0 2 3 0 --temporal Done \
    --S 2 --height 64 --width 32 --batch_size 32 --num_workers 0 \
    --tracklets "$DEMO/scene_crops" --out "$DEMO/scene_features.npz"

# 4. global identities (identities.csv, one MOTChallenge file per camera) and, as the scene has gt/, the scores
"$PY" associate.py --features "$DEMO/scene_features.npz" --scene "$SCENE" --out "$DEMO/scene_identities" \
    --overwrite "$@" | tee "$DEMO/scene_association.txt"
echo "total time $(( $(date +%s) - START )) s; identities in $DEMO/scene_identities/"
