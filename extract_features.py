"""Embed your own tracklets with a trained model: one 2048-d feature per folder of frames.

    python extract_features.py --load_ckpt ckpt_best.pth --model_type resnet50_NL --temporal Done --S 8 \
        --tracklets crops/ --out crops.npz

Model, clip and loading flags have evaluate.py's names and meaning (`--help`). The file holds features, paths
(the tracklet folders), labels and cams (from MARS / DukeV frame names, else -1) and query_idx (the tracklets
with a known identity): search.py reads it, and evaluate.py --features scores it. Folders written by
tracklets_from_video.py (<camera>_t<id>/f<frame>.jpg, or listed in a tracklets.csv beside them) also give
cams (the camera number), camera_names, track_ids, first_frame and last_frame, which associate.py needs.
"""
import sys

from util.cli.options import parse_args, run_main
from util.cli.tools import embedder_from_args
from util.data.cameras import tracklet_meta
from util.evaluation.embed import find_tracklets, tracklet_database, tracklet_features
from util.io import check_writable


def main(argv=None):
    args = parse_args('extract', argv)
    check_writable(args.out, '--out')
    tracklets = find_tracklets(args.tracklets)
    db = tracklet_database(tracklets)
    embedder = embedder_from_args(args)
    print(f'Embedding {len(tracklets)} tracklets ({len(db.paths)} frames) with {args.model_type}, S={args.S}, '
          f'--test_sampling {args.test_sampling}, device {embedder.device}')
    features = embedder.embed_database(db, progress=True)
    labels, cams = db.info[:, 2], db.info[:, 3]
    camera_arrays = tracklet_meta(tracklets) or {}  # camera tracklets of tracklets_from_video.py
    cams = camera_arrays.pop('cams', cams)
    tracklet_features(features, tracklets, labels, cams, args.test_sampling, **camera_arrays).write(args.out)
    print(f'Saved {features.shape[0]} x {features.shape[1]} features to {args.out} '
          f'({int((labels != -1).sum())} tracklets with identities from their frame names)')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
