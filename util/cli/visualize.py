"""Pictures of a model and its training: curves, ranked retrieval results and non-local attention maps.

The command line of util/pictures/ (one module per picture), one sub-command each:
``python -m util.visualize {curves,ranks,attention} ...``.

* ``curves``: training curves of a ``metrics.csv`` (:mod:`util.pictures.curves`).
* ``ranks``: ranked gallery of some queries from saved features and the database files, with an
  ``index.html`` (:mod:`util.pictures.ranks`).
* ``attention``: non-local attention maps of one test tracklet under a checkpoint
  (:mod:`util.pictures.attention`).
"""
import argparse
import os
import sys

import numpy as np

from util.cli.options import run_main
from util.errors import DataError
from util.evaluation.features_file import FeaturesFile
from util.pictures.attention import ATT_DPI, attention_figure
from util.pictures.curves import plot_training_curves
from util.pictures.ranks import save_ranked_results


def _parser():
    parser = argparse.ArgumentParser(prog='python -m util.visualize', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('curves', help='training curves from a metrics.csv')
    p.add_argument('--metrics', required=True, help='metrics.csv written in --ckpt during training')
    p.add_argument('--out', help='output PNG (default: training_curves.png beside the CSV)')

    p = sub.add_parser('ranks', help='ranked gallery of some queries from saved features')
    p.add_argument('--features', required=True, help='.npz written by evaluate.py --save_features')
    p.add_argument('--test_txt', required=True, help='test_path.txt of the database')
    p.add_argument('--test_info', required=True, help='test_info.npy of the database')
    p.add_argument('--query_info', help='query_IDX.npy; checked against the query_idx of the .npz')
    p.add_argument('--out', required=True, help='output directory (one PNG per query + index.html)')
    p.add_argument('--num_queries', type=int, default=10, help='queries drawn, spread over the query list')
    p.add_argument('--topk', type=int, default=10, help='non-junk gallery tracklets per query')
    p.add_argument('--queries', type=int, nargs='+', help='positions in the query list (overrides --num_queries)')
    p.add_argument('--S', type=int, default=8, help='frames per clip (the test frames shown)')
    p.add_argument('--height', type=int, default=128, help='drawn frame height')
    p.add_argument('--width', type=int, default=64, help='drawn frame width')
    p.add_argument('--all_frames', action='store_true', help='show the S test frames of every gallery tracklet')

    p = sub.add_parser('attention', help='non-local attention maps of one test tracklet')
    p.add_argument('--load_ckpt', required=True, help='checkpoint (ckpt_best.pth or a released one)')
    p.add_argument('--model_type', required=True, help='a non-local type, e.g. resnet50_NL')
    p.add_argument('--non_layers', type=int, nargs=4, default=[0, 2, 3, 0], metavar='N')
    p.add_argument('--stripes', type=int, nargs=4, default=[16, 16, 16, 16], metavar='N')
    p.add_argument('--stride', type=int, default=1)
    p.add_argument('--test_txt', required=True, help='test_path.txt of the database')
    p.add_argument('--test_info', required=True, help='test_info.npy of the database')
    p.add_argument('--track', type=int, required=True, help='row of the test info (0-based)')
    p.add_argument('--S', type=int, default=8, help='frames per clip')
    p.add_argument('--height', type=int, default=256)
    p.add_argument('--width', type=int, default=128)
    p.add_argument('--query_frame', type=int, default=0, help='frame of the query position (0..S-1)')
    p.add_argument('--query_pos', type=int, nargs=2, metavar=('Y', 'X'),
                   help='query pixel in the resized frame (default: the centre)')
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    p.add_argument('--out', help='output PNG (default: attention_track<N>.png)')
    return parser


def _check_features_match(db, labels, cams, query_idx, args):
    if len(labels) != len(db.info):
        raise DataError(f'{args.features}: {len(labels)} tracklets, but {args.test_info} has {len(db.info)}')
    for name, column, values in (('labels', 2, labels), ('cams', 3, cams)):
        bad = np.flatnonzero(np.asarray(values).reshape(-1) != db.info[:, column])
        if len(bad):
            raise DataError(f'{args.features}: {name} differ from {args.test_info} (first at row {bad[0]}); '
                            f'were the features computed on this database?')
    if db.query_idx is not None and not np.array_equal(db.query_idx.reshape(-1), np.asarray(query_idx).reshape(-1)):
        raise DataError(f'{args.features}: query_idx differs from {args.query_info}')


def _run_ranks(args):
    from util.data.loaders import read_database

    saved = FeaturesFile.read(args.features)
    features, labels, cams, query_idx, gallery_idx = (saved.features, saved.labels, saved.cams, saved.query_idx,
                                                      saved.gallery_idx)
    db = read_database(args.test_txt, args.test_info, args.query_info)
    _check_features_match(db, labels, cams, query_idx, args)
    drawn = save_ranked_results(args.out, features, labels, cams, query_idx, db.paths, db.info, args.S,
                                num_queries=args.num_queries, topk=args.topk, height=args.height,
                                width=args.width, all_frames=args.all_frames, queries=args.queries,
                                gallery_idx=gallery_idx)
    correct = sum(q.rank1_correct for q in drawn)
    print(f'{len(drawn)} ranked lists in {args.out} (rank-1 correct for {correct}); '
          f'open {os.path.join(args.out, "index.html")}')


def _run_attention(args):
    from models import load_model
    from util.data.frames import load_clip
    from util.data.loaders import read_database
    from util.data.sampling import test_frame_indices
    from util.distributed import select_device

    db = read_database(args.test_txt, args.test_info)
    if not 0 <= args.track < len(db.info):
        raise DataError(f'--track must lie in [0, {len(db.info)}), got {args.track}')
    model, _ = load_model(args.load_ckpt, args.model_type, non_layers=tuple(args.non_layers),
                          stripes=tuple(args.stripes), stride=args.stride, height=args.height)
    model.to(select_device(args.device))
    start, end, pid, cam = (int(v) for v in db.info[args.track])
    frames = test_frame_indices(start, end, args.S)
    clip = load_clip([db.paths[f] for f in frames], args.height, args.width)  # uint8 (S, 3, H, W)
    title = f'{args.model_type}, tracklet {args.track} (id {pid}, cam {cam})'
    fig, maps = attention_figure(model, clip, args.query_frame, args.query_pos, title=title)
    out = args.out or f'attention_track{args.track}.png'
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=ATT_DPI)
    print(f'attention maps of {len(maps)} non-local blocks written to {out}')


def _run(argv):
    args = _parser().parse_args(argv)
    if args.command == 'curves':
        print(f'training curves written to {plot_training_curves(args.metrics, args.out)}')
    elif args.command == 'ranks':
        _run_ranks(args)
    else:
        _run_attention(args)


def main(argv=None):
    """The command line's exit status: 0, or 2 after one ``error:`` line (util.cli.options.run_main)."""
    return run_main(_run, argv)


if __name__ == '__main__':
    sys.exit(main())
