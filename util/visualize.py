"""``python -m util.visualize``: forwards to util.cli.visualize, where the command line lives."""
import sys

from util.cli.visualize import main

if __name__ == '__main__':
    sys.exit(main())
