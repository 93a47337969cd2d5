"""Test-time feature extraction under the four --test_sampling modes: frames per second on one model.

Writes synthetic JPEG tracklets whose lengths spread like MARS's (a few frames to a few hundred, scaled
by --max_len), then times util.evaluation.extract.extract_features on the test loader of each mode, end to end
(decoding in --num_workers workers, normalisation, the network, the per-tracklet means):

* chunks (the paper's, one clip per tracklet), first (one clip), all_sampled and all_continuous
  (ceil(F / S) clips per tracklet, batches of --batch_size clips of any tracklets, features averaged);
* "per-tracklet batches": all_continuous the straightforward way, one tracklet's clips per batch (what a
  loader of whole tracklets gives), for comparison.

Frames per second = frames through the network (clips x S) / wall seconds; the last column is the ratio
to chunks mode (the target: all-frames modes within 20%, i.e. at least 0.80). Modes alternate over
--repeats passes and the best pass is kept. The per-tracklet means are checked against the plain loop.

    python benchmarks/bench_test_sampling.py [--device cuda] [--model_type resnet50_NL] [--tracklets 48]
        [--height 64 --width 32] [--S 4] [--batch_size 16] [--amp bf16]
"""
import argparse
import tempfile
import time

import numpy as np
import torch

from benchmarks.bench_input import write_frames
from benchmarks.machine import cpu_name
from models import build_model
from util.data.loaders import Database, collate_clips, make_test_loader
from util.data.sampling import TEST_SAMPLING_MODES, test_clip_indices
from util.evaluation.extract import clip_features, extract_features, prepare_clips


def mars_like_lengths(n, max_len, rng):
    """Tracklet lengths skewed like MARS's (median about a sixth of the longest, a few long ones)."""
    return np.clip(rng.lognormal(np.log(max_len / 6), 0.8, n).round().astype(int), 2, max_len)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_mode(model, db, args, device, mode):
    loader = make_test_loader(db, args.S, args.batch_size, args.num_workers, args.height, args.width,
                              pin_memory=device.type == 'cuda', sampling=mode)
    _sync(device)
    start = time.perf_counter()
    feats, _, _ = extract_features(model, loader, args.S, device, args.temporal, amp=args.amp, progress=False)
    _sync(device)
    return time.perf_counter() - start, len(loader.dataset) * args.S, feats


@torch.no_grad()
def time_per_tracklet(model, db, args, device):
    """all_continuous with one tracklet's clips per batch (the frames read in the main process)."""
    from util.data.frames import load_clip
    _sync(device)
    start = time.perf_counter()
    out, frames = [], 0
    dtype = next(model.parameters()).dtype
    for a, b, _, _ in db.info:
        idx = test_clip_indices(a, b, args.S, 'all_continuous')
        clips, _ = collate_clips([(load_clip([db.paths[f] for f in row], args.height, args.width), 0) for row in idx])
        x = prepare_clips(clips, model.frame_level, device, dtype=dtype)
        out.append(clip_features(model, x, args.S, args.temporal, model.frame_level, args.amp, device)
                   .double().mean(0).float().cpu())
        frames += idx.size
    _sync(device)
    return time.perf_counter() - start, frames, torch.stack(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--model_type', default='resnet50_NL')
    parser.add_argument('--tracklets', type=int, default=48)
    parser.add_argument('--max_len', type=int, default=48, help='longest tracklet (frames)')
    parser.add_argument('--S', type=int, default=4)
    parser.add_argument('--height', type=int, default=64)
    parser.add_argument('--width', type=int, default=32)
    parser.add_argument('--batch_size', type=int, default=16, help='clips per batch')
    parser.add_argument('--num_workers', type=int, default=0,
                        help='loader workers (0: frames decoded in the timed process, no worker start-up in the times)')
    parser.add_argument('--amp', default='none', choices=('none', 'bf16', 'fp16'))
    parser.add_argument('--repeats', type=int, default=2)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    lengths = mars_like_lengths(args.tracklets, args.max_len, rng)

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_frames(tmp, int(lengths.sum()), args.height, args.width)
        ends = np.cumsum(lengths) - 1
        info = np.stack([ends - lengths + 1, ends, np.arange(len(lengths)) // 2, np.arange(len(lengths)) % 2 + 1], 1)
        db = Database(paths, info.astype(np.int64))
        args.temporal = 'mean' if args.model_type == 'resnet50_s1' else 'Done'
        model = build_model(args.model_type, 10, temporal=args.temporal, pretrained='none', height=args.height,
                            S=args.S)
        model.to(device).eval()
        if device.type == 'cuda':
            torch.backends.cudnn.benchmark = True
        time_mode(model, db, args, device, 'chunks')  # warm-up (cuDNN autotuning, first allocations)

        rows = {mode: (float('inf'), 0) for mode in TEST_SAMPLING_MODES}
        rows['per-tracklet batches'] = (float('inf'), 0)
        feats = {}
        for _ in range(args.repeats):
            for mode in TEST_SAMPLING_MODES:
                seconds, frames, feats[mode] = time_mode(model, db, args, device, mode)
                rows[mode] = (min(rows[mode][0], seconds), frames)
            seconds, frames, feats['per-tracklet batches'] = time_per_tracklet(model, db, args, device)
            rows['per-tracklet batches'] = (min(rows['per-tracklet batches'][0], seconds), frames)

    diff = (feats['all_continuous'] - feats['per-tracklet batches']).abs().max().item()
    print(f'Machine: {cpu_name()}, {torch.get_num_threads()} threads'
          + (f', {torch.cuda.get_device_name(device)}' if device.type == 'cuda' else ''))
    print(f'{args.model_type}, {args.tracklets} tracklets of {lengths.min()}..{lengths.max()} frames '
          f'(median {int(np.median(lengths))}, {lengths.sum()} in all), S={args.S}, {args.height}x{args.width}, '
          f'batches of {args.batch_size} clips, {args.num_workers} workers, amp {args.amp}, device {args.device}, '
          f'best of {args.repeats}')
    print()
    print('| mode | frames through the network | seconds | frames/s | vs chunks |')
    print('|---|---:|---:|---:|---:|')
    base = rows['chunks'][1] / rows['chunks'][0]
    for name, (seconds, frames) in rows.items():
        fps = frames / seconds
        print(f'| {name} | {frames} | {seconds:.2f} | {fps:.1f} | {fps / base:.2f} |')
    print()
    print(f'all_continuous features vs per-tracklet batches: max abs difference {diff:.2e}')


if __name__ == '__main__':
    main()
