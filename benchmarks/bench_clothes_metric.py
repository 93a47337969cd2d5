"""Time the metric with every MEVID protocol on MEVID-sized input: the vectorised path against CAL's loops.

    python benchmarks/bench_clothes_metric.py
    python benchmarks/bench_clothes_metric.py --device cuda     # ours ranked on the GPU

Input shaped like MEVID's test split: 1,754 tracklets, 316 queries, the other rows the gallery, 54 identities
with 2 to 4 outfits each, 33 cameras (5 indoor), 2,048-d float32 features clustered by identity and outfit.
Both sides score the same (Q, G) cosine distances with the plain AP (--ap_rule plain): the overall result and
the six attribute protocols (same / different clothes, location, scale). The reference is CAL's
tools/eval_metrics.py loops (evaluate, evaluate_with_clothes; MEVID's location / scale versions repeat them),
restated in tests/reference.py. Every number is compared (per-query AP and INP, CMC, mAP, mINP): the script
exits 1 on any difference.
"""
import argparse
import platform
import sys
import time

import numpy as np
import torch

from tests.reference import cal_evaluate_reference
from util.evaluation.metrics import PROTOCOLS, cosine_distance, score_protocols

INDOOR = (329, 330, 507, 508, 509)
OUTDOOR = (300, 301, 326, 328, 336, 339, 340, 341, 424, 436, 438, 500, 502, 505, 506, 601, 603, 637, 638, 639,
           420, 421, 423, 427, 431, 434, 437, 440)


def mevid_like_set(seed=0, n_tracklets=1754, n_queries=316, n_ids=54, dim=2048, signal=0.2):
    """features (N, D) float32, pids, cams, query and gallery rows, and the clothes / location / scale labels."""
    rng = np.random.default_rng(seed)
    cameras = np.array(INDOOR + OUTDOOR)
    outfits = rng.integers(2, 5, n_ids)
    pid = rng.integers(0, n_ids, n_tracklets)
    outfit = rng.integers(0, outfits[pid])
    cam = cameras[rng.integers(0, len(cameras), n_tracklets)]
    clothes = np.unique(pid * 10 + outfit, return_inverse=True)[1].reshape(-1)
    location = np.isin(cam, INDOOR, invert=True).astype(np.int64)
    scale = rng.integers(0, 2, n_tracklets)
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32)
    dress = rng.standard_normal((clothes.max() + 1, dim), dtype=np.float32)
    feats = rng.standard_normal((n_tracklets, dim), dtype=np.float32) + signal * centres[pid] + 0.5 * signal * \
        dress[clothes]
    query = np.sort(rng.choice(n_tracklets, n_queries, replace=False))
    gallery = np.setdiff1d(np.arange(n_tracklets), query)
    return feats, pid, cam, query, gallery, dict(clothes=clothes, location=location, scale=scale)


def reference_protocols(dist, pid, cam, query, gallery, attributes):
    out = {'overall': cal_evaluate_reference(dist, pid[query], pid[gallery], cam[query], cam[gallery])}
    for name, values in attributes.items():
        for key, mode in PROTOCOLS[name]:
            out[key] = cal_evaluate_reference(dist, pid[query], pid[gallery], cam[query], cam[gallery],
                                              values[query], values[gallery], mode)
    return out


def same(ours, ref):
    return (np.array_equal(ours.ap, ref['ap'], equal_nan=True) and np.array_equal(ours.inp, ref['inp'], equal_nan=True)
            and np.array_equal(ours.cmc, ref['cmc']) and ours.mAP == ref['mAP'] and ours.mINP == ref['mINP']
            and ours.num_skipped == ref['num_no_gt'])


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'), help='where ours ranks')
    parser.add_argument('--repeat', type=int, default=5, help='runs of each side (the best kept)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    feats, pid, cam, query, gallery, attributes = mevid_like_set(args.seed)
    dist = cosine_distance(feats, query, gallery)  # (Q, G), shared by both sides
    ties = sum(len(row) - len(np.unique(row)) for row in dist)
    ranked = torch.from_numpy(dist).to(args.device) if args.device == 'cuda' else dist
    ours_s, ours = best_of(lambda: score_protocols(ranked, pid, cam, query, 0, gallery, 'plain', attributes),
                           args.repeat)
    ref_s, ref = best_of(lambda: reference_protocols(dist, pid, cam, query, gallery, attributes), 2)

    print(f'MEVID-sized input: {len(pid)} tracklets, {len(query)} queries x {len(gallery)} gallery, 2048-d; '
          f'{ties} tied distances; {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, '
          f'ours on {args.device}')
    print('| protocol | rank-1 | mAP | mINP | scored | equal |')
    print('|---|---|---|---|---|---|')
    ok = True
    for key, r in ours.items():
        equal = same(r, ref[key])
        ok &= equal
        print(f'| {key} | {100 * r.rank(1):.2f} | {100 * r.mAP:.2f} | {100 * r.mINP:.2f} | {r.num_scored} | '
              f'{"yes" if equal else "NO"} |')
    print()
    print('| all 7 protocols | seconds |')
    print('|---|---|')
    print(f'| CAL loops (tests/reference.py) | {ref_s:.3f} |')
    print(f'| ours (score_protocols, {args.device}) | {ours_s:.3f} |')
    print(f'speed-up {ref_s / ours_s:.1f}x; numbers {"identical" if ok else "DIFFERENT"}')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
