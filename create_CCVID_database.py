"""Build CCVID_database/ (frame path lists, tracklet info, query and gallery rows, clothes labels) from CCVID.

    python create_CCVID_database.py --data_dir path/to/CCVID

See util/data/datasets/ccvid.py for the layout, the cameras and the clothes labels.
"""

import argparse
import sys

from util.cli.options import run_main
from util.data.datasets.ccvid import build_ccvid_database


def build_parser():
    parser = argparse.ArgumentParser(
        description='Write train_path.txt, train_info.npy, train_clothes.npy, test_path.txt, test_info.npy, '
                    'test_clothes.npy, query_IDX.npy and gallery_IDX.npy for CCVID (test rows: query.txt, then '
                    'gallery.txt). On any error nothing is written.')
    parser.add_argument('--data_dir', required=True,
                        help='CCVID directory holding train.txt, query.txt, gallery.txt and session1..3/')
    parser.add_argument('--output_dir', default='./CCVID_database',
                        help='where to write the database (default ./CCVID_database); replaced as a whole')
    parser.add_argument('--no_progress', action='store_true', help='no progress bar while scanning')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = build_ccvid_database(args.data_dir, args.output_dir, progress=not args.no_progress)
    print(f'wrote CCVID database to {args.output_dir}: {len(out["train_info.npy"])} train and '
          f'{len(out["test_info.npy"])} test tracklets, {len(out["query_IDX.npy"])} queries')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
