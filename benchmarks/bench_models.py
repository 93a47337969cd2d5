"""Cost of each model type: parameters, GFLOPs per clip, eval latency, and one training step with
scaled_dot_product_attention ('sdpa') next to the explicit softmax(q k^T) v reference ('explicit').

    python benchmarks/bench_models.py            # P=2 K=2 S=8 at 256x128 (a few minutes on 2 CPU cores)
    python benchmarks/bench_models.py --quick    # P=1 K=2 S=4 at 128x64, fewer repeats

GFLOPs: torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add), eval mode, one 8-frame
256x128 clip (8 frames for resnet50_s1), counted on the meta device (shapes only, instant). BatchNorm,
pooling and softmax are not counted. Torch's FLOP table has no entry for the CPU flash-attention kernel
(aten._scaled_dot_product_flash_attention_for_cpu), so count_flops maps it to torch's own SDPA formula;
SDPA and the explicit path then count the same (two batched matmuls per block).

Each training-step configuration runs in a fresh subprocess: one step (util.train.trainer.train_step in fp32 with
the arguments of run_baseline.sh / run_NL.sh: forward, batch-hard triplet + track ID loss, backward, Adam)
is run cold, then `--repeats` timed steps (median). Peak memory is the high-water mark of the process's
resident memory during the cold step minus the resident memory just before it (Linux VmHWM, reset through
/proc/self/clear_refs), or torch.cuda.max_memory_allocated minus the allocation before the step on a GPU.
"""
import argparse
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from benchmarks.bench_train import training_configs
from benchmarks.machine import peak_memory, run_worker, serve_worker, sync
from models import MODEL_TYPES, build_model
from util.evaluation.extract import prepare_clips
from util.train.trainer import build_optimizer, train_step

_CPU_FLASH = getattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu', None)


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """torch's SDPA formula (two batched matmuls), for the CPU flash kernel its FLOP table lacks."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(model_type=None, model=None, x=None, device='meta', frames=8, height=256, width=128, num_class=625):
    """FLOPs of one eval forward. Either `model_type` (built with random weights on `device`, input one
    clip of `frames` x height x width) or an existing `model` and input `x`."""
    if model is None:
        with torch.device(device):
            model = build_model(model_type, num_class, pretrained='none', height=height)
            shape = (frames, 3, height, width) if model_type == 'resnet50_s1' else (1, frames, 3, height, width)
            x = torch.zeros(shape)
    mapping = {_CPU_FLASH: _sdpa_flops} if _CPU_FLASH is not None else {}
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops()


def count_parameters(model_type, num_class=625):
    with torch.device('meta'):
        model = build_model(model_type, num_class, pretrained='none')
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- measurements in a worker process

def measure(model_type, attention, P, K, S, height, width, stripes, device, repeats, latency_repeats, threads):
    """One configuration: training-step time and peak memory, then eval latency of one clip."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device)
    torch.manual_seed(0)
    losses, optim = training_configs(model_type, S)
    model = build_model(model_type, 625, stripes=stripes, pretrained='none', height=height,
                        attention=attention).to(device).train()
    optimizer = build_optimizer(model.parameters(), optim)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    clips = torch.randint(0, 256, (P * K, S, 3, height, width), dtype=torch.uint8)
    labels = torch.arange(P).repeat_interleave(K)
    frame_level = model.frame_level

    def step():
        t0 = time.perf_counter()
        train_step(model, optimizer, scaler, clips, labels, losses, frame_level)
        sync(device)
        return time.perf_counter() - t0

    cold, peak = peak_memory(device, step, cuda_total=False)
    times = [step() for _ in range(repeats)]

    model.eval()
    one = prepare_clips(clips[:1], frame_level, device)
    lat = []
    with torch.no_grad():
        for i in range(latency_repeats + 1):
            t0 = time.perf_counter()
            model(one)
            sync(device)
            if i:                      # the first run warms up
                lat.append(time.perf_counter() - t0)
    return dict(step_s=statistics.median(times) if times else cold, cold_step_s=cold, peak_bytes=peak,
                latency_s=statistics.median(lat) if lat else float('nan'))


# ---------------------------------------------------------------- table

def _fmt(value, spec):
    return '-' if value is None else format(value, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--types', nargs='+', default=list(MODEL_TYPES), choices=MODEL_TYPES)
    parser.add_argument('--P', type=int, default=2, help='identities per training batch')
    parser.add_argument('--K', type=int, default=2, help='tracklets per identity')
    parser.add_argument('--S', type=int, default=8, help='frames per clip (training and latency)')
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--stripes', type=int, nargs=4, default=[16, 16, 16, 16],
                        help='stripe counts of the stripe types (must divide the feature heights)')
    parser.add_argument('--repeats', type=int, default=1, help='timed training steps after the cold one')
    parser.add_argument('--latency_repeats', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    parser.add_argument('--no_train', action='store_true', help='only parameters and GFLOPs')
    parser.add_argument('--quick', action='store_true', help='P=1 K=2 S=4 at 128x64, stripes 8, no timed repeats')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        return serve_worker(args.worker, measure)
    if args.quick:
        args.P, args.K, args.S, args.height, args.width, args.repeats, args.latency_repeats = 1, 2, 4, 128, 64, 0, 1
        args.stripes = [8, 8, 8, 8]

    threads = args.threads or torch.get_num_threads()
    print(f'# model cost: device {args.device}, torch {torch.__version__}, {threads} threads; '
          f'GFLOPs per 8-frame 256x128 clip; latency: one {args.S}-frame {args.height}x{args.width} clip, eval; '
          f'training step: P={args.P} K={args.K} S={args.S} at {args.height}x{args.width}, Adam; '
          f'stripe types with stripes {" ".join(map(str, args.stripes))}')
    header = ('| model | params (M) | GFLOPs/clip | eval latency s (sdpa / explicit) | '
              'train step s (sdpa / explicit) | train step peak GB (sdpa / explicit) |')
    print(header)
    print('|' + '---|' * header.count(' | ') + '---|')
    for model_type in args.types:
        params = count_parameters(model_type) / 1e6
        gflops = count_flops(model_type) / 1e9
        cells = {}
        if not args.no_train:
            impls = ('sdpa',) if model_type == 'resnet50_s1' else ('sdpa', 'explicit')
            for impl in impls:
                cells[impl] = run_worker(__file__, dict(
                    model_type=model_type, attention=impl, P=args.P, K=args.K, S=args.S, height=args.height,
                    width=args.width, stripes=args.stripes, device=args.device, repeats=args.repeats,
                    latency_repeats=args.latency_repeats, threads=args.threads))
            cells.setdefault('explicit', cells['sdpa'])   # no attention in the baseline

        def pair(key, scale, spec, cells=cells):
            if not cells:
                return '-'
            errors = sorted({c['error'] for c in cells.values() if 'error' in c})
            if errors:
                return 'failed: ' + '; '.join(errors)
            return ' / '.join(_fmt(cells[i][key] / scale, spec) for i in ('sdpa', 'explicit'))

        print(f'| {model_type} | {params:.2f} | {gflops:.1f} | {pair("latency_s", 1, ".2f")} | '
              f'{pair("step_s", 1, ".2f")} | {pair("peak_bytes", 1e9, ".2f")} |', flush=True)
    print('GFLOPs: FlopCounterMode on the meta device (2 FLOPs per multiply-add; BN, pooling and softmax not counted);'
          ' SDPA and the explicit reference count the same. Peak memory: resident-memory high-water mark during one'
          ' cold training step minus the memory before it, in a fresh process per configuration'
          ' (GPU: max_memory_allocated). resnet50_s1 has no attention: one measurement shown in both columns.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
