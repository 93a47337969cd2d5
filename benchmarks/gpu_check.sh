#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one run of about 8 minutes on one H100 / H200:
#   1. tests/test_cuda.py (normalisation and fused attention on the GPU, nvJPEG decoding, the train and
#      evaluate scripts with bf16 / fp16, channels_last and --decode_on_device), --compile last
#   2. bench_train.py at the paper's batch (P=8 K=4 S=8, 256x128) for NVAN and STE-NVAN, every configuration
#   3. bench_input.py with the nvJPEG row
#   4. NVAN with torch.compile (bf16-cl-sdpa-compile) and strict IEEE fp32 (fp32-explicit-notf32)
#   5. evaluate.py end to end on a MARS-sized synthetic test split (12,180 tracklets of 256x128 JPEGs,
#      random NVAN weights) with --amp bf16, in chunks and all_continuous modes (time and clips/s in the
#      logs' "Features of ..." line), then the saved features re-scored with --rerank on the GPU
# Usage: bash benchmarks/gpu_check.sh [OUTPUT_DIR]   (default gpu_check/; PYTHON=... picks the interpreter,
# default python3, which needs a CUDA build of torch and torchvision). Each step has a time limit, a log in
# OUTPUT_DIR and a line in OUTPUT_DIR/summary.txt; a failed step does not stop the later ones.
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
FAILED=0

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2 start rc
    shift 2
    echo "== $name (limit ${limit} s): $*"
    start=$(date +%s)
    timeout -s INT -k 15 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || FAILED=1
    echo "== $name: exit $rc in $(( $(date +%s) - start )) s" | tee -a "$OUT_DIR/summary.txt"
}

: > "$OUT_DIR/summary.txt"
step env 30 "$PY" -c 'import sys, torch, torchvision
print("Python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__,
      "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
p = torch.cuda.get_device_properties(0)
print("GPU", p.name, f"{p.total_memory / 2**30:.0f} GiB,", p.multi_processor_count, "SMs")'
step tests 140 "$PY" -m pytest -q -s -p no:cacheprovider tests/test_cuda.py -k 'not compile'
step train 200 "$PY" benchmarks/bench_train.py --device cuda --types resnet50_NL resnet50_NL_stripe_hr \
    --steps 10 --warmup 3 --json "$OUT_DIR/train.json"
step input 60 "$PY" benchmarks/bench_input.py --device cuda --frames 400 --repeats 2
step train_compile 200 "$PY" benchmarks/bench_train.py --device cuda --types resnet50_NL \
    --configs fp32-explicit fp32-explicit-notf32 bf16-cl-sdpa-compile --steps 10 --warmup 3 \
    --json "$OUT_DIR/train_compile.json"
step compile 120 "$PY" -m pytest -q -s -p no:cacheprovider tests/test_cuda.py -k compile
step eval_tests 60 "$PY" -m pytest -q -s -p no:cacheprovider tests/test_cuda_evaluation.py
SPLIT="$OUT_DIR/eval_split"
step eval_split 150 "$PY" benchmarks/make_eval_split.py "$SPLIT"
for MODE in chunks all_continuous; do
    step "eval_$MODE" 240 "$PY" evaluate.py --test_txt "$SPLIT/test_path.txt" --test_info "$SPLIT/test_info.npy" \
        --query_info "$SPLIT/query_IDX.npy" --model_type resnet50_NL --non_layers 0 2 3 0 --temporal Done --S 8 \
        --batch_size 64 --num_workers "$(( $(nproc) - 2 ))" --device cuda --amp bf16 --test_sampling "$MODE" \
        --load_ckpt "$SPLIT/nvan_random.pth" --save_features "$SPLIT/$MODE.npz" --results "$OUT_DIR/eval_$MODE.json"
done
step eval_rerank 120 "$PY" evaluate.py --features "$SPLIT/chunks.npz" --rerank --device cuda \
    --results "$OUT_DIR/eval_rerank.json"
step clothes_tests 60 "$PY" -m pytest -q -s -p no:cacheprovider tests/test_clothes_metric.py -k cuda
step clothes_metric 60 "$PY" benchmarks/bench_clothes_metric.py --device cuda --repeat 3
step eval_strided 240 "$PY" evaluate.py --test_txt "$SPLIT/test_path.txt" --test_info "$SPLIT/test_info.npy" \
    --query_info "$SPLIT/query_IDX.npy" --model_type resnet50_NL --non_layers 0 2 3 0 --temporal Done --S 8 \
    --batch_size 64 --num_workers "$(( $(nproc) - 2 ))" --device cuda --amp bf16 --test_sampling strided \
    --ap_rule plain --load_ckpt "$SPLIT/nvan_random.pth" --results "$OUT_DIR/eval_strided.json"
cat "$OUT_DIR/summary.txt"
exit $FAILED
