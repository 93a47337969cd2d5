"""Training and evaluation throughput (clips/s) and peak memory per model type and precision.

    python benchmarks/bench_train.py --quick           # tiny batch at 64x32, a few minutes on 2 CPU cores
    python benchmarks/bench_train.py --device cuda     # the paper's batch: P=8 K=4 S=8 at 256x128
    python benchmarks/bench_train.py --types resnet50_NL --configs fp32-explicit bf16-cl-sdpa --json out.json

One training step is util.train.trainer.train_step, the step train_baseline.py / train_NL.py take per batch, with
the arguments run_baseline.sh / run_NL.sh give it: uint8 clips normalised on the device, forward,
batch-hard soft-margin triplet loss on the clip features plus the track-level ID loss (resnet50_s1: frame
outputs mean-pooled first, FPL), backward, Adam (trainer.build_optimizer). Random clips stand in for the data so
the input pipeline (benchmarks/bench_input.py) is not measured. Configurations:

  fp32-explicit   float32, non-local attention as the explicit softmax(theta^T phi) g (the original's way)
  fp32-sdpa       float32, scaled_dot_product_attention
  bf16-cl-sdpa    bf16 autocast, channels_last weights, scaled_dot_product_attention
  fp16-cl-sdpa    fp16 autocast with GradScaler, channels_last, scaled_dot_product_attention (CUDA only)
and, asked for by --configs:
  bf16-cl-sdpa-compile   bf16-cl-sdpa with torch.compile (train_NL.py --compile); warm-up steps compile
  fp32-explicit-notf32   fp32-explicit with cuDNN's TF32 convolutions off: IEEE float32 throughout, as the
                         original computed on its pre-Ampere GPU (CUDA only)

On a GPU the fp32 rows run convolutions in TF32, PyTorch's default for cuDNN (matrix products stay float32).

Each (model type, configuration) runs in a fresh process: --warmup untimed training steps, --steps timed
ones, then the same for eval-mode feature extraction (no grad, batches of --eval_batch clips). Peak memory
of training: torch.cuda.max_memory_allocated on a GPU (everything the run holds: weights, gradients, Adam
state, activations); on the CPU the resident-memory high-water mark over the training steps minus the
resident memory before them (so weights are not counted), Linux only. The measuring processes run with
OMP_WAIT_POLICY=PASSIVE unless it is set: see machine.worker_env.
"""
import argparse
import json
import math
import os
import sys
from collections import namedtuple

import torch

from benchmarks.machine import (  # benchmarks/
    machine_info,
    peak_memory,
    resolve_device,
    run_worker,
    serve_worker,
    timed,
    worker_env,
)
from models import MODEL_TYPES, build_model, to_channels_last
from models.resnet import stage_heights
from util.cli.options import build_parser, default_weight_decay
from util.cli.train import loss_config, optim_config
from util.evaluation.extract import clip_features, prepare_clips
from util.train.trainer import build_optimizer, train_step

Config = namedtuple('Config', 'amp channels_last attention compile tf32', defaults=(False, True))
CONFIGS = {
    'fp32-explicit': Config('none', False, 'explicit'),
    'fp32-sdpa': Config('none', False, 'sdpa'),
    'bf16-cl-sdpa': Config('bf16', True, 'sdpa'),
    'fp16-cl-sdpa': Config('fp16', True, 'sdpa'),
    'bf16-cl-sdpa-compile': Config('bf16', True, 'sdpa', compile=True),
    'fp32-explicit-notf32': Config('none', False, 'explicit', tf32=False),
}
DEFAULT_CONFIGS = ('fp32-explicit', 'fp32-sdpa', 'bf16-cl-sdpa', 'fp16-cl-sdpa')
CUDA_ONLY = ('fp16-cl-sdpa', 'fp32-explicit-notf32')
BASELINE = 'fp32-explicit'
NUM_CLASS = 625  # MARS training identities
PAPER = dict(P=8, K=4, S=8, height=256, width=128)
CPU_DEFAULT = dict(P=2, K=2, S=8, height=256, width=128)
QUICK = dict(P=1, K=2, S=4, height=64, width=32)


def training_configs(model_type, S):
    """(LossConfig, OptimConfig) of the training script of `model_type` as run_baseline.sh / run_NL.sh call it
    (Adam at lr 1e-4 with the script's weight decay, triplet + track ID loss), for build_optimizer and
    train_step."""
    script, temporal = ('baseline', 'mean') if model_type == 'resnet50_s1' else ('NL', 'Done')
    argv = ['--model_type', model_type, '--S', str(S), '--temporal', temporal, '--track_id_loss', '--lr', '1e-4']
    args = build_parser(script).parse_args(argv)
    args.weight_decay = default_weight_decay(script, args.optimizer)  # as parse_args resolves it
    return loss_config(args), optim_config(args)


# ---------------------------------------------------------------- one configuration, in a worker process

def profile_table(step, steps=3, rows=25):
    """torch.profiler table of `steps` calls of step(), operators sorted by their own device (or CPU) time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    sort = 'self_cuda_time_total' if torch.cuda.is_available() else 'self_cpu_time_total'
    return prof.key_averages().table(sort_by=sort, row_limit=rows)


def measure(model_type, config, P, K, S, height, width, non_layers, stripes, steps, warmup, eval_batch, device,
            threads=0, seed=0, profile=False):
    """Train and eval throughput and training peak memory of one (model type, configuration)."""
    if threads:
        torch.set_num_threads(threads)
    cfg, device = CONFIGS[config], torch.device(device)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    torch.manual_seed(seed)
    losses, optim = training_configs(model_type, S)
    model = build_model(model_type, NUM_CLASS, non_layers=non_layers, stripes=stripes, pretrained='none',
                        height=height, S=S, attention=cfg.attention).to(device).train()
    if cfg.channels_last:
        to_channels_last(model)
    forward = torch.compile(model) if cfg.compile else model
    optimizer = build_optimizer(model.parameters(), optim)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == 'fp16')
    frame_level = model.frame_level

    gen = torch.Generator().manual_seed(seed)
    pin = device.type == 'cuda'
    train_clips = torch.randint(0, 256, (P * K, S, 3, height, width), dtype=torch.uint8, generator=gen)
    eval_clips = torch.randint(0, 256, (eval_batch, S, 3, height, width), dtype=torch.uint8, generator=gen)
    if pin:
        train_clips, eval_clips = train_clips.pin_memory(), eval_clips.pin_memory()
    labels = torch.arange(P).repeat_interleave(K)  # on the host, as the loader gives them

    def step():  # raises on a non-finite loss, as training does
        return train_step(forward, optimizer, scaler, train_clips, labels, losses, frame_level, cfg.amp,
                          cfg.channels_last)

    @torch.no_grad()
    def eval_step():
        x = prepare_clips(eval_clips, frame_level, device, cfg.channels_last)
        return clip_features(forward, x, S, losses.temporal, frame_level, cfg.amp, device)

    train_s, peak = peak_memory(device, lambda: timed(step, steps, warmup, device))
    table = profile_table(step) if profile else None
    model.eval()
    eval_s = timed(eval_step, steps, warmup, device)
    return dict(train_step_s=train_s / steps, train_clips_per_s=P * K * steps / train_s, peak_bytes=peak,
                eval_batch_s=eval_s / steps, eval_clips_per_s=eval_batch * steps / eval_s, profile=table)


# ---------------------------------------------------------------- driver

def fit_stripes(stripes, height):
    """Largest stripe count per stage that divides both the requested count and the feature height
    (16 stays 16 at 256 pixels; small --quick frames get fewer stripes instead of a configuration error)."""
    return [math.gcd(s, h) for s, h in zip(stripes, stage_heights(height))]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog='configurations: ' + ', '.join(CONFIGS))
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--P', type=int, help='identities per batch (default: 8 on CUDA, 2 on CPU)')
    parser.add_argument('--K', type=int, help='tracklets per identity (default: 4 on CUDA, 2 on CPU)')
    parser.add_argument('--S', type=int, help='frames per clip (default 8)')
    parser.add_argument('--height', type=int, help='frame height (default 256)')
    parser.add_argument('--width', type=int, help='frame width (default 128)')
    parser.add_argument('--eval_batch', type=int, help='clips per eval batch (default P*K)')
    parser.add_argument('--steps', type=int, help='timed steps (default: 20 on CUDA, 2 on CPU)')
    parser.add_argument('--warmup', type=int, help='untimed steps first (default: 5 on CUDA, 1 on CPU)')
    parser.add_argument('--types', nargs='+', default=list(MODEL_TYPES), choices=MODEL_TYPES)
    parser.add_argument('--configs', nargs='+', choices=list(CONFIGS),
                        help=f'default: {" ".join(DEFAULT_CONFIGS)} (fp16-cl-sdpa on CUDA only)')
    parser.add_argument('--non_layers', type=int, nargs=4, default=[0, 2, 3, 0])
    parser.add_argument('--stripes', type=int, nargs=4, default=[16, 16, 16, 16],
                        help='reduced to divisors of the feature heights for small frames')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny: P=1 K=2 S=4 at 64x32, 1 warm-up and 1 timed step (explicit sizes still win)')
    parser.add_argument('--profile', action='store_true',
                        help='also print a torch.profiler table of 3 training steps per row (after the timing)')
    parser.add_argument('--json', metavar='PATH', help='also write the results as JSON')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args

    args.device = resolve_device(parser, args.device)
    cuda = args.device == 'cuda'
    sizes = QUICK if args.quick else PAPER if cuda else CPU_DEFAULT
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.steps is None:
        args.steps = 1 if args.quick else 20 if cuda else 2
    if args.warmup is None:
        args.warmup = 1 if args.quick else 5 if cuda else 1
    if args.eval_batch is None:
        args.eval_batch = args.P * args.K
    if args.configs is None:
        args.configs = [c for c in DEFAULT_CONFIGS if cuda or c not in CUDA_ONLY]
    elif not cuda and any(c in CUDA_ONLY for c in args.configs):
        parser.exit(2, f'error: --configs: {", ".join(CUDA_ONLY)} need --device cuda\n')
    for name in ('P', 'K', 'S', 'height', 'width', 'eval_batch', 'steps'):
        if getattr(args, name) < 1:
            parser.exit(2, f'error: --{name}: expected a positive integer, got {getattr(args, name)}\n')
    if args.warmup < 0:
        parser.exit(2, f'error: --warmup: expected 0 or more, got {args.warmup}\n')
    if args.height < 32:
        parser.exit(2, f'error: --height: expected at least 32 pixels, got {args.height}\n')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return serve_worker(args.worker, measure)

    stripes = fit_stripes(args.stripes, args.height)
    threads = args.threads or torch.get_num_threads()
    load = os.getloadavg()[0]
    print(f'# training / eval throughput: {machine_info(args.device)}; device {args.device}'
          + (f', {threads} threads, OMP_WAIT_POLICY={worker_env()["OMP_WAIT_POLICY"]}'
             if args.device == 'cpu' else ''))
    print(f'# train batch P={args.P} x K={args.K} clips of S={args.S} frames at {args.height}x{args.width}, '
          f'Adam, triplet + track ID loss; eval batch {args.eval_batch} clips; {args.warmup} warm-up + '
          f'{args.steps} timed steps each; non_layers {" ".join(map(str, args.non_layers))}, stripes '
          f'{" ".join(map(str, stripes))}; load average before {load:.2f}', flush=True)
    vs = 'vs ' + BASELINE
    print(f'| {"model":<21} | {"config":<20} | train clips/s | {vs} | train peak MiB | eval clips/s | {vs} |')
    print(f'|{"-" * 23}|{"-" * 22}|--------------:|{"-" * 17}:|---------------:|-------------:|{"-" * 17}:|',
          flush=True)

    results = []
    for model_type in args.types:
        base, cache = None, {}
        for config in args.configs:
            cfg = CONFIGS[config]
            # the baseline has no attention: its explicit and sdpa runs are the same network
            key = (cfg.amp, cfg.channels_last, None if model_type == 'resnet50_s1' else cfg.attention, cfg.compile,
                   cfg.tf32)
            if key not in cache:
                cache[key] = run_worker(__file__, dict(
                    model_type=model_type, config=config, P=args.P, K=args.K, S=args.S, height=args.height,
                    width=args.width, non_layers=args.non_layers, stripes=stripes, steps=args.steps,
                    warmup=args.warmup, eval_batch=args.eval_batch, device=args.device, threads=args.threads,
                    profile=args.profile))
            r = dict(cache[key], model_type=model_type, config=config)
            results.append(r)
            if config == BASELINE and 'error' not in r:
                base = r
            if 'error' in r:
                print(f'| {model_type:<21} | {config:<20} | failed: {r["error"]} |', flush=True)
                continue
            peak = '-' if r['peak_bytes'] is None else f'{r["peak_bytes"] / 2**20:,.0f}'

            def ratio(key, r=r, base=base):
                return f'{r[key] / base[key]:.2f}x' if base else '-'

            print(f'| {model_type:<21} | {config:<20} | {r["train_clips_per_s"]:13.2f} | '
                  f'{ratio("train_clips_per_s"):>16} | {peak:>14} | {r["eval_clips_per_s"]:12.2f} | '
                  f'{ratio("eval_clips_per_s"):>16} |', flush=True)

    print(f'# load average after {os.getloadavg()[0]:.2f}. Peak memory: '
          + ('torch.cuda.max_memory_allocated over the training steps (weights, gradients, Adam state and '
             'activations).' if args.device == 'cuda' else
             'resident-memory high-water mark over the training steps minus the memory before them (weights '
             'excluded), in a fresh process per row.')
          + (' resnet50_s1 has no attention: its fp32-explicit and fp32-sdpa rows are one measurement.'
             if 'resnet50_s1' in args.types else ''))
    for r in results:
        if r.get('profile'):
            print(f'\n# profile of 3 training steps, {r["model_type"]} {r["config"]}\n{r["profile"]}')
    if args.json:
        settings = {k: getattr(args, k) for k in ('device', 'P', 'K', 'S', 'height', 'width', 'eval_batch',
                                                   'steps', 'warmup', 'non_layers', 'threads', 'quick')}
        settings['stripes'] = stripes
        with open(args.json, 'w') as f:
            json.dump(dict(machine=machine_info(args.device), settings=settings, results=results), f, indent=1)
    return 1 if any('error' in r for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
