"""Tracklet features of several cameras -> one global identity per tracklet (and, with ground truth, IDF1).

    python associate.py --features crops.npz --out ids/ --scene scene/

Writes ``ids/identities.csv`` (camera, track_id, global_id: one row per tracklet) and, with --scene, one
MOTChallenge file per camera ``ids/<camera>.txt``: the scene's tracker rows of the kept tracklets with their
global ids. When the scene has ground truth (``gt/<camera>.txt``) it prints and writes ``ids/results.json``:
multi-camera IDF1 / IDP / IDR (TrackEval's Identity metric), pairwise tracklet precision / recall / F1 and
the adjusted Rand index, next to two baselines (random ids; one identity per tracklet).
"""
import argparse
import csv
import io
import json
import os
import sys
import time

import numpy as np

from util.cli.options import run_main
from util.errors import DataError

CAMERA_KEYS = ('cams', 'track_ids', 'first_frame', 'last_frame')
DENSE_RERANK_LIMIT = 4000
RANDOM_DRAWS = 10  # the random-ids baseline: mean over this many draws

METHOD = ('Method: average-linkage agglomerative clustering (UPGMA) of the tracklets. Distances are cosine '
          '(1 - cosine similarity of the L2-normalised features) or, with --rerank, k-reciprocal re-ranked '
          'distances (Zhong et al., CVPR 2017). Two tracklets of one camera whose frame ranges overlap are '
          'different people: an infinite distance, so clusters holding them never merge. The closest pair of '
          'clusters merges while its average distance is below the threshold. With cosine distances the average '
          'of two clusters is computed from their feature sums, and only the pairs closer than the threshold '
          'are looked at (found in chunks of rows, never an N x N matrix), with the same result as the plain '
          'full-matrix algorithm. Without --threshold, the threshold is chosen on the data: Otsu\'s threshold '
          'of the distances of the tracklets to their 10 nearest allowed neighbours (same-person and '
          'different-person pairs form two modes).')


def build_parser():
    p = argparse.ArgumentParser(description='Give every tracklet of several cameras a global identity. ' + METHOD)
    p.add_argument('--features', nargs='+', required=True, metavar='F.npz',
                   help='features files of extract_features.py run on tracklets_from_video.py folders (they hold '
                        'cams, track_ids, first_frame, last_frame per tracklet); several files are joined')
    p.add_argument('--out', required=True, metavar='OUT',
                   help='output folder: identities.csv, <camera>.txt per camera with --scene, results.json with '
                        'ground truth (new, or replaced with --overwrite)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing output folder')
    p.add_argument('--scene', metavar='DIR',
                   help='the scene folder the tracklets come from (c1.txt tracker rows per camera, optional '
                        'gt/c1.txt): writes OUT/<camera>.txt with global ids, and scores them against gt/')
    p.add_argument('--threshold', type=float, default=None,
                   help='merge clusters while their average distance is below this (cosine distance 0..2, or the '
                        're-ranked distance with --rerank); default: chosen on the data (Otsu)')
    p.add_argument('--rerank', action='store_true',
                   help=f'cluster k-reciprocal re-ranked distances instead of cosine ones (a full N x N matrix: '
                        f'at most {DENSE_RERANK_LIMIT} tracklets)')
    p.add_argument('--k1', type=int, default=20,
                   help='--rerank: k-reciprocal neighbours (default 20; at most the number of tracklets - 1)')
    p.add_argument('--k2', type=int, default=6,
                   help='--rerank: query expansion neighbours (default 6; at most the number of tracklets - 1)')
    p.add_argument('--lambda_value', type=float, default=0.3,
                   help='--rerank: weight of the original distance (default 0.3)')
    p.add_argument('--max_neighbors', type=int, default=100,
                   help='pairs kept per tracklet below the threshold (default 100); a tracklet with more keeps its '
                        'closest ones, and the clustering is then an approximation (reported)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the threshold sample and the random baseline (default 0)')
    return p


def load_camera_features(paths):
    """Join features files: dict of features (N, D) float32 (unit rows), cams, track_ids, first_frame,
    last_frame (N,) int64, camera_names (N,) str."""
    from util.evaluation.association import unit_features
    from util.evaluation.features_file import FeaturesFile
    parts = []
    for path in paths:
        data = FeaturesFile.read(path, 'features file', mmap=True, scoring=False)
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in CAMERA_KEYS if k not in z.files]
            if missing:
                raise DataError(f'features file {path}: no {", ".join(missing)} array(s); expected a file of '
                                f'extract_features.py on the crop folders of tracklets_from_video.py '
                                f'(<camera>_t<id>/f<frame>.jpg)')
            extra = {k: np.asarray(z[k]) for k in CAMERA_KEYS}
            names = np.asarray(z['camera_names']) if 'camera_names' in z.files else None
        n = len(data.features)
        for k, v in extra.items():
            if v.shape != (n,) or not np.issubdtype(v.dtype, np.integer):
                raise DataError(f'features file {path}: {k} is {v.dtype} {v.shape}, expected ({n},) integers')
        if (extra['cams'] < 0).any():
            raise DataError(f'features file {path}: camera numbers missing (-1) for some tracklets')
        extra['camera_names'] = names if names is not None else np.array([f'c{c}' for c in extra['cams']])
        extra['features'] = unit_features(data.features, f'features file {path}')
        parts.append(extra)
    dims = {p['features'].shape[1] for p in parts}
    if len(dims) > 1:
        raise DataError(f'--features: the files have features of different sizes {sorted(dims)} (embed them with '
                        f'one model)')
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    key = out['cams'] * (1 << 32) + out['track_ids']
    uniq, counts = np.unique(key, return_counts=True)
    if (counts > 1).any():
        dup = int(np.flatnonzero(key == uniq[counts > 1][0])[0])
        raise DataError(f'--features: camera {out["camera_names"][dup]} track {out["track_ids"][dup]} appears '
                        f'more than once')
    return out


def cluster(data, threshold=None, rerank=False, k1=20, k2=6, lambda_value=0.3, max_neighbors=100, seed=0):
    """Global ids (N,) from 1, the threshold used and facts about the run."""
    from util.evaluation import association as A
    x, cams, first, last = data['features'], data['cams'], data['first_frame'], data['last_frame']
    if rerank:
        if len(x) > DENSE_RERANK_LIMIT:
            raise DataError(f'--rerank: {len(x)} tracklets, at most {DENSE_RERANK_LIMIT} (it needs the N x N '
                            f'matrix); cluster cosine distances instead')
        if len(x) < 3:
            raise DataError(f'--rerank: {len(x)} tracklets, at least 3 needed')
        k1, k2 = min(k1, len(x) - 1), min(k2, len(x) - 1)   # fewer tracklets than neighbours asked for
        d = A.reranked_matrix(x, k1, k2, lambda_value)
        idx = np.arange(len(x))
        d[A.cannot_link(cams, first, last, idx, idx)] = np.inf
        t = A.dense_threshold(d) if threshold is None else threshold
        return A.average_linkage_dense(d, t), t, dict(distance=f'k-reciprocal (k1 {k1}, k2 {k2})')
    t = A.choose_threshold(x, cams, first, last, seed=seed) if threshold is None else threshold
    ids, info = A.average_linkage(x, t, cams, first, last, max_neighbors=max_neighbors)
    info['distance'] = 'cosine'
    return ids, t, info


def _scene_rows(scene_cams, data, ids):
    """Per scene camera: (name, Tracks, row mask of kept tracklets, their global ids)."""
    from util.data.cameras import camera_number, read_tracks
    lookup = {(int(c), int(t)): int(g) for c, t, g in zip(data['cams'], data['track_ids'], ids)}
    out = []
    for name, _, tracks_path, _ in scene_cams:
        number = camera_number(name)
        tracks = read_tracks(tracks_path)
        gid = np.array([lookup.get((number, int(t)), 0) for t in tracks.ids], dtype=np.int64)
        out.append((name, number, tracks, gid))
    return out


def _write_text(path, text):
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


def evaluate_scene(scene_cams, data, ids, seed=0):
    """results dict: the method's scores and those of the baselines: random ids (as many identities as the
    method found, uniformly drawn per tracklet; the mean of RANDOM_DRAWS draws) and one id per tracklet."""
    from util.data.cameras import camera_number, read_tracks
    from util.evaluation.association import multi_camera_identity, pairwise_scores, tracklet_gt_ids
    gt, tracker = {}, {}
    for name, _, tracks_path, gt_path in scene_cams:
        number = camera_number(name)
        g = read_tracks(gt_path, 'ground truth')
        gt[number] = (g.frame, g.ids, g.boxes)
        t = read_tracks(tracks_path)
        tracker[number] = t
    # each tracklet's boxes: the scene's rows of its track
    boxes = []
    for c, tid in zip(data['cams'].tolist(), data['track_ids'].tolist()):
        t = tracker.get(c)
        sel = t.ids == tid if t is not None else np.zeros(0, bool)
        boxes.append((c, t.frame[sel] if t is not None else np.zeros(0, np.int64),
                      t.boxes[sel] if t is not None else np.zeros((0, 4))))
    truth = tracklet_gt_ids(boxes, gt)

    def score(assignment):
        pred = {}
        lookup = {(c, t): g for c, t, g in zip(data['cams'].tolist(), data['track_ids'].tolist(), assignment)}
        for c, t in tracker.items():
            gid = np.array([lookup.get((c, int(i)), 0) for i in t.ids], dtype=np.int64)
            keep = gid > 0
            pred[c] = (t.frame[keep], gid[keep], t.boxes[keep])
        out = multi_camera_identity(gt, pred)
        out.update(pairwise_scores(assignment, truth))
        out['identities'] = int(len(np.unique(assignment)))
        return out

    n = len(ids)
    rng = np.random.default_rng(seed)
    k = max(1, len(np.unique(ids)))
    draws = [score((rng.integers(0, k, n) + 1).tolist()) for _ in range(RANDOM_DRAWS)]
    results = dict(method=score(np.asarray(ids).tolist()),
                   random={key: float(np.mean([d[key] for d in draws])) for key in draws[0]},
                   one_per_tracklet=score((np.arange(n) + 1).tolist()))
    results['random']['draws'] = RANDOM_DRAWS
    results['gt_identities'] = int(len(np.unique(np.concatenate([g[1] for g in gt.values()])))) if gt else 0
    results['tracklets_without_gt'] = int((truth < 0).sum())
    return results


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threshold is not None and not args.threshold > 0:
        parser.error('--threshold must be positive')
    if args.max_neighbors < 1:
        parser.error('--max_neighbors must be at least 1')
    from util.data.cameras import check_output_folder, scene_cameras
    from util.data.datasets.common import replacing_directory
    from util.io import atomic_save
    out = os.path.abspath(args.out)
    check_output_folder(out, args.overwrite, list(args.features) + [args.scene])
    t0 = time.perf_counter()
    data = load_camera_features(args.features)
    scene_cams = scene_cameras(args.scene) if args.scene else None
    if scene_cams is not None:
        from util.data.cameras import camera_number
        known = {camera_number(c[0]) for c in scene_cams}
        stray = sorted(set(data['cams'].tolist()) - known)
        if stray:
            raise DataError(f'--scene {args.scene}: no tracks file for camera number(s) {stray} of the features')
    ids, threshold, info = cluster(data, args.threshold, args.rerank, args.k1, args.k2, args.lambda_value,
                                   args.max_neighbors, args.seed)
    took = time.perf_counter() - t0
    print(f'{len(ids)} tracklets of {len(np.unique(data["cams"]))} camera(s) -> {len(np.unique(ids))} identities '
          f'({info["distance"]} distance, threshold {threshold:.4f}'
          + ('' if args.threshold is not None else ', chosen on the data') + f') in {took:.1f} s')
    if info.get('capped_rows'):
        print(f'note: {info["capped_rows"]} tracklets had more than {args.max_neighbors} neighbours below the '
              f'threshold and kept their closest ones: an approximation (raise --max_neighbors or lower '
              f'--threshold)')
    results = None
    if scene_cams is not None and all(c[3] for c in scene_cams):
        results = evaluate_scene(scene_cams, data, ids, args.seed)
        results.update(threshold=threshold, distance=info['distance'], tracklets=len(ids))
    elif scene_cams is not None and any(c[3] for c in scene_cams):
        print('note: ground truth for some cameras only (gt/<camera>.txt): not scored')
    with replacing_directory(out, what='the identities', keep_others=False) as tmp:
        text = io.StringIO()
        w = csv.writer(text, lineterminator='\n')
        w.writerow(['camera', 'track_id', 'global_id'])
        w.writerows(zip(data['camera_names'].tolist(), data['track_ids'].tolist(), np.asarray(ids).tolist()))
        _write_text(os.path.join(tmp, 'identities.csv'), text.getvalue())
        if scene_cams is not None:
            for name, _, tracks, gid in _scene_rows(scene_cams, data, ids):
                lines = [','.join([f[0], str(g)] + f[2:]) for f, g in zip(tracks.fields, gid.tolist()) if g > 0]
                _write_text(os.path.join(tmp, name + '.txt'), ''.join(line + '\n' for line in lines))
        if results is not None:
            atomic_save(json.dumps(results, indent=1).encode() + b'\n', os.path.join(tmp, 'results.json'),
                        write=lambda b, f: f.write(b))
    if results is not None:
        print(f'{"":24s} {"IDF1":>7s} {"IDP":>7s} {"IDR":>7s} {"pairF1":>7s} {"ARI":>7s} {"ids":>5s}')
        for key, label in (('method', 'association'), ('random', f'random ids ({RANDOM_DRAWS} draws)'),
                           ('one_per_tracklet', 'one id per tracklet')):
            r = results[key]
            print(f'{label:24s} {100 * r["IDF1"]:7.2f} {100 * r["IDP"]:7.2f} {100 * r["IDR"]:7.2f} '
                  f'{100 * r["pair_f1"]:7.2f} {r["ari"]:7.3f} {r["identities"]:5.0f}')
        print(f'({results["gt_identities"]} ground-truth identities; multi-camera IDF1 in %, TrackEval Identity)')
    print(f'wrote {args.out}/identities.csv' + (' and one MOTChallenge file per camera' if scene_cams else '')
          + (', results.json' if results is not None else ''))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
