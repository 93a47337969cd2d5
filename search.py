"""Rank gallery tracklets by cosine similarity to query tracklets, optionally with a picture.

    python search.py --query crops/track_0007 --gallery gallery.npz --topk 10 --visualize ranked.png \
        --load_ckpt ckpt_best.pth --model_type resnet50_NL --temporal Done --S 8

--query and --gallery are tracklet folders (a tracklet, or a root of tracklet folders: embedded with the model
flags, which have evaluate.py's names and meaning) or features files of extract_features.py. The gallery is
scored in chunks with a running top-k, so a file of 100,000 tracklets is searched in bounded memory.
"""
import os
import sys

import numpy as np

from util.cli.options import parse_args, run_main
from util.data.sampling import test_frame_indices
from util.errors import DataError
from util.evaluation.features_file import FeaturesFile, check_rankable
from util.evaluation.search import check_dimensions, cosine_topk, reranked_topk
from util.pictures.ranks import draw_search, match_kinds


def load_tracklets(path, flag, args, embedder):
    """Features, labels, cams and paths of --query / --gallery: embedded when a folder, else read."""
    if not os.path.isdir(path):
        return FeaturesFile.read(path, flag, mmap=True, scoring=False)
    from util.cli.tools import embedder_from_args  # torch: only for folders
    from util.evaluation.embed import (
        find_tracklets,
        tracklet_database,
        tracklet_features,
    )
    tracklets = find_tracklets([path])
    db = tracklet_database(tracklets)
    if embedder[0] is None:
        embedder[0] = embedder_from_args(args)
    print(f'{flag}: embedding {len(tracklets)} tracklet(s) of {path}')
    return tracklet_features(embedder[0].embed_database(db, progress=True), tracklets, db.info[:, 2], db.info[:, 3])


def describe(side, i, short=False):
    name = f'row {i}' if side.paths is None else str(side.paths[i])
    name = os.path.basename(name) if short else name
    pid, cam = int(side.labels[i]), int(side.cams[i])
    return name + (f' (id {pid}, cam {cam})' if pid != -1 else '')


def picture(out, args, query, q, gallery, rows, scores, score_name):
    from util.evaluation.embed import tracklet_frames
    frames = tracklet_frames(str(query.paths[q]))
    shown = test_frame_indices(0, len(frames) - 1, args.S)                   # the query clip's frames
    labels = np.concatenate([query.labels[q:q + 1], gallery.labels[rows]])
    kinds = match_kinds(labels, np.concatenate([query.cams[q:q + 1], gallery.cams[rows]]), 0)[1:]
    ranked = [(tracklet_frames(str(gallery.paths[r]))[0],
               (f'#{k + 1} {s:.3f}', f'id {gallery.labels[r]} c{gallery.cams[r]}' if labels[0] != -1 else ''),
               kind if labels[0] != -1 else None)
              for k, (r, s, kind) in enumerate(zip(rows, scores, kinds))]
    draw_search(out, [frames[i] for i in shown], f'Query {describe(query, q, short=True)}', ranked, args.S,
                query_labels=[f'f{i}' for i in shown])


def main(argv=None):
    args = parse_args('search', argv)
    if args.visualize is not None:
        from util.io import check_writable
        check_writable(args.visualize, '--visualize')
    embedder = [None]
    query = load_tracklets(args.query, '--query', args, embedder)
    gallery = load_tracklets(args.gallery, '--gallery', args, embedder)
    check_rankable(query.features, f'--query {args.query}', nothing='nothing ranked')
    check_rankable(gallery.features, f'--gallery {args.gallery}', nothing='nothing ranked')
    check_dimensions(query.features, gallery.features, args.query, args.gallery)
    if args.visualize is not None and (query.paths is None or gallery.paths is None):
        raise DataError('--visualize needs the tracklet folders: use folders or files of extract_features.py '
                        '(files of evaluate.py --save_features hold no paths)')
    if args.rerank:
        rows, scores = reranked_topk(query.features, gallery.features, args.topk, args.rerank_k1,
                                     args.rerank_k2, args.rerank_lambda)
        score_name = 're-ranked distance'
    else:
        rows, scores = cosine_topk(query.features, gallery.features, args.topk, args.chunk)
        score_name = 'cosine similarity'
    n_query = len(query.features)
    for q in range(n_query):
        print(f'Query {q}: {describe(query, q)}')
        print(f'  rank  {score_name:>18}  gallery tracklet')
        for k, (r, s) in enumerate(zip(rows[q], scores[q])):
            print(f'  {k + 1:4d}  {s:18.4f}  {describe(gallery, r)}')
        if args.visualize is not None:
            stem, ext = os.path.splitext(args.visualize)
            out = args.visualize if n_query == 1 else f'{stem}_q{q:03d}{ext or ".png"}'
            picture(out, args, query, q, gallery, rows[q], scores[q], score_name)
            print(f'  picture: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
