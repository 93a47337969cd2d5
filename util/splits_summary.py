"""``python -m util.splits_summary``: forwards to util.cli.splits_summary, where the command line lives."""
import sys

from util.cli.options import run_main
from util.cli.splits_summary import main

if __name__ == '__main__':
    sys.exit(run_main(main))
