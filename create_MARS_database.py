"""Build MARS_database/ (frame path lists and tracklet info) from MARS and its MARS-evaluation info files.

    python create_MARS_database.py --data_dir path/to/MARS --info_dir path/to/MARS-evaluation/info

The files are byte-compatible with the original release's; see util/datasets/mars.py for their format.
"""

import argparse
import sys

from util.cli.options import run_main
from util.data.datasets.mars import build_mars_database


def build_parser():
    parser = argparse.ArgumentParser(
        description='Write train_path.txt, test_path.txt, train_info.npy, test_info.npy and query_IDX.npy '
                    'for MARS. Every info row is checked against the frame names it covers; on any error '
                    'nothing is written.')
    parser.add_argument('--data_dir', required=True,
                        help='MARS directory holding bbox_train/ and bbox_test/ (one sub-directory per identity)')
    parser.add_argument('--info_dir', required=True,
                        help='MARS-evaluation/info directory holding tracks_train_info.mat, '
                             'tracks_test_info.mat and query_IDX.mat')
    parser.add_argument('--output_dir', default='./MARS_database',
                        help='where to write the database (default ./MARS_database); replaced as a whole, '
                             'other files kept there')
    parser.add_argument('--no_progress', action='store_true', help='no progress bar while scanning')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    build_mars_database(args.data_dir, args.info_dir, args.output_dir, progress=not args.no_progress)
    print(f'wrote MARS database to {args.output_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
