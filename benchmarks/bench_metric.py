"""Time the MARS metric on MARS-sized input: vectorised ``evaluate_mars`` against the plain loops.

    python benchmarks/bench_metric.py                   # loops timed on 300 queries, extrapolated
    python benchmarks/bench_metric.py --loop_queries 0  # time both loops on every query (many minutes)
    python benchmarks/bench_metric.py --signal 0.26     # one feature set only

Input: 12,180 test tracklets, 1,980 queries, 2,048-d float32 features, the real MARS split's make-up
(870 junk tracklets with pid -1, 3,248 distractors with pid 0, 634 identities over 6 cameras, one query
per identity and camera), features clustered by identity with the strength --signal. By default three
feature sets: trained-like (rank-1 about 0.7), weak (rank-1 about 0.14, where the original-style loop takes
about the 2 minutes measured for the original release's loop) and untrained (random). The loops stop at a
query's last correct match, so their time depends on the features; ours hardly does. For each set, all
three implementations are timed in the same run on the same features, and their results are compared.
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

from tests.reference import evaluate_mars_reference
from util.evaluation.metrics import cosine_distance, evaluate_mars, score_distances


def mars_like_set(seed=0, n_ids=634, n_junk=870, n_distractors=3248, n_tracklets=12180, n_queries=1980,
                  dim=2048, signal=0.26):
    """Features, pids, cams and query rows shaped like the MARS test split."""
    rng = np.random.default_rng(seed)
    n_real = n_tracklets - n_junk - n_distractors
    # every identity in 2..6 cameras with at least one tracklet per camera; the rest spread at random
    id_cams = [rng.choice(np.arange(1, 7), rng.integers(2, 7), replace=False) for _ in range(n_ids)]
    pid = [np.full(len(c), i + 1) for i, c in enumerate(id_cams)]
    cam = list(id_cams)
    extra = n_real - sum(len(c) for c in id_cams)
    owners = rng.integers(0, n_ids, extra)
    pid.append(owners + 1)
    cam.append(np.array([rng.choice(id_cams[o]) for o in owners]))
    pid = np.concatenate(pid + [np.full(n_junk, -1), np.zeros(n_distractors, dtype=np.int64)])
    cam = np.concatenate(cam + [rng.integers(1, 7, n_junk + n_distractors)])
    order = np.lexsort((cam, pid))  # the database lists tracklets by identity, then camera
    pid, cam = pid[order], cam[order]

    centres = rng.standard_normal((n_ids + 1, dim), dtype=np.float32)
    cam_bias = rng.standard_normal((7, dim), dtype=np.float32)
    feats = rng.standard_normal((n_tracklets, dim), dtype=np.float32)
    real = pid > 0
    feats[real] += signal * centres[pid[real]]
    feats += 0.08 * cam_bias[cam]  # same-camera tracklets look alike, as in real data

    # one query per (identity, camera) among identities seen in another camera too, as MARS does
    candidates = [np.flatnonzero((pid == p) & (cam == c))[0]
                  for p in range(1, n_ids + 1) for c in np.unique(cam[pid == p])]
    query_idx = np.sort(rng.choice(candidates, min(n_queries, len(candidates)), replace=False))
    return feats, pid, cam, query_idx


def original_style_loop(features, ids, cams, query_idx, rank_size):
    """The original release's metric loop (membership by scanning the good / junk index lists for every
    ranked item), with a stable sort. Returns per-query AP and CMC rows."""
    rank_size = min(rank_size, len(ids))
    dist = cosine_distance(features, query_idx)
    cmc = np.zeros((len(query_idx), rank_size))
    ap = np.zeros(len(query_idx))
    for k, qi in enumerate(query_idx):
        good = np.where((ids == ids[qi]) & (cams != cams[qi]))[0]
        junk = np.where((ids == -1) | ((ids == ids[qi]) & (cams == cams[qi])))[0]
        index = np.argsort(dist[k], kind='stable')[:rank_size]
        old_recall, old_precision, hits, kept, seen, n_junk = 0, 1.0, 0, 0, 0, 0
        for n in range(len(index)):
            is_good = np.any(good == index[n])
            if is_good:
                cmc[k, n - n_junk:] = 1
                seen += 1
            if np.any(junk == index[n]):
                n_junk += 1
                continue
            hits += int(is_good)
            recall, precision = hits / len(good), hits / (kept + 1)
            ap[k] += (recall - old_recall) * (old_precision + precision) / 2
            old_recall, old_precision = recall, precision
            kept += 1
            if seen == len(good):
                break
    return ap, cmc


def timed(fn, *args, repeat=1, **kwargs):
    """Best wall-clock seconds over `repeat` runs, the CPU seconds (all threads) of that run, the result."""
    best, cpu, out = float('inf'), None, None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        if time.perf_counter() - start < best:
            best, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return (best, cpu), out


FEATURES = {  # --signal values with a name: how far down the list the loops must walk
    0.26: 'trained-like',
    0.2: 'weak (the original-style loop takes about 2 minutes, as measured for the original)',
    0.0: 'untrained (random)',
}


def compare(args, signal, header=False):
    """Time the three implementations on one feature set and print their table.
    Returns (whether all three agree, whether the loops ran on a subset of the queries)."""
    feats, pid, cam, query_idx = mars_like_set(args.seed, signal=signal)
    n_q = len(query_idx)
    if header:
        print(f'MARS-sized input: {len(pid)} tracklets ({(pid == -1).sum()} junk, {(pid == 0).sum()} distractors, '
              f'{len(np.unique(pid[pid > 0]))} ids, 6 cameras), {n_q} queries, {feats.shape[1]}-d float32, '
              f'rank_size {args.rank_size}')
        print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
              f'numpy {np.__version__}, load average before the run {os.getloadavg()[0]:.2f}\n')
    t_dist, dist = timed(cosine_distance, feats, query_idx, repeat=args.repeat)
    t_rank, _ = timed(score_distances, dist, pid, cam, query_idx, min(args.rank_size, len(pid)) or len(pid),
                      repeat=args.repeat)
    del dist
    t_ours, ours = timed(evaluate_mars, feats, pid, cam, query_idx, args.rank_size, repeat=args.repeat)

    sub = np.arange(n_q) if args.loop_queries <= 0 else np.linspace(0, n_q - 1, min(args.loop_queries, n_q)).astype(int)
    t_ref, ref = timed(evaluate_mars_reference, feats, pid, cam, query_idx[sub], args.rank_size)
    t_orig, (orig_ap, orig_cmc) = timed(original_style_loop, feats, pid, cam, query_idx[sub], args.rank_size)

    # agreement on the timed queries: per-query AP, CMC and the means
    sub_ours = evaluate_mars(feats, pid, cam, query_idx[sub], args.rank_size)
    same_ref = (np.array_equal(sub_ours.ap, ref.ap, equal_nan=True) and np.array_equal(sub_ours.cmc, ref.cmc)
                and sub_ours.mAP == ref.mAP)
    same_orig = (np.array_equal(sub_ours.ap, orig_ap) and np.array_equal(sub_ours.cmc, orig_cmc.mean(0)))
    if len(sub) == n_q:
        same_ref = same_ref and ours.mAP == ref.mAP

    # Every implementation computes the same (Q, N) float32 distance matrix first (one BLAS product, 0.7 s
    # of 2 cores at 2,048-d). The loops' per-query part is their time on the subset less the subset's matrix,
    # scaled to all queries; their whole time adds the full matrix back.
    t_dist_sub, _ = timed(cosine_distance, feats, query_idx[sub], repeat=args.repeat)

    def row(name, n, seconds, agrees, ranking=None):
        est = '' if n == n_q else ' (est.)'
        if ranking is None:  # a loop: scale its per-query part
            ranking = (seconds[0] - t_dist_sub[0]) * n_q / n
            wall = ranking + t_dist[0]
            cpu = (seconds[1] - t_dist_sub[1]) * n_q / n + t_dist[1]
        else:
            wall, cpu = seconds
        blank = ' ' * 9
        ratios = (f'{blank} | {blank}' if agrees == '-'
                  else f'{wall / t_ours[0]:>8.1f}x | {ranking / t_rank[0]:>8.1f}x')
        print(f'| {name:<41} | {n:>7} | {wall:>7.2f}{est:<7} | {ranking:>7.2f}{est:<7} | {cpu:>7.2f} | '
              f'{ratios} | {agrees:<7} |')

    name = FEATURES.get(signal, 'custom')
    print(f'features: {name}, --signal {signal:g}: rank-1 {ours.rank(1):.4f}, rank-5 {ours.rank(5):.4f}, '
          f'mAP {ours.mAP:.4f}, skipped {ours.num_skipped}\n')
    print(f'| {"implementation":<41} | {"queries":>7} | {"whole (s)":>14} | {"w/o dist (s)":>14} | {"CPU s":>7} | '
          f'{"x whole":>9} | {"x w/o dist":>9} | {"agrees":<7} |')
    print(f'|{"-" * 43}|{"-" * 9}|{"-" * 16}|{"-" * 16}|{"-" * 9}|{"-" * 11}|{"-" * 11}|{"-" * 9}|')
    row('evaluate_mars (vectorised)', n_q, t_ours, '-', ranking=t_rank[0])
    row('  its cosine distance matrix alone', n_q, t_dist, '-', ranking=0.0)
    row('evaluate_mars_reference (plain loop)', len(sub), t_ref, 'exactly' if same_ref else 'NO')
    row("original cmc.py-style loop (np.any scans)", len(sub), t_orig, 'exactly' if same_orig else 'NO')
    print()
    return same_ref and same_orig, len(sub) != n_q


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--loop_queries', type=int, default=300,
                        help='queries the two loops are timed on, then scaled to all (0 = all queries)')
    parser.add_argument('--rank_size', type=int, default=10000)
    parser.add_argument('--repeat', type=int, default=3, help='runs of evaluate_mars; the best is reported')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--signal', type=float, nargs='+', default=list(FEATURES),
                        help='identity signal of the feature sets, one table each (0.26: rank-1 about 0.7; '
                             '0.2: rank-1 about 0.14; 0: random features)')
    args = parser.parse_args()

    agree, scaled = zip(*[compare(args, signal, header=(i == 0)) for i, signal in enumerate(args.signal)])

    print('wall seconds for all queries; "w/o dist": without the shared distance matrix (ours: score_distances '
          'timed alone; loops: their time less the matrix\'s); "x": their time over ours. The loops stop once a '
          'query\'s last correct match is found, so they take longer on weaker features.')
    if any(scaled):
        print(f'the loops ran on {args.loop_queries} queries spread over the list; their totals are scaled to all '
              f'queries and agreement is checked on those queries (--loop_queries 0 runs them all)')
    if not all(agree):
        sys.exit(1)


if __name__ == '__main__':
    main()
