"""Time the MARS database builder on a MARS-sized tree of empty frame files.

Builds bbox_train/ and bbox_test/ with MARS's shape (default 1,191,003 frames in 1,261 identity directories,
tracklets of about 60 frames over 6 cameras) plus matching MARS-evaluation .mat files, then times, in the
same run and on the same warm directory cache:

  reference scan   os.listdir + sorted + os.path.abspath per frame (the original's listing)
  our scan         util.datasets.mars.scan_mars_split for both splits, path-list text included
  original build   the original script's whole job: the listing, np.savetxt, loadmat, np.save
  our build        util.datasets.mars.build_mars_database: listing, every consistency check, atomic write

    python benchmarks/bench_scan.py                    # full size (the tree takes a few minutes to create)
    python benchmarks/bench_scan.py --frames 100000    # scaled down
    python benchmarks/bench_scan.py --dir /dev/shm     # tree in memory (tmpfs)
"""

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

from machine import cpu_name  # benchmarks/machine.py; the script directory is on sys.path
import numpy as np
import scipy.io

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from util.datasets.common import IMAGE_EXTENSIONS  # noqa: E402
from util.datasets.mars import build_mars_database, scan_mars_split  # noqa: E402

MARS_FRAMES = 509_914 + 681_089
MARS_DIRS = 625 + 636
TRAIN_SHARE = 509_914 / MARS_FRAMES


def make_tree(root, frames, dirs, seed=0):
    """Empty MARS-named frame files and their MARS-evaluation info; returns the info directory."""
    rng = np.random.default_rng(seed)
    info_dir = os.path.join(root, 'MARS-evaluation', 'info')
    os.makedirs(info_dir)
    n_train_dirs = round(dirs * 625 / MARS_DIRS)
    splits = {'train': (n_train_dirs, round(frames * TRAIN_SHARE)),
              'test': (dirs - n_train_dirs, frames - round(frames * TRAIN_SHARE))}
    for split, (n_dirs, n_frames) in splits.items():
        pids = ['00-1', '0000'] + [f'{p:04d}' for p in range(1, n_dirs - 1)] if split == 'test' else \
            [f'{p:04d}' for p in range(1, n_dirs + 1)]
        per_dir = np.diff(np.linspace(0, n_frames, n_dirs + 1).round().astype(int))
        rows, count = [], 0
        for pid, n in zip(sorted(pids), per_dir):
            d = os.path.join(root, f'bbox_{split}', pid)
            os.makedirs(d)
            # Tracklets of 2..120 frames spread over the cameras, in name order.
            lengths = []
            while sum(lengths) < n:
                lengths.append(int(min(rng.integers(2, 121), n - sum(lengths))))
            cams = np.sort(rng.integers(1, 7, len(lengths)))
            numbers = {}
            for length, cam in zip(lengths, cams):
                numbers[cam] = numbers.get(cam, 0) + 1
                for f in range(1, length + 1):
                    fd = os.open(os.path.join(d, f'{pid}C{cam}T{numbers[cam]:04d}F{f:03d}.jpg'),
                                 os.O_CREAT | os.O_WRONLY, 0o644)
                    os.close(fd)
                rows.append([count + 1, count + length, -1 if pid == '00-1' else int(pid), cam])
                count += length
        info = np.array(rows, dtype=np.int32)
        scipy.io.savemat(os.path.join(info_dir, f'tracks_{split}_info.mat'), {f'track_{split}_info': info})
        if split == 'test':
            real = np.flatnonzero(info[:, 2] > 0)
            query = np.sort(rng.choice(real, min(len(real), 1980), replace=False)) + 1
            scipy.io.savemat(os.path.join(info_dir, 'query_IDX.mat'),
                             {'query_IDX': query.astype(np.uint16)[None, :]})
    return info_dir


def reference_scan(data_dir):
    paths = []
    for split in ('bbox_train', 'bbox_test'):
        d = os.path.join(data_dir, split)
        for pid in sorted(os.listdir(d)):
            for name in sorted(os.listdir(os.path.join(d, pid))):
                if name.endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.abspath(os.path.join(d, pid, name)))
    return len(paths)


def our_scan(data_dir):
    n = 0
    for split in ('bbox_train', 'bbox_test'):
        frames = scan_mars_split(os.path.join(data_dir, split), progress=False)
        frames.path_text()
        n += len(frames)
    return n


def original_build(data_dir, info_dir, out):
    """The original script's steps (listing as above, np.savetxt, loadmat, -1, np.save)."""
    os.makedirs(out, exist_ok=True)
    for split in ('train', 'test'):
        d = os.path.join(data_dir, f'bbox_{split}')
        paths = [os.path.abspath(os.path.join(d, pid, name)) for pid in sorted(os.listdir(d))
                 for name in sorted(os.listdir(os.path.join(d, pid))) if name.endswith(IMAGE_EXTENSIONS)]
        np.savetxt(os.path.join(out, f'{split}_path.txt'), np.array(paths), fmt='%s', delimiter='\n')
        info = scipy.io.loadmat(os.path.join(info_dir, f'tracks_{split}_info.mat'))[f'track_{split}_info']
        info[:, 0:2] = info[:, 0:2] - 1
        np.save(os.path.join(out, f'{split}_info.npy'), info)
    query = scipy.io.loadmat(os.path.join(info_dir, 'query_IDX.mat'))['query_IDX']
    np.save(os.path.join(out, 'query_IDX.npy'), query - 1)


def machine():
    cpu = cpu_name()
    return f'{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}'


def filesystem(path):
    """Type of the file system holding path (from /proc/mounts), e.g. ext4 or tmpfs."""
    path, best = os.path.realpath(path), ('', 'unknown')
    try:
        with open('/proc/mounts') as f:
            for line in f:
                _, mount, kind = line.split()[:3]
                if (path == mount or path.startswith(mount.rstrip('/') + '/')) and len(mount) > len(best[0]):
                    best = (mount, kind)
    except OSError:
        pass
    return best[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=MARS_FRAMES, help=f'frames in all (default {MARS_FRAMES:,})')
    parser.add_argument('--dirs', type=int, default=None,
                        help=f'identity directories (default {MARS_DIRS:,} scaled with --frames)')
    parser.add_argument('--repeat', type=int, default=3, help='timed runs of each (default 3; best is reported)')
    parser.add_argument('--dir', default=None,
                        help='where to create the temporary tree (default: the system temp directory; '
                             '/dev/shm avoids a slow disk: creating 1.19 M files takes minutes)')
    parser.add_argument('--tree', default=None,
                        help='keep the tree in this directory and reuse it on later runs (default: a temporary '
                             'directory, removed at the end)')
    args = parser.parse_args()
    dirs = args.dirs or max(4, round(MARS_DIRS * min(1.0, args.frames / MARS_FRAMES)))

    work = tempfile.mkdtemp(prefix='bench_scan_', dir=args.dir)
    data_dir = args.tree or os.path.join(work, 'MARS')
    try:
        info_dir = os.path.join(data_dir, 'MARS-evaluation', 'info')
        if not os.path.isdir(info_dir):
            t = time.perf_counter()
            print(f'creating {args.frames:,} empty frames in {dirs:,} directories under {data_dir} ...', flush=True)
            make_tree(data_dir, args.frames, dirs)
            print(f'  done in {time.perf_counter() - t:.0f} s', flush=True)
        n = reference_scan(data_dir)  # warm the directory cache for every contender alike

        jobs = {
            'reference scan (listdir + sorted + abspath)': lambda: reference_scan(data_dir),
            'our scan (scandir, path text)': lambda: our_scan(data_dir),
            'original build (+ savetxt, loadmat, save)': lambda: original_build(
                data_dir, info_dir, os.path.join(work, 'orig')),
            'our build (+ all checks, atomic write)': lambda: build_mars_database(
                data_dir, info_dir, os.path.join(work, 'ours'), progress=False),
        }
        times = {k: [] for k in jobs}
        for _ in range(args.repeat):
            for name, job in jobs.items():
                t = time.perf_counter()
                job()
                times[name].append(time.perf_counter() - t)
        for split in ('train', 'test'):  # same output as the original
            for f in (f'{split}_path.txt', f'{split}_info.npy'):
                with open(os.path.join(work, 'orig', f), 'rb') as a, open(os.path.join(work, 'ours', f), 'rb') as b:
                    assert a.read() == b.read(), f'{f} differs from the original-style output'

        print(f'\nmachine: {machine()}')
        print(f'frames: {n:,} in {dirs:,} identity directories on {filesystem(data_dir)}; best and median of '
              f'{args.repeat} runs\n')
        ref = {'scan': min(times[next(iter(jobs))]), 'build': min(times[list(jobs)[2]])}
        print(f'| {"job":45s} | best s | median s | vs original |')
        print(f'|{"-" * 47}|-------:|---------:|------------:|')
        for name, ts in times.items():
            base = ref['scan'] if 'scan' in name else ref['build']
            print(f'| {name:45s} | {min(ts):6.2f} | {statistics.median(ts):8.2f} | {base / min(ts):10.2f}x |')
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
