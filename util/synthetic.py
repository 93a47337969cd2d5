"""``python -m util.synthetic``: forwards to util.cli.synthetic, where the command line lives."""
import sys

from util.cli.options import run_main
from util.cli.synthetic import main

if __name__ == '__main__':
    sys.exit(run_main(main))
