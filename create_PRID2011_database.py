"""Build PRID2011_database/split_0 .. split_9 (and splits.json) from PRID2011's multi-shot sequences.

    python create_PRID2011_database.py --data_dir path/to/PRID2011 [--splits splits_prid2011.json]

See util/datasets/prid2011.py for the layout, the split files and the standard 178 persons.
"""

import argparse
import sys

from util.cli.options import run_main
from util.data.datasets.prid2011 import build_prid2011_database


def build_parser():
    parser = argparse.ArgumentParser(
        description='Write one database per train/test split of PRID2011 (split_0 .. split_9, as iLIDS-VID: '
                    'queries = cam_a, gallery = cam_b sequences of the test persons) and splits.json in '
                    'torchreid\'s format. On any error nothing is written.')
    parser.add_argument('--data_dir', required=True,
                        help='PRID2011 directory holding prid_2011/multi_shot/cam_a and cam_b')
    parser.add_argument('--output_dir', default='./PRID2011_database',
                        help='where to write the databases (default ./PRID2011_database); replaced as a whole')
    parser.add_argument('--splits', default=None, metavar='FILE',
                        help="torchreid's splits_prid2011.json or iLIDS-VID's train_test_splits_prid.mat (ls_set, "
                             '10 x 178, indices into the persons 1-200 with at least 27 frames in both cameras); '
                             'default: the first of DATA_DIR/splits_prid2011.json, DATA_DIR/train_test_splits_prid.mat')
    parser.add_argument('--no_progress', action='store_true', help='no progress bar while scanning')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    build_prid2011_database(args.data_dir, args.output_dir, args.splits, progress=not args.no_progress)
    print(f'wrote PRID2011 databases (10 splits) to {args.output_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
