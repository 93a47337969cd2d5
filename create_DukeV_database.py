"""Build DukeV_database/ (frame path lists, tracklet info, query rows) from DukeMTMC-VideoReID.

    python create_DukeV_database.py --data_dir path/to/DukeMTMC-VideoReID

Reads both frame-name styles (0001_C6_F0099_X30823.jpg and the older 0001C6F0099X30823.jpg). The files are
byte-compatible with the original release's (there: creat_DukeV_database.py); see util/datasets/dukev.py.
"""

import argparse
import sys

from util.cli.options import run_main
from util.data.datasets.dukev import build_dukev_database


def build_parser():
    parser = argparse.ArgumentParser(
        description='Write train_path.txt, train_info.npy, gallery_path.txt, gallery_info.npy and '
                    'query_IDX.npy for DukeMTMC-VideoReID. Query tracklets are matched to gallery rows by '
                    'their <id>/<tracklet> directories; on any error nothing is written.')
    parser.add_argument('--data_dir', required=True,
                        help='DukeMTMC-VideoReID directory holding train/, query/ and gallery/ '
                             '(<id>/<tracklet>/<frames>)')
    parser.add_argument('--output_dir', default='./DukeV_database',
                        help='where to write the database (default ./DukeV_database); replaced as a whole, '
                             'other files kept there')
    parser.add_argument('--no_progress', action='store_true', help='no progress bar while scanning')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    build_dukev_database(args.data_dir, args.output_dir, progress=not args.no_progress)
    print(f'wrote DukeV database to {args.output_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
