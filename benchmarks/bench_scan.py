"""Time the MARS and LS-VID database builders on full-sized trees of empty frame files.

Builds bbox_train/ and bbox_test/ with MARS's shape (default 1,191,003 frames in 1,261 identity directories,
tracklets of about 60 frames over 6 cameras) plus matching MARS-evaluation .mat files, then times, in the
same run and on the same warm directory cache:

  reference scan   os.listdir + sorted + os.path.abspath per frame (the original's listing)
  our scan         util.data.datasets.mars.scan_mars_split for both splits, path-list text included
  original build   the original script's whole job: the listing, np.savetxt, loadmat, np.save
  our build        util.data.datasets.mars.build_mars_database: listing, every consistency check, atomic write

and, on an LS-VID-shaped tree (default 2,980,000 frames in 14,943 sequences of four-field names, listed in
list_sequence/*.txt, with an HDF5 info_test.mat):

  LS-VID reference   glob(prefix*) + sorted + abspath per listed sequence (the public LS-VID loaders)
  LS-VID our build   util.data.datasets.lsvid.build_lsvid_database: one listing per directory, prefixes by
                     bisection, names parsed for all frames at once, every check, atomic write

Every row gives microseconds per frame, so the two datasets compare directly.

    python benchmarks/bench_scan.py                    # full size (the tree takes a few minutes to create)
    python benchmarks/bench_scan.py --frames 100000    # scaled down
    python benchmarks/bench_scan.py --dir /dev/shm     # tree in memory (tmpfs)
    python benchmarks/bench_scan.py --frames 200000 --lsvid_frames 500000 --dir /dev/shm
    python benchmarks/bench_scan.py --dir /tmp --tree /tmp/trees    # full sizes: 4.2 M files, more inodes than
                                                                    # a default /dev/shm holds (df -i)
"""

import argparse
import glob
import os
import platform
import shutil
import statistics
import tempfile
import time

import numpy as np
import scipy.io

from benchmarks.machine import cpu_name
from util.data.datasets.common import IMAGE_EXTENSIONS
from util.data.datasets.lsvid import build_lsvid_database
from util.data.datasets.mars import build_mars_database, scan_mars_split

LSVID_FRAMES, LSVID_SEQUENCES = 2_980_000, 14_943
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


def make_lsvid_tree(root, frames, seed=0):
    """Empty LS-VID-named frames (<tracklet>_<frame>_<cam>_<n>.jpg, about 200 per sequence, 4 sequences per
    identity directory), the two list files and an HDF5 info_test.mat."""
    import h5py
    rng = np.random.default_rng(seed)
    n_seq = max(4, round(LSVID_SEQUENCES * frames / LSVID_FRAMES))
    lengths = np.diff(np.linspace(0, frames, n_seq + 1).round().astype(int))
    os.makedirs(os.path.join(root, 'list_sequence'))
    lines = {'train': [], 'test': []}
    for k, length in enumerate(lengths):
        split = 'train' if k < n_seq // 2 else 'test'
        pid = k // 4 + 1
        d = os.path.join(root, f'tracklet_{split}', f'{pid:04d}')
        os.makedirs(d, exist_ok=True)
        cam = int(rng.integers(1, 16))
        for f in range(1, length + 1):
            os.close(os.open(os.path.join(d, f'{k + 1:05d}_{f:04d}_{cam:02d}_{pid:04d}.jpg'),
                             os.O_CREAT | os.O_WRONLY, 0o644))
        lines[split].append(f'tracklet_{split}/{pid:04d}/{k + 1:05d}_ {pid}\n')
    for split, text in lines.items():
        with open(os.path.join(root, 'list_sequence', f'list_seq_{split}.txt'), 'w') as f:
            f.write(''.join(text))
    os.makedirs(os.path.join(root, 'test', 'data'))
    query = np.sort(rng.choice(len(lines['test']), max(1, len(lines['test']) // 5), replace=False)) + 1
    with h5py.File(os.path.join(root, 'test', 'data', 'info_test.mat'), 'w') as f:
        f['query'] = query[None, :].astype(np.float64)
    return n_seq


def lsvid_reference_scan(root):
    """What the public LS-VID loaders do: glob each listed prefix, sort, absolute paths."""
    n = 0
    for split in ('train', 'test'):
        with open(os.path.join(root, 'list_sequence', f'list_seq_{split}.txt')) as f:
            for line in f:
                prefix, _ = line.split()
                paths = sorted(glob.glob(os.path.join(root, prefix) + '*'))
                n += len([os.path.abspath(p) for p in paths])
    return n


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
    parser.add_argument('--frames', type=int, default=MARS_FRAMES,
                        help=f'MARS frames in all (default {MARS_FRAMES:,}; 0 skips MARS)')
    parser.add_argument('--dirs', type=int, default=None,
                        help=f'identity directories (default {MARS_DIRS:,} scaled with --frames)')
    parser.add_argument('--lsvid_frames', type=int, default=None,
                        help=f'LS-VID frames in all (default {LSVID_FRAMES:,} scaled like --frames; 0 skips LS-VID)')
    parser.add_argument('--repeat', type=int, default=3, help='timed runs of each (default 3; best is reported)')
    parser.add_argument('--dir', default=None,
                        help='where to create the temporary trees (default: the system temp directory; '
                             '/dev/shm avoids a slow disk: creating millions of files takes minutes)')
    parser.add_argument('--tree', default=None,
                        help='keep the trees in this directory and reuse them on later runs (default: a temporary '
                             'directory, removed at the end)')
    args = parser.parse_args()
    dirs = args.dirs or max(4, round(MARS_DIRS * min(1.0, args.frames / MARS_FRAMES)))
    if args.lsvid_frames is None:
        args.lsvid_frames = round(LSVID_FRAMES * (args.frames or MARS_FRAMES) / MARS_FRAMES)

    work = tempfile.mkdtemp(prefix='bench_scan_', dir=args.dir)
    trees = args.tree or work
    mars_dir, lsvid_dir = os.path.join(trees, 'MARS'), os.path.join(trees, 'LS-VID')
    info_dir = os.path.join(mars_dir, 'MARS-evaluation', 'info')
    try:
        jobs, frames = {}, {}  # name -> (job, comparison baseline name)
        if args.frames:
            if not os.path.isdir(info_dir):
                t = time.perf_counter()
                print(f'creating {args.frames:,} empty MARS frames in {dirs:,} directories ...', flush=True)
                make_tree(mars_dir, args.frames, dirs)
                print(f'  done in {time.perf_counter() - t:.0f} s', flush=True)
            n = reference_scan(mars_dir)  # warm the directory cache for every contender alike
            jobs.update({
                'reference scan (MARS: listdir + sorted + abspath)': (lambda: reference_scan(mars_dir), None),
                'our scan (MARS: scandir, path text)': (lambda: our_scan(mars_dir), 'reference scan (MARS'),
                'original build (MARS: + savetxt, loadmat, save)': (lambda: original_build(
                    mars_dir, info_dir, os.path.join(work, 'orig')), None),
                'our build (MARS: + all checks, atomic write)': (lambda: build_mars_database(
                    mars_dir, info_dir, os.path.join(work, 'ours'), progress=False), 'original build (MARS'),
            })
            frames.update({name: n for name in jobs})
        if args.lsvid_frames:
            if not os.path.isdir(os.path.join(lsvid_dir, 'list_sequence')):
                t = time.perf_counter()
                print(f'creating {args.lsvid_frames:,} empty LS-VID frames ...', flush=True)
                make_lsvid_tree(lsvid_dir, args.lsvid_frames)
                print(f'  done in {time.perf_counter() - t:.0f} s', flush=True)
            n = lsvid_reference_scan(lsvid_dir)
            lsvid_jobs = {
                'reference scan (LS-VID: glob prefix* + sorted)': (lambda: lsvid_reference_scan(lsvid_dir), None),
                'our build (LS-VID: + all checks, atomic write)': (lambda: build_lsvid_database(
                    lsvid_dir, os.path.join(work, 'lsvid'), progress=False), 'reference scan (LS-VID'),
            }
            jobs.update(lsvid_jobs)
            frames.update({name: n for name in lsvid_jobs})

        times = {k: [] for k in jobs}
        for _ in range(args.repeat):
            for name, (job, _) in jobs.items():
                t = time.perf_counter()
                job()
                times[name].append(time.perf_counter() - t)
        if args.frames:
            for split in ('train', 'test'):  # same output as the original
                for f in (f'{split}_path.txt', f'{split}_info.npy'):
                    with open(os.path.join(work, 'orig', f), 'rb') as a, \
                            open(os.path.join(work, 'ours', f), 'rb') as b:
                        assert a.read() == b.read(), f'{f} differs from the original-style output'

        print(f'\nmachine: {machine()}')
        print(f'trees on {filesystem(trees)}; best and median of {args.repeat} runs; us/frame from the best\n')
        print(f'| {"job":50s} | frames    | best s | median s | us/frame | vs reference |')
        print(f'|{"-" * 52}|----------:|-------:|---------:|---------:|-------------:|')
        for name, ts in times.items():
            base = jobs[name][1]
            ref = next((min(v) for k, v in times.items() if base and k.startswith(base)), None)
            speedup = f'{ref / min(ts):11.2f}x' if ref else ' ' * 12
            print(f'| {name:50s} | {frames[name]:9,} | {min(ts):6.2f} | {statistics.median(ts):8.2f} | '
                  f'{1e6 * min(ts) / frames[name]:8.2f} | {speedup} |')
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
