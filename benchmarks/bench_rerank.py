"""Time k-reciprocal re-ranking (Zhong et al., CVPR 2017) on MARS-sized input: ours next to the released
algorithm's loops.

    python benchmarks/bench_rerank.py                  # MARS-sized: about 10 minutes on 2 CPU cores
    python benchmarks/bench_rerank.py --scale 0.2      # a fifth of every count, for a quick look
    python benchmarks/bench_rerank.py --device cuda    # ours on the GPU (the reference stays numpy)

Input: the MARS-like test split of bench_metric.py (12,180 tracklets: 870 junk, 3,248 distractors, 634
identities over 6 cameras; 1,980 queries; 2,048-d float32 features clustered by identity, --signal 0.26:
rank-1 about 0.7). As in the published MARS results with re-ranking, probe = the queries, gallery = every
test tracklet, so the probe+gallery set has 14,160 items and every query appears twice in it.

Steps timed apart: the (N, N) original distance matrix (``pairwise_distance``), and, for scale, the plain
float32 matrix product of the N x 2,048 features with themselves; then the re-ranking alone, ours
(``rerank_distance``) and the reference (``rerank_reference``: the released loops in float32 numpy, with a
stable sort), both given the same matrix; and ours end to end (``k_reciprocal_distance``, features in).
Each step runs in a fresh process (the matrix passes through a temporary .npy file), after one small call
that makes the code it runs resident. Peak memory: the resident-set high-water mark during the step minus
the resident memory before it (VmHWM reset through /proc/self/clear_refs; the same measure for numpy and
torch, Linux), so the input matrix is not counted; on CUDA ours is torch.cuda.max_memory_allocated.
Timings on a shared machine move with its load: each row gives the load average, and the CPU seconds.
The re-ranked distances are compared element by element, then scored with the project's MARS metric.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from benchmarks.bench_metric import mars_like_set
from benchmarks.machine import machine_info, peak_rss_bytes, reset_peak_rss, rss_bytes, worker_env
from tests.reference import rerank_reference
from util.evaluation.metrics import evaluate_mars, score_distances
from util.evaluation.rerank import k_reciprocal_distance, pairwise_distance, rerank_distance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MARS = dict(n_ids=634, n_junk=870, n_distractors=3248, n_tracklets=12180, n_queries=1980)
MIB = 2 ** 20


def test_split(scale, seed, signal):
    counts = {k: max(2, round(v * scale)) for k, v in MARS.items()}
    return mars_like_set(seed, signal=signal, **counts)


def measure(fn, device):
    """Run fn once: (wall s, CPU s of this process, peak bytes above the memory before, result)."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset = reset_peak_rss()
        base = rss_bytes()
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = (torch.cuda.max_memory_allocated() if device.type == 'cuda' else peak_rss_bytes(reset)) - base
    return dict(wall=wall, cpu=cpu, peak=peak, load=os.getloadavg()[0]), out


# ---------------------------------------------------------------- the two worker processes


def small_problem(device='cpu'):
    """Probe (50, 64) and gallery (300, 64) features for a first small call in each worker, so that the
    code pages of the kernels it uses are resident and not counted as the measured step's memory."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 64, generator=gen).to(device)
    return feats[:50], feats


def _ours_input(args):
    device = torch.device(args.device)
    feats, _, _, query = test_split(args.scale, args.seed, args.signal)
    feats = torch.from_numpy(feats).to(device)
    return device, feats[torch.from_numpy(query).to(device)], feats


def worker_whole(args, tmp):
    device, probe, gallery = _ours_input(args)
    k_reciprocal_distance(*small_problem(device), args.k1, args.k2, args.lambda_value)
    m, _ = measure(lambda: k_reciprocal_distance(probe, gallery, args.k1, args.k2, args.lambda_value), device)
    return dict(whole=m)


def worker_distance(args, tmp):
    """The original distance matrix (saved for the re-ranking workers), then the plain product."""
    device, probe, gallery = _ours_input(args)
    small = small_problem(device)
    pairwise_distance(*small)
    small[1] @ small[1].T
    out = {}
    out['distance'], dist = measure(lambda: pairwise_distance(probe, gallery), device)
    np.save(os.path.join(tmp, 'dist.npy'), dist.cpu().numpy())
    del dist
    unit = torch.nn.functional.normalize(torch.cat([probe, gallery]), dim=1)
    out['product'], _ = measure(lambda: unit @ unit.T, device)
    return out


def worker_rerank(args, tmp):
    device = torch.device(args.device)
    dist = torch.from_numpy(np.load(os.path.join(tmp, 'dist.npy'))).to(device)
    q = len(test_split(args.scale, args.seed, args.signal)[3])
    rerank_distance(pairwise_distance(*small_problem(device)), 50, args.k1, args.k2, args.lambda_value)
    best = None
    for _ in range(args.repeat):  # the best time; the peak of the first run, in a fresh process
        m, reranked = measure(lambda: rerank_distance(dist, q, args.k1, args.k2, args.lambda_value), device)
        best = m if best is None else dict(m, peak=best['peak']) if m['wall'] < best['wall'] else best
    np.save(os.path.join(tmp, 'ours.npy'), reranked.cpu().numpy())
    return dict(rerank=best)


def worker_reference(args, tmp):
    dist = np.load(os.path.join(tmp, 'dist.npy'))
    q = len(test_split(args.scale, args.seed, args.signal)[3])
    kind = None if args.reference_sort == 'default' else 'stable'
    rerank_reference(pairwise_distance(*small_problem()).numpy(), 50, args.k1, args.k2, args.lambda_value,
                     sort_kind=kind)
    out = {}
    out['rerank'], reranked = measure(
        lambda: rerank_reference(dist, q, args.k1, args.k2, args.lambda_value, sort_kind=kind), torch.device('cpu'))
    np.save(os.path.join(tmp, 'reference.npy'), reranked)
    del reranked
    # its one full sort alone, both ways: the released code's default argsort against the stable one
    original = (dist / np.max(dist, axis=0)).T
    for kind in ('stable', 'default'):
        sort_kind = None if kind == 'default' else kind
        out[f'argsort_{kind}'], _ = measure(lambda k=sort_kind: np.argsort(original, axis=1, kind=k),
                                            torch.device('cpu'))
    return out


def run_worker(name, argv, tmp):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, '--worker', name, '--tmp', tmp],
                          cwd=ROOT, env=worker_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f'error: the {name} worker failed:\n{proc.stderr.strip()}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


WORKERS = dict(distance=worker_distance, rerank=worker_rerank, whole=worker_whole, reference=worker_reference)


# ---------------------------------------------------------------- driver


def scores(result):
    return (f'{100 * result.rank(1):.2f} / {100 * result.rank(5):.2f} / {100 * result.rank(10):.2f} / '
            f'{100 * result.rank(20):.2f} / {100 * result.mAP:.2f}')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', type=float, default=1.0, help='fraction of MARS\'s counts (default 1: full size)')
    parser.add_argument('--signal', type=float, default=0.26, help='identity signal of the features (bench_metric)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--k1', type=int, default=20)
    parser.add_argument('--k2', type=int, default=6)
    parser.add_argument('--lambda_value', type=float, default=0.3)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help='device of ours')
    parser.add_argument('--repeat', type=int, default=2, help='runs of our re-ranking; the best is reported')
    parser.add_argument('--reference_sort', default='stable', choices=['stable', 'default'],
                        help="the reference's argsort: stable (ties by index, as ours) or numpy's default "
                             '(as released; equal distances then come in an order of numpy\'s choosing)')
    parser.add_argument('--json', metavar='PATH', help='also write the measurements here')
    parser.add_argument('--worker', choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument('--tmp', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args, args.tmp)))
        return 0
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.exit(2, 'error: --device cuda: no CUDA device is available\n')

    feats, pid, cam, query = test_split(args.scale, args.seed, args.signal)
    n, q = len(pid) + len(query), len(query)
    print(f'MARS-like input (--scale {args.scale:g}): {q} queries, gallery = all {len(pid)} test tracklets '
          f'({(pid == -1).sum()} junk, {(pid == 0).sum()} distractors), probe+gallery N = {n}, '
          f'{feats.shape[1]}-d float32; k1 {args.k1}, k2 {args.k2}, lambda {args.lambda_value:g}')
    print(f'machine: {machine_info(args.device)}, numpy {np.__version__}; ours on {args.device}, '
          f'the reference on the CPU (numpy, {args.reference_sort} argsort)\n')
    argv = [a for a in (sys.argv[1:] if argv is None else argv)]
    argv = [a for i, a in enumerate(argv) if a != '--json' and (i == 0 or argv[i - 1] != '--json')]
    with tempfile.TemporaryDirectory(prefix='bench_rerank_') as tmp:
        load_before = os.getloadavg()[0]
        ours = {}
        for name in ('distance', 'rerank', 'whole'):
            ours.update(run_worker(name, argv, tmp))
        ref = run_worker('reference', argv, tmp)
        ours_d, ref_d = np.load(os.path.join(tmp, 'ours.npy')), np.load(os.path.join(tmp, 'reference.npy'))
    diff = float(np.abs(ours_d - ref_d).max())
    ranks = len(pid)
    plain = evaluate_mars(feats, pid, cam, query, 0)
    s_ours, s_ref = (score_distances(d, pid, cam, query, ranks) for d in (ours_d, ref_d))
    same = (np.array_equal(s_ours.cmc, s_ref.cmc) and np.array_equal(s_ours.ap, s_ref.ap, equal_nan=True)
            and s_ours.mAP == s_ref.mAP)

    def mib(m):
        return f'{m["peak"] / MIB:,.0f}'

    r_o, r_r = ours['rerank'], ref['rerank']
    rows = [
        ('original distance matrix, ours (`pairwise_distance`, N x N)', ours['distance'], None),
        ('  for scale: the plain float32 product X X^T (N x N x D)', ours['product'], None),
        ('re-ranking after the matrix, ours (`rerank_distance`)', r_o, None),
        (f're-ranking after the matrix, reference loops ({args.reference_sort} argsort)', r_r, r_o),
        ('  its one full argsort alone, stable', ref['argsort_stable'], None),
        ("  its one full argsort alone, numpy's default (as released)", ref['argsort_default'], None),
        ('ours end to end (`k_reciprocal_distance`, features in)', ours['whole'], None),
    ]
    print(f'| {"step":<62} | {"wall s":>8} | {"CPU s":>8} | {"vs ours":>8} | {"peak MiB":>9} | {"load":>5} |')
    print(f'|{"-" * 64}|{"-" * 10}|{"-" * 10}|{"-" * 10}|{"-" * 11}|{"-" * 7}|')
    for name, m, base in rows:
        ratio = f'{m["wall"] / base["wall"]:.1f}x' if base else ''
        print(f'| {name:<62} | {m["wall"]:>8.2f} | {m["cpu"]:>8.2f} | {ratio:>8} | {mib(m):>9} | {m["load"]:>5.2f} |')
    print()
    product = ours['product']
    print(f'targets (set for the full size): reference / ours after the matrix {r_r["wall"] / r_o["wall"]:.1f}x '
          f'wall, {r_r["cpu"] / r_o["cpu"]:.1f}x CPU (>= 10x); ours / plain product '
          f'{r_o["wall"] / product["wall"]:.2f} '
          f'wall, {r_o["cpu"] / product["cpu"]:.2f} CPU (<= 1); peak memory ours / reference '
          f'{r_o["peak"] / max(r_r["peak"], 1):.2f} (<= 1)')
    print(f'agreement: max |ours - reference| = {diff:.2e} over {ours_d.size:,} distances; CMC and mAP '
          f'{"equal" if same else "DIFFERENT"}')
    print(f'rank-1 / 5 / 10 / 20 / mAP, %: without re-ranking {scores(plain)}; re-ranked, ours {scores(s_ours)}; '
          f'reference {scores(s_ref)}')
    print(f'load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after '
          '(wall-clock figures on a shared machine move with it; CPU seconds less so)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(ours=ours, reference=ref, max_abs_diff=diff, scores_equal=same, n=n, queries=q,
                           scale=args.scale), f, indent=1)
    return 0 if diff <= 1e-5 and same else 1


if __name__ == '__main__':
    sys.exit(main())
