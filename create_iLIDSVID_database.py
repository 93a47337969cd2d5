"""Build iLIDSVID_database/split_0 .. split_9 (and splits.json) from iLIDS-VID and its split file.

    python create_iLIDSVID_database.py --data_dir path/to/iLIDS-VID

See util/datasets/ilidsvid.py for the layout and the split rule.
"""

import argparse
import sys

from util.cli.options import run_main
from util.data.datasets.ilidsvid import build_ilidsvid_database


def build_parser():
    parser = argparse.ArgumentParser(
        description='Write one database per train/test split of iLIDS-VID (split_0 .. split_9: train_path.txt, '
                    'train_info.npy, test_path.txt, test_info.npy, query_IDX.npy = the cam1 sequences of the test '
                    'persons, gallery_IDX.npy = their cam2 sequences) and splits.json in torchreid\'s format. '
                    'On any error nothing is written.')
    parser.add_argument('--data_dir', required=True,
                        help='iLIDS-VID directory holding i-LIDS-VID/sequences/cam1, cam2 and '
                             '"train-test people splits"/train_test_splits_ilidsvid.mat')
    parser.add_argument('--output_dir', default='./iLIDSVID_database',
                        help='where to write the databases (default ./iLIDSVID_database); replaced as a whole')
    parser.add_argument('--no_progress', action='store_true', help='no progress bar while scanning')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    build_ilidsvid_database(args.data_dir, args.output_dir, progress=not args.no_progress)
    print(f'wrote iLIDS-VID databases (10 splits) to {args.output_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
