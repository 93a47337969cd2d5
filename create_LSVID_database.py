"""Build LSVID_database/ (frame path lists, tracklet info, query and gallery rows) from LS-VID.

    python create_LSVID_database.py --data_dir path/to/LS-VID

See util/datasets/lsvid.py for the layout and the query/gallery protocol.
"""

import argparse
import sys

from util.cli.options import run_main
from util.data.datasets.lsvid import build_lsvid_database


def build_parser():
    parser = argparse.ArgumentParser(
        description='Write train_path.txt, train_info.npy, test_path.txt, test_info.npy, query_IDX.npy (the rows '
                    'of test/data/info_test.mat) and gallery_IDX.npy (every other test row) for LS-VID. Rows follow '
                    'the list_sequence files. On any error nothing is written.')
    parser.add_argument('--data_dir', required=True,
                        help='LS-VID directory holding list_sequence/, test/data/info_test.mat, tracklet_train/ '
                             'and tracklet_test/')
    parser.add_argument('--output_dir', default='./LSVID_database',
                        help='where to write the database (default ./LSVID_database); replaced as a whole')
    parser.add_argument('--no_progress', action='store_true', help='no progress bar while scanning')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    build_lsvid_database(args.data_dir, args.output_dir, progress=not args.no_progress)
    print(f'wrote LS-VID database to {args.output_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
