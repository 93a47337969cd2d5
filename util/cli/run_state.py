"""What the run scripts (run_splits.sh, run_DukeV.sh, run_LSVID.sh) ask before they train: are the flags
good, and how far did an earlier, interrupted run of this split get.

    python -m util.cli.run_state check NL|baseline|evaluate FLAGS...
        parse the flags as that script would (exit 2 with argparse's error line if they are refused); run for
        train_NL.py and evaluate.py before the first split trains, so that a flag only one of them refuses
        fails before hours of training, not after them
    python -m util.cli.run_state state EVALUATE_FLAGS...
        print what the run directory of evaluate.py's --load_ckpt holds, one word:
        done     --results is this run's: it scores this --load_ckpt with this protocol (sampling mode,
                 re-ranking, gallery) and was written after the last training save: skip the split
        resume   last.pth is there: continue the training with --resume, then score
        restart  ckpt_best.pth without last.pth (killed before its first epoch was saved): --overwrite
        new      nothing of a run there
"""
import contextlib
import io
import os
import sys

from util.cli.options import parse_args, run_main
from util.data.datasets.common import read_json
from util.errors import ReIDError

SCRIPTS = {'NL': 'train_NL.py', 'baseline': 'train_baseline.py', 'evaluate': 'evaluate.py'}


def _same_path(a, b):
    if a is None or b is None:
        return a is None and b is None
    return os.path.realpath(a) == os.path.realpath(b)


def _mtime(path):
    return os.path.getmtime(path) if os.path.exists(path) else None


def results_match(record, args):
    """Whether a --results record scores args.load_ckpt with the protocol the evaluate.py flags ask for."""
    rerank = dict(k1=args.rerank_k1, k2=args.rerank_k2, lambda_value=args.rerank_lambda) if args.rerank else None
    return (isinstance(record, dict) and _same_path(record.get('checkpoint'), args.load_ckpt)
            and record.get('test_sampling') == args.test_sampling and record.get('rerank') == rerank
            and _same_path(record.get('gallery_info'), args.gallery_info) and record.get('rank_size') == args.rank_size)


def run_state(args):
    """'done', 'resume', 'restart' or 'new' for the evaluate.py flags `args` (see the module's text)."""
    run_dir = os.path.dirname(os.path.abspath(args.load_ckpt))
    last, best = os.path.join(run_dir, 'last.pth'), args.load_ckpt
    if args.results is not None and os.path.isfile(args.results) and os.path.isfile(best):
        try:
            record = read_json(args.results, 'the JSON that evaluate.py --results writes')
        except ReIDError:
            record = None
        written = _mtime(args.results)
        newer = all(t is None or written >= t for t in (_mtime(best), _mtime(last)))
        if newer and results_match(record, args):
            return 'done'
    if os.path.isfile(last):
        return 'resume'
    if os.path.isfile(best):
        return 'restart'
    return 'new'


def parse_quietly(script, argv):
    """parse_args of `script`; a refused flag is argparse's one `<script>: error: ...` line (no usage text,
    which would bury it in the run script's output), exit status 2."""
    sys.argv[0] = SCRIPTS[script]  # argparse's messages name the script the flags are for
    text = io.StringIO()
    try:
        with contextlib.redirect_stderr(text):
            return parse_args(script, argv)
    except SystemExit as exit_:
        lines = text.getvalue().strip().splitlines()
        print(lines[-1] if lines else f'{SCRIPTS[script]}: error: bad flags', file=sys.stderr)
        raise SystemExit(exit_.code) from None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['check'] and len(argv) >= 2 and argv[1] in SCRIPTS:
        parse_quietly(argv[1], argv[2:])
        return 0
    if argv[:1] == ['state']:
        args = parse_quietly('evaluate', argv[1:])
        if args.load_ckpt is None:
            raise ReIDError('run_state state: --load_ckpt is needed (the checkpoint of the run)')
        print(run_state(args))
        return 0
    raise ReIDError('usage: python -m util.cli.run_state check NL|baseline|evaluate FLAGS... | state FLAGS...')


if __name__ == '__main__':
    sys.exit(run_main(main))
