"""Build MEVID_database/ (frame path lists, tracklet info, query and gallery rows, clothes / location / scale
labels) from MEVID.

    python create_MEVID_database.py --data_dir path/to/MEVID [--scale_file test_track_scale.txt]

See util/data/datasets/mevid.py for the layout, the rows the official loader drops and the labels.
"""

import argparse
import sys

from util.cli.options import run_main
from util.data.datasets.mevid import build_mevid_database


def build_parser():
    parser = argparse.ArgumentParser(
        description='Write train_path.txt, train_info.npy, train_clothes.npy, test_path.txt, test_info.npy, '
                    'test_clothes.npy, test_location.npy, query_IDX.npy (the rows of query_IDX.txt), gallery_IDX.npy '
                    '(every other test row) and, with --scale_file, test_scale.npy for MEVID. Rows that cover no '
                    'frame are dropped, as the official loader does. On any error nothing is written.')
    parser.add_argument('--data_dir', required=True,
                        help='MEVID directory holding bbox_train/, bbox_test/, train_name.txt, test_name.txt, '
                             'track_train_info.txt, track_test_info.txt and query_IDX.txt')
    parser.add_argument('--scale_file', default=None,
                        help="the MEVID repository's test_track_scale.txt (lines '<frame name> l|m'): also write "
                             'test_scale.npy')
    parser.add_argument('--output_dir', default='./MEVID_database',
                        help='where to write the database (default ./MEVID_database); replaced as a whole')
    parser.add_argument('--no_progress', action='store_true', help='no progress bar while checking frames')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = build_mevid_database(args.data_dir, args.output_dir, args.scale_file, progress=not args.no_progress)
    print(f'wrote MEVID database to {args.output_dir}: {len(out["train_info.npy"])} train and '
          f'{len(out["test_info.npy"])} test tracklets, {len(out["query_IDX.npy"])} queries')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
