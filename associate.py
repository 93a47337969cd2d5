"""Tracklet features of several cameras -> one global identity per tracklet (and, with ground truth, IDF1).

    python associate.py --features crops.npz --out ids/ --scene scene/

Writes ``ids/identities.csv`` (camera, track_id, global_id: one row per tracklet) and, with --scene, one
MOTChallenge file per camera ``ids/<camera>.txt``: the scene's tracker rows of the kept tracklets with their
global ids. When the scene has ground truth (``gt/<camera>.txt``) it prints and writes ``ids/results.json``:
multi-camera IDF1 / IDP / IDR (TrackEval's Identity metric), pairwise tracklet precision / recall / F1 and
the adjusted Rand index, next to two baselines (random ids; one identity per tracklet).
"""
import csv
import io
import json
import os
import sys
import time

import numpy as np

from util.cli.options import OneLineParser, run_main
from util.errors import DataError
from util.evaluation.association import (
    DENSE_RERANK_LIMIT,
    RANDOM_DRAWS,
    cluster,
    evaluate_scene,
    load_camera_features,
    scene_rows,
)
from util.io import write_text

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
    p = OneLineParser(description='Give every tracklet of several cameras a global identity. ' + METHOD)
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
        write_text(os.path.join(tmp, 'identities.csv'), text.getvalue())
        if scene_cams is not None:
            for name, _, tracks, gid in scene_rows(scene_cams, data, ids):
                lines = [','.join([f[0], str(g)] + f[2:]) for f, g in zip(tracks.fields, gid.tolist()) if g > 0]
                write_text(os.path.join(tmp, name + '.txt'), ''.join(line + '\n' for line in lines))
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
