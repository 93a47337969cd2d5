"""Time the camera path: tracklets_from_video.py against decoding the same videos alone, and associate.py's
clustering against the plain full-matrix algorithm.

  decode alone         PyAV, every frame of every camera decoded and converted to RGB (to_ndarray rgb24),
                       frame threads on: the least any tool that looks at the pixels must do
  decode, no RGB       the same without the RGB conversion
  tracklets            util.data.cameras.make_tracklets on the same scene: decode, crop, JPEG, write,
                       tracklets.csv (target: at most 1.5 x "decode alone")

  sparse clustering    util.association: threshold chosen on the data (Otsu), pairs below it in row chunks,
                       average linkage from cluster feature sums; time and the process's peak memory
  full matrix          the N x N cosine matrix with the constraints, then Lance-Williams average linkage
                       (util.evaluation.association.average_linkage_dense), on the sizes where it fits; both give the
                       same identities (checked)

The features are clustered synthetic ones: N / 8 identities of about 8 tracklets each over 4 cameras
(identity centre + noise, cosine about 0.73 within an identity, about 0 between), random frame ranges.
Each clustering runs in its own process, so its peak resident memory (VmHWM) is its own; 'inputs' is
the peak before clustering (interpreter, numpy and the generated features).

    python benchmarks/bench_cameras.py                          # the default sizes (a few minutes)
    python benchmarks/bench_cameras.py --frames 100 --sizes 1000 --dense_sizes 1000 --large 0   # quick
"""
import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def synthetic_features(n, dim, seed=0):
    rng = np.random.default_rng(seed)
    ids = max(1, n // 8)
    centres = rng.standard_normal((ids, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(ids, size=n)]
    x += 0.6 * rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)
    cams = rng.integers(1, 5, n)
    first = rng.integers(1, 20 * n, n)
    return x, cams, first, first + rng.integers(20, 200, n)


def peak_mib():
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cluster_child(n, dim, dense):
    """One clustering in this process: prints a JSON line with its time and peak memory."""
    from util.evaluation import association as A
    x, cams, first, last = synthetic_features(n, dim)
    rss0 = peak_mib()
    t0 = time.perf_counter()
    x = A.unit_features(x)
    if dense:
        # the same threshold as the sparse run (the same sample), so both cluster the same problem
        t = A.choose_threshold(x, cams, first, last)
        ids = A.average_linkage_dense(A.cosine_cannot_link_matrix(x, cams, first, last), t)
        info = {}
        seconds = time.perf_counter() - t0
    else:
        t = A.choose_threshold(x, cams, first, last)
        ids, info = A.average_linkage(x, t, cams, first, last)
        seconds = time.perf_counter() - t0
    peak = peak_mib()
    print(json.dumps(dict(n=n, dim=dim, dense=dense, seconds=seconds, peak_mib=peak,
                          input_mib=rss0, threshold=t, identities=int(ids.max()), pairs=info.get('pairs'),
                          capped=info.get('capped_rows'), ids_hash=int(np.sum(ids * np.arange(1, n + 1) % 1000003)))))


def run_child(n, dim, dense):
    out = subprocess.run([sys.executable, __file__, '--child', str(n), str(dim), '1' if dense else '0'],
                         capture_output=True, text=True, env=dict(os.environ), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def decode_alone(videos, rgb=True):
    import av
    t0 = time.perf_counter()
    frames = 0
    for v in videos:
        with av.open(v) as c:
            s = c.streams.video[0]
            s.thread_type = 'AUTO'
            for f in c.decode(s):
                if rgb:
                    f.to_ndarray(format='rgb24')
                frames += 1
    return time.perf_counter() - t0, frames


def bench_video(args, work):
    from util.data.cameras import make_tracklets, scene_cameras
    from util.data.synthetic_scene import make_scene
    scene = os.path.join(work, 'scene')
    t0 = time.perf_counter()
    make_scene(scene, seed=0, num_cameras=args.cameras, num_persons=args.persons, num_frames=args.frames,
               fps=10, height=args.height, width=args.width)
    print(f'scene: {args.cameras} cameras x {args.frames} frames of {args.width}x{args.height}, {args.persons} '
          f'persons, H.264 (generated in {time.perf_counter() - t0:.0f} s)')
    cams = scene_cameras(scene)
    videos = [c[1] for c in cams]
    boxes = sum(sum(1 for _ in open(c[2])) for c in cams)
    best = {}
    for _ in range(args.repeat):
        best['decode'] = min(best.get('decode', 1e9), decode_alone(videos)[0])
        best['decode_norgb'] = min(best.get('decode_norgb', 1e9), decode_alone(videos, rgb=False)[0])
        out = os.path.join(work, 'crops')
        t0 = time.perf_counter()
        make_tracklets([(c[0], c[1], c[2]) for c in cams], out, overwrite=True, progress=False)
        best['tracklets'] = min(best.get('tracklets', 1e9), time.perf_counter() - t0)
    n = args.cameras * args.frames
    print(f'\n{"":22s} {"seconds":>8s} {"frames/s":>9s} {"x decode":>9s}   ({boxes} boxes, best of {args.repeat})')
    for key, label in (('decode_norgb', 'decode, no RGB'), ('decode', 'decode alone (RGB)'),
                       ('tracklets', 'tracklets_from_video')):
        print(f'{label:22s} {best[key]:8.2f} {n / best[key]:9.0f} {best[key] / best["decode"]:9.2f}')
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cameras', type=int, default=3)
    p.add_argument('--frames', type=int, default=300, help='frames per camera (default 300)')
    p.add_argument('--persons', type=int, default=16)
    p.add_argument('--height', type=int, default=360)
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--dim', type=int, default=2048)
    p.add_argument('--sizes', type=int, nargs='*', default=[500, 1000, 2000], help='compared with the full matrix')
    p.add_argument('--dense_sizes', type=int, nargs='*', default=[500, 1000, 2000])
    p.add_argument('--large', type=int, nargs='*', default=[5000, 20000], help='sparse only')
    p.add_argument('--skip_video', action='store_true')
    p.add_argument('--dir', default=None, help='work folder (default: a temporary one)')
    args = p.parse_args()
    print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, '
          f'numpy {np.__version__}')
    work = tempfile.mkdtemp(dir=args.dir)
    try:
        if not args.skip_video:
            bench_video(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f'\nclustering {args.dim}-d features{"":3s} {"N":>6s} {"seconds":>8s} {"peak MiB":>9s} {"inputs MiB":>10s} '
          f'{"pairs<t":>8s} {"ids":>6s} {"same as full":>12s}')
    for n in sorted(set(args.sizes) | set(args.large)):
        sparse = run_child(n, args.dim, False)
        dense = run_child(n, args.dim, True) if n in args.dense_sizes else None
        same = '' if dense is None else ('yes' if dense['ids_hash'] == sparse['ids_hash']
                                         and dense['identities'] == sparse['identities'] else 'NO')
        print(f'{"sparse (ours)":30s} {n:6d} {sparse["seconds"]:8.2f} {sparse["peak_mib"]:9.0f} '
              f'{sparse["input_mib"]:10.0f} {sparse["pairs"]:8d} {sparse["identities"]:6d} {same:>12s}')
        if dense is not None:
            print(f'{"full matrix (reference)":30s} {n:6d} {dense["seconds"]:8.2f} {dense["peak_mib"]:9.0f} '
                  f'{dense["input_mib"]:10.0f} {"":8s} {dense["identities"]:6d}')


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--child':
        cluster_child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1')
    else:
        main()
