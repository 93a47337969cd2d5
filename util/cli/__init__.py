"""The command-line layer: argparse options, the one ``error:`` line of every script (``run_main``), and the
functions that turn flags into the objects the library takes."""
