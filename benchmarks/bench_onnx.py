"""onnxruntime on the CPU next to PyTorch's CPU eval for the exported models, in the same run.

For each model type: a random-init network (the paper's non_layers 0 2 3 0 and 16 stripes) exported with
export_onnx.py's exporter, then clips/s of the same uint8 clips through PyTorch (models.export.ClipEmbedder
under torch.no_grad: the normalisation and the eval network, what evaluate.py runs per batch) and through
onnxruntime's CPU provider, both with --threads threads, plus their largest relative difference.

    python benchmarks/bench_onnx.py                                  # S=8, 256x128, batch 4
    python benchmarks/bench_onnx.py --quick                          # S=4, batch 1, two types
    python benchmarks/bench_onnx.py --types resnet50_s1 --threads 8
"""
import argparse
import os
import sys
import tempfile
import time

import torch

from benchmarks.machine import cpu_name
from models import MODEL_TYPES, build_model
from models.export import ClipEmbedder, export_onnx, onnx_features, relative_difference


def clips_per_second(run, clips, repeats):
    run(clips)  # warm-up: allocations, oneDNN / onnxruntime kernel choice
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(clips)
        times.append(time.perf_counter() - start)
    return len(clips) / min(times)


def bench(model_type, args, tmp):
    import onnxruntime
    torch.manual_seed(0)
    model = build_model(model_type, 625, pretrained='none', height=args.height, S=args.S).eval()
    path = os.path.join(tmp, f'{model_type}.onnx')
    start = time.perf_counter()
    export_onnx(model, path, args.S, args.height, args.width)
    export_s = time.perf_counter() - start
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    embedder = ClipEmbedder(model)
    clips = torch.randint(0, 256, (args.batch, args.S, 3, args.height, args.width), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))

    def torch_run(x):
        with torch.no_grad():
            return embedder(x).numpy()

    diff = relative_difference(onnx_features(session, clips.numpy()), torch_run(clips))
    pt = clips_per_second(torch_run, clips, args.repeats)
    ort = clips_per_second(lambda x: onnx_features(session, x), clips.numpy(), args.repeats)
    return pt, ort, diff, export_s


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--types', nargs='+', default=list(MODEL_TYPES), choices=MODEL_TYPES)
    p.add_argument('--S', type=int, default=8)
    p.add_argument('--height', type=int, default=256)
    p.add_argument('--width', type=int, default=128)
    p.add_argument('--batch', type=int, default=4, help='clips per call')
    p.add_argument('--repeats', type=int, default=3, help='timed calls per backend (the best is reported)')
    p.add_argument('--threads', type=int, default=min(4, os.cpu_count()), help='CPU threads of both backends')
    p.add_argument('--quick', action='store_true', help='S=4, batch 1, 2 repeats, resnet50_s1 and '
                                                        'resnet50_NL_stripe_hr')
    args = p.parse_args(argv)
    if args.quick:
        args.S, args.batch, args.repeats = 4, 1, 2
        args.types = ['resnet50_s1', 'resnet50_NL_stripe_hr']
    torch.set_num_threads(args.threads)
    import onnxruntime
    print(f'{cpu_name()}, {os.cpu_count()} cores, threads: {args.threads}; torch {torch.__version__}, '
          f'onnxruntime {onnxruntime.__version__}')
    print(f'clips of S={args.S} frames at {args.height}x{args.width}, batch {args.batch}, best of {args.repeats}\n')
    print('| model type | PyTorch CPU eval clips/s | onnxruntime CPU clips/s | ratio | max rel. diff | export s |')
    print('|---|---:|---:|---:|---:|---:|')
    with tempfile.TemporaryDirectory(prefix='bench_onnx_') as tmp:
        for model_type in args.types:
            pt, ort, diff, export_s = bench(model_type, args, tmp)
            print(f'| {model_type} | {pt:.2f} | {ort:.2f} | {ort / pt:.2f}x | {diff:.1e} | {export_s:.1f} |',
                  flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
