"""A MARS-sized synthetic test split and a random-weight checkpoint, for timing evaluate.py end to end.

Writes into OUT:
* frames/: --unique_frames distinct 256 x 128 JPEG frames (smooth random pictures, MARS-like file sizes);
* test_path.txt, test_info.npy, query_IDX.npy: the database files of --tracklets tracklets (MARS: 12,180,
  1,980 queries) whose lengths spread like MARS's (median --median_len), listing the frame pool in turn
  (a tracklet's frames are distinct files; the pool is reused across tracklets to keep the tree small);
  pids of 625 identities over 6 cameras plus MARS's share of junk (-1) and distractor (0) tracklets;
* nvan_random.pth: resnet50_NL (non-local blocks 0 2 3 0) with random weights (BatchNorm statistics of noise
  clips), in the original's key format.

Prints the number of clips each --test_sampling mode gives (clips/s = clips / evaluate.py's extraction time).

    python benchmarks/make_eval_split.py OUT [--tracklets 12180] [--median_len 20] [--S 8]
"""
import argparse
import os

import numpy as np
import torch

from benchmarks.bench_input import write_frames
from models import build_model, original_state_dict
from util.data.sampling import TEST_SAMPLING_MODES, chunk_length


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out')
    parser.add_argument('--tracklets', type=int, default=12180)
    parser.add_argument('--queries', type=int, default=1980)
    parser.add_argument('--median_len', type=int, default=20, help='median tracklet length (MARS: about 30)')
    parser.add_argument('--max_len', type=int, default=300)
    parser.add_argument('--unique_frames', type=int, default=3000)
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--S', type=int, default=8)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    frame_dir = os.path.join(args.out, 'frames')
    os.makedirs(frame_dir, exist_ok=True)
    pool = write_frames(frame_dir, args.unique_frames, args.height, args.width)

    n = args.tracklets
    lengths = np.clip(rng.lognormal(np.log(args.median_len), 0.9, n).round().astype(np.int64), 2,
                      min(args.max_len, len(pool)))
    ends = np.cumsum(lengths) - 1
    starts = ends - lengths + 1
    n_junk, n_distractor = round(n * 870 / 12180), round(n * 3248 / 12180)
    n_id = n - n_junk - n_distractor
    n_pid = max(1, min(625, n_id // 13))  # MARS: 625 test identities, about 13 tracklets each
    pids = np.concatenate([np.arange(n_id) % n_pid + 1, np.full(n_junk, -1), np.zeros(n_distractor, np.int64)])
    cams = rng.integers(1, 7, n)
    info = np.stack([starts, ends, pids, cams], axis=1).astype(np.int32)
    # every frame index k lists pool[k % len(pool)]: distinct files within a tracklet up to the pool size
    with open(os.path.join(args.out, 'test_path.txt'), 'w') as f:
        f.write(''.join(pool[k % len(pool)] + '\n' for k in range(int(lengths.sum()))))
    np.save(os.path.join(args.out, 'test_info.npy'), info)
    np.save(os.path.join(args.out, 'query_IDX.npy'), np.arange(args.queries, dtype=np.uint16)[None, :])

    torch.manual_seed(0)
    model = build_model('resnet50_NL', 625, non_layers=(0, 2, 3, 0), temporal='Done', pretrained='none',
                        height=args.height, S=args.S)
    # BatchNorm statistics of a few noise clips, so that the random network's eval features stay finite
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model.to(device).train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, args.S, 3, args.height, args.width, device=device))
    torch.save(original_state_dict(model), os.path.join(args.out, 'nvan_random.pth'))

    I = chunk_length(starts, ends, args.S)
    clips = {'chunks': n, 'first': n, 'all_sampled': int(I.sum()), 'all_continuous': int(I.sum())}
    print(f'{n} tracklets ({lengths.sum()} frames, median {int(np.median(lengths))}, longest {lengths.max()}), '
          f'{args.queries} queries, {args.height}x{args.width} JPEGs in {args.out}')
    for mode in TEST_SAMPLING_MODES:
        print(f'  {mode}: {clips[mode]} clips of S={args.S}')


if __name__ == '__main__':
    main()
