"""Command-line options of train_baseline.py, train_NL.py, evaluate.py and the tools that use a trained model
(extract_features.py, search.py, export_onnx.py).

One argparse definition for the three scripts, so that they accept the same flags as the original release
(same names, same defaults, including the ``--stripe`` abbreviation of ``--stripes`` that the original README
uses) plus the flags this project adds. Every original flag is accepted by every script, as the original
shared one parser; the added flags are script specific where they only make sense there.
"""
import argparse
import errno
import math
import os
import sys

from models.network import MIN_HEIGHT, MIN_WIDTH, MODEL_TYPES, check_config
from util.data.sampling import TEST_SAMPLING_MODES
from util.errors import ModelConfigError, ReIDError
from util.evaluation.metrics import AP_RULES

SCRIPTS = ('baseline', 'NL', 'evaluate', 'extract', 'search', 'export')
TOOLS = ('extract', 'search', 'export')  # a trained model outside the benchmark: no database files

_DESCRIPTIONS = {
    'baseline': 'Train the video re-ID baseline (ResNet-50 + frame-level pooling, FPL).',
    'NL': 'Train NVAN / STE-NVAN (ResNet-50 with non-local attention).',
    'evaluate': 'Score a trained model (or saved features) on a test split: CMC and mAP, MARS protocol.',
    'extract': 'Embed your own tracklets (folders of frames) with a trained model: one feature per tracklet.',
    'search': 'Rank gallery tracklets by cosine similarity to query tracklets (folders or feature files).',
    'export': 'Export a trained model to ONNX: uint8 RGB clips (B, S, 3, H, W) in, (B, 2048) features out.',
}
TEST_SAMPLING_HELP = ("test-time clips of a tracklet: chunks (one clip, the first frame of each of S chunks, the "
                      "paper's protocol), first (the first S frames), all_sampled / all_continuous (every clip "
                      "of the chunks, features averaged)")


def str2bool(value):
    """Parse a real boolean ('true'/'false', 'yes'/'no', '1'/'0'); the original's type=bool took any text as True."""
    text = str(value).strip().lower()
    if text in ('1', 'true', 't', 'yes', 'y', 'on'):
        return True
    if text in ('0', 'false', 'f', 'no', 'n', 'off'):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false, yes/no, 1/0), got {value!r}")


def _add_original_flags(parser):
    """The original release's flags, with its names and defaults."""
    data = parser.add_argument_group('database files (written by create_MARS_database.py)')
    data.add_argument('--train_txt', help='frame path list of the training split (train_path.txt)')
    data.add_argument('--train_info', help='tracklet info of the training split (train_info.npy)')
    data.add_argument('--test_txt', help='frame path list of the test split (test_path.txt)')
    data.add_argument('--test_info', help='tracklet info of the test split (test_info.npy)')
    data.add_argument('--query_info', help='query rows of the test info (query_IDX.npy)')
    data.add_argument('--gallery_info', default=None,
                      help='gallery rows of the test info (gallery_IDX.npy, added): only these are ranked for '
                           'every query; omitted, the gallery is every test tracklet (MARS, DukeV). With --features it '
                           "replaces the file's gallery_idx")

    optim = parser.add_argument_group('optimisation')
    optim.add_argument('--lr', type=float, default=0.001, help='initial learning rate')
    optim.add_argument('--lr_step_size', type=int, default=100,
                       help='epochs between learning-rate decays by 0.1 (StepLR); 0 keeps the rate constant')
    optim.add_argument('--optimizer', default='adam', choices=('adam', 'sgd'),
                       help='adam (weight decay 1e-5 baseline, 5e-5 NL) or sgd (momentum 0.9, weight decay 1e-4)')
    optim.add_argument('--n_epochs', type=int, default=500, help='number of training epochs')
    optim.add_argument('--class_per_batch', type=int, default=16, help='identities per training batch (P)')
    optim.add_argument('--track_per_class', type=int, default=3,
                       help='tracklets per identity in a training batch (K), drawn with replacement')
    optim.add_argument('--frame_id_loss', action='store_true', default=False,
                       help='add cross-entropy on the logits of every frame (resnet50_s1 only)')
    optim.add_argument('--track_id_loss', action='store_true', default=False,
                       help='add cross-entropy on the clip logits (temporally pooled for resnet50_s1)')

    clip = parser.add_argument_group('clips and data loading')
    clip.add_argument('--S', type=int, default=6, help='frames sampled per tracklet (one per chunk)')
    clip.add_argument('--batch_size', type=int, default=32, help='tracklets per batch at test time')
    clip.add_argument('--num_workers', type=int, default=16, help='data-loading worker processes')

    model = parser.add_argument_group('model')
    model.add_argument('--model_type', default='resnet50',
                       help='one of ' + ', '.join(MODEL_TYPES) + " (the original's default 'resnet50' builds no "
                            'model and is refused)')
    model.add_argument('--latent_dim', type=int, default=2048,
                       help='feature dimension; the ResNet-50 models need 2048')
    model.add_argument('--stride', type=int, default=1, help='stride of the last ResNet stage (resnet50_s1)')
    model.add_argument('--temporal', default='mean', choices=('mean', 'max', 'Done'),
                       help="clip pooling: 'mean' / 'max' frame-level pooling for resnet50_s1, 'Done' for the "
                            'non-local types (they pool inside the network)')
    model.add_argument('--non_layers', type=int, nargs='+',
                       help='non-local blocks after the last N bottlenecks of each of the 4 ResNet stages '
                            '(default when omitted: 0 2 3 0)')
    model.add_argument('--stripes', type=int, nargs='+',
                       help='horizontal stripes per frame for the stripe non-local blocks of each stage '
                            '(default when omitted: 16 16 16 16); --stripe is accepted')
    model.add_argument('--load_ckpt', default=None,
                       help='weights to start from (training) or to score (evaluate.py); loaded strictly')

    out = parser.add_argument_group('outputs')
    out.add_argument('--ckpt', default=None,
                     help='output directory: ckpt_best.pth, last.pth, metrics.csv and the log file')
    out.add_argument('--log_path', default='loss.txt', help='log file name inside --ckpt')
    out.add_argument('--resume_validation', type=str2bool, default=False, metavar='BOOL',
                     help='validate once before the first training epoch (unused by the original, '
                          'whose type=bool read any value as True); parsed as a real boolean')


def _add_common_flags(parser):
    """Flags this project adds to every script."""
    run = parser.add_argument_group('execution (added)')
    run.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'),
                     help='auto: the GPU when one is visible, else the CPU; under torchrun each process '
                          'takes the GPU of its LOCAL_RANK')
    run.add_argument('--seed', type=int, default=0,
                     help='seeds python, numpy and torch, the batch sampler and the clip sampling; runs with '
                          'the same seed on the CPU are identical')
    run.add_argument('--height', type=int, default=256, help=f'frame height after resizing (at least {MIN_HEIGHT})')
    run.add_argument('--width', type=int, default=128, help=f'frame width after resizing (at least {MIN_WIDTH})')
    run.add_argument('--pretrained', default='imagenet', metavar='{imagenet,none,PATH}',
                     help="backbone initialisation: torchvision's ImageNet ResNet-50 weights, none (random), or "
                          'a ResNet-50 state dict file')
    run.add_argument('--test_sampling', default='chunks', metavar='{' + ','.join(TEST_SAMPLING_MODES) + '}',
                     help="test clips of a tracklet: 'chunks' the first frame of each of the S chunks (the "
                          "paper's); 'first' the first S frames; 'all_sampled' every j-th frame of the chunks, "
                          "one clip per j; 'all_continuous' every run of S consecutive frames; 'strided' CAL's "
                          'test clips of S frames --test_stride apart (MEVID, CCVID). The all_* and strided '
                          'modes average the clip features of a tracklet')
    run.add_argument('--test_stride', type=int, default=4,
                     help="frames between a clip's frames under --test_sampling strided (CAL's stride)")
    run.add_argument('--ap_rule', default='trapezoid', metavar='{' + ','.join(AP_RULES) + '}',
                     help="average precision: 'trapezoid' the MARS-evaluation rule (the paper's), 'plain' the "
                          'non-interpolated AP of CAL / MEVID / torchreid (the clothes-changing benchmarks)')
    run.add_argument('--rank_size', type=int, default=10000,
                     help='gallery items ranked per query, as the original; 0 ranks the whole gallery')
    run.add_argument('--amp', default='none', choices=('none', 'bf16', 'fp16'),
                     help='mixed precision for the network (losses and the metric stay in fp32; fp16 uses a '
                          'gradient scaler)')
    run.add_argument('--channels_last', action='store_true', help='channels-last memory layout for the network')
    run.add_argument('--compile', action='store_true', help='torch.compile the network')
    run.add_argument('--resize_on_device', action='store_true',
                     help='workers decode frames at their own size; the resize to --height x --width runs where '
                          'the network runs, with Pillow\'s integer arithmetic, so clips equal the default '
                          'pipeline\'s: for frames that need resizing (DukeV) on GPU machines short of CPU cores')
    run.add_argument('--decode_on_device', action='store_true',
                     help='decode JPEG frames where the network runs (nvJPEG on a GPU, batched), the workers only '
                          'reading files; resizing as --resize_on_device. On a GPU, nvJPEG\'s pixels differ '
                          'from libjpeg\'s by about 2 grey levels on average, so clips are close to, not equal '
                          'to, the default pipeline\'s (on the CPU they are equal)')


# Weight decay of the original scripts: Adam 1e-5 in train_baseline.py, 5e-5 in train_NL.py; SGD 1e-4 in both.
WEIGHT_DECAY = {('baseline', 'adam'): 1e-5, ('NL', 'adam'): 5e-5, ('baseline', 'sgd'): 1e-4, ('NL', 'sgd'): 1e-4}


def default_weight_decay(script, optimizer):
    """The weight decay a train script uses when --weight_decay is not given."""
    return WEIGHT_DECAY[script, optimizer]


def _add_train_flags(parser, script):
    _add_attribute_flags(parser)  # validation prints the attribute protocols too
    train = parser.add_argument_group('training (added)')
    # '%(default).0s' prints nothing: it stops the help formatter from appending '(default: None)'
    train.add_argument('--weight_decay', type=float, default=None, metavar='WD',
                       help=f'weight decay of the optimiser (default: {default_weight_decay(script, "adam"):g} '
                            f'with adam, {default_weight_decay(script, "sgd"):g} with sgd)%(default).0s')
    train.add_argument('--tensorboard', default=None, metavar='DIR',
                       help="also log each epoch's metrics.csv numbers as TensorBoard scalars in DIR")
    train.add_argument('--eval_every', type=int, default=10,
                       help='validate after every N epochs and after the last one; 0: after the last only')
    train.add_argument('--resume', default=None, metavar='PATH',
                       help='continue an interrupted run exactly from its last.pth (or a --ckpt directory '
                            'holding one), with the flags it was started with (--n_epochs may grow)')
    train.add_argument('--overwrite', action='store_true',
                       help='start afresh in a --ckpt directory that holds another run, deleting its checkpoints, '
                            'log and metrics (without it such a directory is refused)')


def _add_evaluate_flags(parser):
    ev = parser.add_argument_group('evaluation (added)')
    ev.add_argument('--save_features', default=None, metavar='F.npz',
                    help='also write the test features, labels, cameras and query rows to this file')
    ev.add_argument('--features', default=None, metavar='F.npz',
                    help='score features saved by --save_features, without a model or any image')
    ev.add_argument('--visualize_ranks', default=None, metavar='DIR',
                    help='draw the ranked gallery of some queries into DIR (one PNG per query and index.html); '
                         'with --features it needs --test_txt and --test_info for the frames')
    ev.add_argument('--num_queries', type=int, default=10, help='queries drawn by --visualize_ranks')
    ev.add_argument('--topk', type=int, default=10, help='ranked gallery tracklets per query in --visualize_ranks')
    ev.add_argument('--results', default=None, metavar='F.json',
                    help='write every number of the run to this JSON file: rank1, rank5, rank10, rank20, mAP '
                         '(fractions), cmc (to rank 50), query counts, sampling, gallery, checkpoint and '
                         're-ranking settings; re-ranked scores under "reranked"')
    ev.add_argument('--cmc_plot', default=None, metavar='F.png',
                    help='draw the CMC curve (and the re-ranked one with --rerank) to this PNG')
    ev.add_argument('--chance_level', action='store_true',
                    help='also print what random rankings score on this test split (expected rank-1, and '
                         'rank-1 / mAP of random features)')
    _add_attribute_flags(parser)
    _add_rerank_flags(parser, 'also score with k-reciprocal re-ranking (probe = queries, gallery = the evaluation '
                              'gallery) and print both tables')


def _add_attribute_flags(parser):
    attr = parser.add_argument_group('attribute protocols (added; MEVID, CCVID)')
    attr.add_argument('--clothes_info', default=None, metavar='test_clothes.npy',
                      help='clothes id per test row: also the same-clothes (SC) and clothes-changing (CC) results')
    attr.add_argument('--location_info', default=None, metavar='test_location.npy',
                      help='location id per test row (MEVID): also the same- (SL) and different-location (DL) '
                           'results')
    attr.add_argument('--scale_info', default=None, metavar='test_scale.npy',
                      help='scale id per test row (MEVID): also the same- (SS) and different-scale (DS) results')


def _add_rerank_flags(parser, what):
    rr = parser.add_argument_group('k-reciprocal re-ranking (added; Zhong et al., CVPR 2017)')
    rr.add_argument('--rerank', action='store_true', help=what)
    rr.add_argument('--rerank_k1', type=int, default=20, help='k1: size of the k-reciprocal neighbourhoods')
    rr.add_argument('--rerank_k2', type=int, default=6, help='k2: neighbours averaged in the query expansion')
    rr.add_argument('--rerank_lambda', type=float, default=0.3,
                    help='weight of the original distance against the Jaccard distance, in [0, 1]')


def _add_extract_flags(parser):
    tool = parser.add_argument_group('extract_features.py')
    tool.add_argument('--tracklets', nargs='+', metavar='DIR',
                      help='tracklet folders of frames, or roots whose folders holding images are the tracklets')
    tool.add_argument('--out', metavar='F.npz',
                      help='features file: features, paths (the tracklet folders), labels, cams and query_idx, '
                           'which evaluate.py --features scores and search.py reads')


def _add_search_flags(parser):
    tool = parser.add_argument_group('search.py')
    tool.add_argument('--query', metavar='Q',
                      help='query tracklets: a tracklet folder, a root of tracklet folders, or a features file')
    tool.add_argument('--gallery', metavar='G', help='gallery tracklets: a folder as --query, or a features file')
    tool.add_argument('--topk', type=int, default=10, help='ranked gallery tracklets printed per query')
    tool.add_argument('--visualize', metavar='OUT.png',
                      help='draw the query frames over its ranked gallery (one PNG; OUT_q<k>.png per query '
                           'when there are several)')
    tool.add_argument('--chunk', type=int, default=4096,
                      help='gallery tracklets scored at once: memory is about 2 x chunk x 2048 floats (64 MiB) '
                           'plus chunk x queries similarities, whatever the gallery size')
    _add_rerank_flags(parser, 'rank by k-reciprocal re-ranking of the whole gallery instead (needs the (Q+N)^2 '
                              'distances in memory)')


def _add_export_flags(parser):
    tool = parser.add_argument_group('export_onnx.py')
    tool.add_argument('--out', metavar='model.onnx', help='the ONNX file to write')
    tool.add_argument('--opset', type=int, default=17, help='ONNX opset version')
    tool.add_argument('--no_check', action='store_true',
                      help='skip the check that onnxruntime on the CPU gives PyTorch\'s features')


class OneLineParser(argparse.ArgumentParser):
    """argparse with a refused flag reported in one line, as every other error of the scripts (the usage text,
    about 40 lines for these scripts, stays in --help)."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message}\n')


def build_parser(script):
    """The argument parser of one script: 'baseline', 'NL', 'evaluate', 'extract', 'search' or 'export'."""
    if script not in SCRIPTS:
        raise ValueError(f'script must be one of {SCRIPTS}, got {script!r}')
    parser = OneLineParser(description=_DESCRIPTIONS[script], allow_abbrev=True,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.set_defaults(script=script)
    _add_original_flags(parser)
    _add_common_flags(parser)
    if script == 'evaluate':
        _add_evaluate_flags(parser)
    elif script in TOOLS:
        {'extract': _add_extract_flags, 'search': _add_search_flags, 'export': _add_export_flags}[script](parser)
    else:
        _add_train_flags(parser, script)
    return parser


def _check(parser, args):
    """Refuse inconsistent flags before any file is read (parser.error: usage, message, exit status 2)."""
    def need(*flags):
        missing = ['--' + f for f in flags if getattr(args, f) is None]
        if missing:
            parser.error('missing ' + ', '.join(missing))

    rescoring = args.script == 'evaluate' and args.features is not None
    if args.script == 'search':  # feature files alone need no model
        need('query', 'gallery')
        rescoring = not any(os.path.isdir(p) for p in (args.query, args.gallery))
    if rescoring:
        if args.script == 'evaluate' and args.save_features is not None:
            parser.error('--features re-scores saved features; --save_features has nothing new to save')
    else:
        if args.model_type not in MODEL_TYPES:
            parser.error(f'--model_type {args.model_type!r} is not a model; choose one of ' + ', '.join(MODEL_TYPES))
        if args.frame_id_loss and args.model_type != 'resnet50_s1':
            parser.error('--frame_id_loss needs per-frame logits, which only resnet50_s1 produces')
        if args.latent_dim != 2048:
            parser.error(f'--latent_dim {args.latent_dim}: the ResNet-50 models produce 2048-d features')
        for name in ('S', 'batch_size'):
            if getattr(args, name) < 1:
                parser.error(f'--{name} must be at least 1')
        try:  # the model's own rules (models.network.check_config), before any file is read
            check_config(args.model_type, args.non_layers, args.stripes, args.temporal, args.stride, args.height,
                         args.width, args.S)
        except ModelConfigError as err:
            parser.error(f'--model_type {args.model_type}: {err}')
        if args.num_workers < 0:
            parser.error('--num_workers must be 0 or more')
    if args.rank_size < 0:
        parser.error('--rank_size must be 0 (whole gallery) or positive')
    if args.test_sampling not in TEST_SAMPLING_MODES:
        parser.error(f'--test_sampling {args.test_sampling!r} is not a sampling mode; choose one of '
                     + ', '.join(TEST_SAMPLING_MODES))
    if args.test_stride < 1:
        parser.error(f'--test_stride must be at least 1, got {args.test_stride}')
    if args.ap_rule not in AP_RULES:
        parser.error(f'--ap_rule {args.ap_rule!r} is not an AP rule; choose one of ' + ', '.join(AP_RULES))
    if args.script in ('evaluate', 'search'):
        if args.rerank_k1 < 1 or args.rerank_k2 < 1:
            parser.error(f'--rerank_k1 and --rerank_k2 must be at least 1, got {args.rerank_k1} and {args.rerank_k2}')
        if not 0 <= args.rerank_lambda <= 1:  # also refuses nan
            parser.error(f'--rerank_lambda must lie in [0, 1], got {args.rerank_lambda}')

    if args.script in TOOLS:
        _check_tool(parser, args, need, needs_model=not rescoring)
        return
    if args.script == 'evaluate':
        if not rescoring:
            need('test_txt', 'test_info', 'query_info')
            if args.load_ckpt is None:
                parser.error('--load_ckpt is required (the weights to score), or --features F.npz')
        return
    need('train_txt', 'train_info', 'test_txt', 'test_info', 'query_info', 'ckpt')
    for name in ('n_epochs', 'class_per_batch', 'track_per_class'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1')
    if args.class_per_batch < 2:
        parser.error('--class_per_batch must be at least 2: the triplet loss needs negatives')
    if args.track_per_class < 2:
        parser.error('--track_per_class must be at least 2: the triplet loss needs a positive (another tracklet '
                     'of the same identity) for every anchor')
    if not math.isfinite(args.lr) or args.lr <= 0:
        parser.error(f'--lr must be a finite number above 0, got {args.lr}')
    if args.weight_decay is not None and not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        parser.error(f'--weight_decay must be a finite number, 0 or more, got {args.weight_decay}')
    if args.overwrite and args.resume is not None:
        parser.error('--overwrite starts a new run and --resume continues one: pass one of them')
    if args.lr_step_size < 0 or args.eval_every < 0:
        parser.error('--lr_step_size and --eval_every must be 0 or more')


def _check_tool(parser, args, need, needs_model):
    if needs_model and args.load_ckpt is None:
        parser.error('--load_ckpt is required (the trained weights)'
                     + (', or feature files for both --query and --gallery' if args.script == 'search' else ''))
    if args.script == 'extract':
        need('tracklets', 'out')
    elif args.script == 'export':
        need('out')
    else:
        if args.topk < 1 or args.chunk < 1:
            parser.error('--topk and --chunk must be at least 1')


def parse_args(script, argv=None):
    """Parse and check the command line of one script."""
    parser = build_parser(script)
    args = parser.parse_args(argv)
    _check(parser, args)
    if script in ('baseline', 'NL') and args.weight_decay is None:
        args.weight_decay = default_weight_decay(script, args.optimizer)  # resolved once: last.pth records it
    if script == 'evaluate' and args.features is not None:
        _check_rescoring(parser, _given_flags(script, argv))
    return args


def _given_flags(script, argv):
    """The destinations of the flags given on the command line (defaults left out)."""
    parser = build_parser(script)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _check_rescoring(parser, given):
    """Saved features are fixed: flags that would change them cannot act, so they are refused, not ignored."""
    for name, why in (('query_info', "the file's query_idx are the queries"),
                      ('test_sampling', 'the features were extracted with the sampling mode recorded in the file')):
        if name in given:
            parser.error(f'--{name} cannot change features scored with --features ({why}); drop it, or extract '
                         f'the features again with evaluate.py --load_ckpt ... --save_features')


# File-system faults that are the machine's state, not a bug: reported in one line like a ReIDError.
_FILE_SYSTEM_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                       errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE}


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a job scheduler's stop), raised like Ctrl-C so that the same clean-up runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


def run_main(main, argv=None):
    """Run a script's main(argv); a ReIDError (or a file-system fault such as a full disk) becomes one
    `error: ...` line on stderr and exit status 2; Ctrl-C one `error: interrupted` line and status 130,
    SIGTERM the same clean-up and `error: terminated`, status 143 (128 + 15, as a shell reports it)."""
    import signal
    import threading
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return main(argv) or 0
    except ReIDError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in _FILE_SYSTEM_FAULTS:
            raise
        where = f'{err.filename}: ' if err.filename else ''
        print(f'error: {where}{err.strerror or err}', file=sys.stderr)
        return 2
    except Terminated:
        print('error: terminated', file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
