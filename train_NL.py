"""Train NVAN / STE-NVAN on the database files of create_MARS_database.py.

Same flags as the original release (`python3 train_NL.py --help`); see run_NL.sh for the paper's settings.
Under torchrun (`torchrun --nproc_per_node=N train_NL.py ...`) the batch is split across processes.
"""
import sys

from util.cli.options import parse_args, run_main
from util.cli.train import train


def main(argv=None):
    return train(parse_args('NL', argv))


if __name__ == '__main__':
    sys.exit(run_main(main))
