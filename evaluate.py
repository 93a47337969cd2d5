"""Score a trained model (or saved features) on the MARS test split: CMC and mAP.

Same flags as the original release (`python3 evaluate.py --help`) plus the test protocols papers report
(--test_sampling, --gallery_info, --rerank) and the outputs a researcher keeps (--results, --cmc_plot,
--save_features, --visualize_ranks); see run_evaluate.sh for the released checkpoints' settings.
"""
import sys

from util.cli.evaluate import evaluate
from util.cli.options import parse_args, run_main


def main(argv=None):
    return evaluate(parse_args('evaluate', argv))


if __name__ == '__main__':
    sys.exit(run_main(main))
