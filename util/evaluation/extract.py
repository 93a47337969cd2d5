"""Test-set feature extraction, the saved-features file, and evaluate.py's command.

Features follow the original protocol by default: every test tracklet (junk and distractors included) gives one
clip of S frames, the first frame of each chunk; resnet50_s1 scores frames independently and its S BN-neck
features are pooled with --temporal, the non-local types return one feature per clip. --test_sampling picks the
other test protocols of SPEC section 9; the 'all_*' modes average a tracklet's clip features.
"""
import contextlib
import json
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from models import build_model, checkpoint_num_class, load_checkpoint, to_channels_last, unwrap_model
from util.data.frames import DeviceBatch, normalize_clip
from util.data.loaders import make_test_loader, read_database, read_rows
from util.distributed import cleanup, gather_tensors, init_distributed
from util.errors import BROKEN_DEPENDENCY, DataError, ReIDError
from util.evaluation.metrics import (
    PROTOCOLS,
    cosine_distance,
    cosine_distance_torch,
    evaluate_distances,
    evaluate_mars,
    format_protocols,
    format_result,
    match_masks,
    score_protocols,
)
from util.train.losses import temporal_pool
from util.train.run import atomic_save, check_writable

FEATURE_KEYS = ('features', 'labels', 'cams', 'query_idx')
_AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def autocast(device, amp):
    """The mixed-precision context of --amp ('none': full fp32)."""
    if amp == 'none':
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AMP_DTYPES[amp])


def prepare_clips(clips, frame_level, device, channels_last=False, dtype=torch.float32):
    """uint8 clips (B,S,3,H,W) -> normalised network input on `device`, in the dtype of its parameters.

    resnet50_s1 sees frames independently: (B*S,3,H,W); the non-local types keep the clip axis.
    A DeviceBatch (--resize_on_device, --decode_on_device) is finished on `device` first.
    """
    if isinstance(clips, DeviceBatch):
        clips = clips.decode(device)
    x = normalize_clip(clips, device=device, dtype=dtype)
    if frame_level:
        x = x.flatten(0, 1)  # (B*S,3,H,W)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
    return x


def clip_features(model, x, S, temporal, frame_level, amp, device):
    """Eval-mode features of one batch (B, D); fp32 under --amp."""
    with autocast(device, amp):
        feats = model(x)
    feats = feats.float() if amp != 'none' else feats
    if frame_level:
        feats = temporal_pool(feats, S, temporal)  # (B*S,D) -> (B,D)
    return feats


class TrackletMeans:
    """Running per-tracklet means of clip features for the 'all_*' sampling modes: float64 sums over the
    tracklet rows lo..hi-1 of a shard, one (hi - lo, D) buffer whatever the number of clips."""

    def __init__(self, dataset, shard):
        self.dataset, (self.lo, self.hi) = dataset, shard
        self.sums = None

    def add(self, feats, rows):
        """feats (B, D) of clips of the tracklet rows (B,)."""
        if self.sums is None:
            self.sums = torch.zeros(self.hi - self.lo, feats.shape[1], dtype=torch.float64)
        self.sums.index_add_(0, torch.as_tensor(rows, dtype=torch.int64) - self.lo, feats.double())

    def result(self):
        """(features (N, D) float32, labels (N,), cams (N,)) of the shard's tracklets."""
        counts = np.bincount(self.dataset.clip_track, minlength=self.hi)[self.lo:self.hi]   # clips per tracklet
        means = (self.sums / torch.from_numpy(counts)[:, None]).float()
        return (means, torch.from_numpy(self.dataset.pids[self.lo:self.hi]).long(),
                torch.from_numpy(self.dataset.cams[self.lo:self.hi]).long())


@torch.no_grad()
def extract_features(model, loader, S, device, temporal, frame_level=None, amp='none', channels_last=False,
                     progress=True):
    """Features, pids and cameras of every tracklet of the test loader's shard, in database order.

    One clip per tracklet ('chunks', 'first'): its eval feature. Several ('all_*' modes, batches of clips of
    any tracklets): the mean of its clips' eval features (SPEC 9), summed as the batches come.
    Returns (features (N,D) float32 tensor on the CPU, labels (N,) int64, cams (N,) int64).
    """
    net = unwrap_model(model)
    if frame_level is None:
        frame_level = net.frame_level
    dtype = next(net.parameters()).dtype
    several = getattr(loader.dataset, 'clip_track', None) is not None
    means = TrackletMeans(loader.dataset, getattr(loader, 'shard', (0, loader.dataset.num_tracks))) if several else None
    was_training = net.training
    net.eval()
    feats, labels, cams = [], [], []
    try:
        for batch in tqdm(loader, desc='Inference', ncols=100, leave=False, disable=not progress):
            x = prepare_clips(batch[0], frame_level, device, channels_last, dtype)
            f = clip_features(net, x, S, temporal, frame_level, amp, device).cpu()  # (B, D)
            if several:
                means.add(f, batch[3])
                continue
            feats.append(f)
            labels.append(torch.as_tensor(batch[1], dtype=torch.int64))
            cams.append(torch.as_tensor(batch[2], dtype=torch.int64))
    finally:
        net.train(was_training)
    if several and means.sums is not None:
        return means.result()
    if not feats:  # an empty shard (more processes than tracklets): the right width for the all-gather
        empty = torch.zeros(0, dtype=torch.int64)
        return torch.zeros(0, net.bottleneck.num_features, dtype=torch.float32), empty, empty.clone()
    return torch.cat(feats).float(), torch.cat(labels), torch.cat(cams)


def make_eval_loader(db, args, ctx=None):
    """The test loader; under torchrun each process reads a contiguous shard of the test tracklets."""
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    pin = ctx is not None and ctx.device.type == 'cuda'
    return make_test_loader(db, args.S, args.batch_size, args.num_workers, height=args.height, width=args.width,
                            rank=rank, world_size=world, pin_memory=pin, decoder=decoder_choice(args),
                            sampling=getattr(args, 'test_sampling', 'chunks'), stride=getattr(args, 'test_stride', 4))


def decoder_choice(args):
    """The loaders' decoder: 'device' under --decode_on_device (which resizes on the device too),
    'resize_on_device' under --resize_on_device, else 'auto'."""
    if getattr(args, 'decode_on_device', False):
        return 'device'
    return 'resize_on_device' if getattr(args, 'resize_on_device', False) else 'auto'


def gather_features(feats, labels, cams, ctx):
    """Concatenate the shards of every rank in rank order (a no-op for one process)."""
    if ctx is None or ctx.world_size == 1:
        return feats, labels, cams
    # gloo gathers CPU tensors, NCCL device tensors
    return tuple(gather_tensors(t.to(ctx.device)).cpu() for t in (feats, labels, cams))


def check_finite(features, source):
    """Refuse features with NaN or Inf rows before scoring: they would be ranked as if valid. `source` names
    where the features come from (a file, a checkpoint)."""
    finite = np.isfinite(np.asarray(features)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        first = ', '.join(str(int(r)) for r in bad[:5]) + (', ...' if len(bad) > 5 else '')
        raise DataError(f'{source}: {len(bad)} of {len(finite)} feature rows are not finite (NaN or Inf), '
                        f'rows {first}; nothing scored')


def score(features, labels, cams, query_idx, rank_size, gallery_idx=None, source='features', device=None,
          ap_rule='trapezoid'):
    """evaluate_mars on numpy / torch inputs, refusing non-finite features; rank_size 0 ranks the whole
    gallery; gallery_idx None: every row is the gallery; a CUDA device: distances and ranking run there."""
    features = np.asarray(features, dtype=np.float32)
    check_finite(features, source)
    size = rank_size if rank_size > 0 else (len(features) if gallery_idx is None else len(gallery_idx))
    return evaluate_mars(features, np.asarray(labels, dtype=np.int64), np.asarray(cams, dtype=np.int64),
                         np.asarray(query_idx, dtype=np.int64).reshape(-1), rank_size=size, gallery_idx=gallery_idx,
                         device=device, ap_rule=ap_rule)


def score_all(features, labels, cams, query_idx, rank_size, gallery_idx=None, source='features', device=None,
              ap_rule='trapezoid', attributes=None):
    """{'overall': MarsResult} plus the attribute protocols of ``attributes`` ({'clothes' | 'location' | 'scale':
    (N,) ids}, util.evaluation.metrics.PROTOCOLS), all from one distance matrix; without attributes, ``score``."""
    if not attributes:
        return {'overall': score(features, labels, cams, query_idx, rank_size, gallery_idx, source, device, ap_rule)}
    features = np.asarray(features, dtype=np.float32)
    check_finite(features, source)
    query_idx = np.asarray(query_idx, dtype=np.int64).reshape(-1)
    size = rank_size if rank_size > 0 else (len(features) if gallery_idx is None else len(gallery_idx))
    if device is not None and torch.device(device).type != 'cpu':
        dist = cosine_distance_torch(torch.from_numpy(features).to(device), query_idx, gallery_idx)
    else:
        dist = cosine_distance(features, query_idx, gallery_idx)
    return score_protocols(dist, np.asarray(labels, dtype=np.int64), np.asarray(cams, dtype=np.int64), query_idx,
                           size, gallery_idx, ap_rule, attributes)


ATTRIBUTE_FLAGS = {name: f'{name}_info' for name in PROTOCOLS}  # clothes -> --clothes_info, ...


def read_attributes(args, n, info_path):
    """The per-row attribute files given on the command line ({'clothes': (N,) int64, ...}), each checked to hold
    one integer per test row (n rows of info_path)."""
    out = {}
    for name, flag in ATTRIBUTE_FLAGS.items():
        path = getattr(args, flag, None)
        if path is not None:
            out[name] = check_attribute(_load_labels(path, f'--{flag}'), n, f'--{flag} {path}', info_path)
    return out


def _load_labels(path, flag):
    """A label .npy file (None when missing); an unreadable one is a one-line error."""
    if not os.path.isfile(path):
        return None
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:  # not a .npy file, or a damaged one
        raise DataError(f'{flag} {path}: not a readable .npy file ({type(err).__name__}: {err})') from None


def check_attribute(values, n, source, info_path):
    """One integer per test row, as a 1-D int64 array; else a one-line error naming `source`."""
    if values is None:
        raise DataError(f'{source}: no such file')
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise DataError(f'{source}: expected a 1-D integer array, got shape {values.shape} dtype {values.dtype}')
    if len(values) != n:
        raise DataError(f'{source}: {len(values)} values, but {info_path} has {n} test rows (expected one per row)')
    return values.astype(np.int64)


def chance_level(labels, cams, query_idx, rank_size=10000, draws=100, seed=0, gallery_idx=None):
    """What random ranking scores on this test split: (expected rank-1, mean rank-1 and mAP of `draws` sets of
    random Gaussian features through evaluate_mars).

    Expected rank-1: for each query with a valid match, the chance that the first non-junk gallery item is a
    good one, i.e. #good / #non-junk (util.evaluation.metrics.match_masks).
    """
    labels, cams = np.asarray(labels), np.asarray(cams)
    q = np.asarray(query_idx).reshape(-1)
    g = np.arange(len(labels)) if gallery_idx is None else np.asarray(gallery_idx).reshape(-1)
    good, junk = match_masks(labels[q], cams[q], labels[g], cams[g])   # (Q, G)
    n_good, n_valid = good.sum(1), (~junk).sum(1)
    scored = n_good > 0
    expected = float(np.mean(n_good[scored] / n_valid[scored])) if scored.any() else float('nan')
    rng = np.random.default_rng(seed)
    results = [score(rng.standard_normal((len(labels), 64)).astype(np.float32), labels, cams, q, rank_size,
                     gallery_idx) for _ in range(draws)]
    return expected, float(np.mean([r.rank(1) for r in results])), float(np.mean([r.mAP for r in results]))


# -- saved features ------------------------------------------------------------------------------------------

def save_features(path, features, labels, cams, query_idx, gallery_idx=None, test_sampling='chunks', **extra):
    """Write the .npz of --save_features atomically: features float32 (N,D); labels, cams (N,), query_idx (Q,)
    int64, 0-based; gallery_idx (G,) int64 only when the database names a gallery; test_sampling: the
    --test_sampling mode of the features (a 0-d string); ``extra`` arrays (extract_features.py's tracklet
    paths) are stored as given."""
    arrays = dict(features=np.asarray(features, dtype=np.float32), labels=np.asarray(labels, dtype=np.int64),
                  cams=np.asarray(cams, dtype=np.int64), query_idx=np.asarray(query_idx, dtype=np.int64).reshape(-1))
    if gallery_idx is not None:
        arrays['gallery_idx'] = np.asarray(gallery_idx, dtype=np.int64).reshape(-1)
    arrays['test_sampling'] = np.array(str(test_sampling))
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    atomic_save(arrays, path, write=lambda obj, f: np.savez(f, **obj))


def load_features(path, flag='--features'):
    """Read and check a --save_features file: dict of features, labels, cams, query_idx and gallery_idx (None
    when the file has none: every row is the gallery), and attributes ({'clothes' | 'location' | 'scale': (N,)},
    the label arrays saved with them). Non-finite feature rows are refused, naming the file."""
    if not os.path.isfile(path):
        raise DataError(f'{flag} {path}: no such file')
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in FEATURE_KEYS if k not in data.files]
            if missing:
                raise DataError(f'{flag} {path}: missing array(s) {", ".join(missing)} '
                                f'(expected {", ".join(FEATURE_KEYS)})')
            out = {k: data[k] for k in FEATURE_KEYS}
            out['gallery_idx'] = data['gallery_idx'] if 'gallery_idx' in data.files else None
            out['test_sampling'] = str(data['test_sampling']) if 'test_sampling' in data.files else None
            out['attributes'] = {k: data[k] for k in ATTRIBUTE_FLAGS if k in data.files}
    except (DataError, *BROKEN_DEPENDENCY):
        raise
    except Exception as err:  # zipfile, pickle and format errors of a damaged file: one line for the user
        raise DataError(f'{flag} {path}: not a readable .npz file ({type(err).__name__}: {err})') from None
    n = len(out['features'])
    if out['features'].ndim != 2 or out['labels'].shape != (n,) or out['cams'].shape != (n,):
        raise DataError(f'{flag} {path}: expected features (N,D) with labels and cams of length N, got '
                        f'{out["features"].shape}, {out["labels"].shape}, {out["cams"].shape}')
    for key in ('query_idx', 'gallery_idx'):
        if out[key] is None:
            continue
        rows = out[key].reshape(-1)
        if rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0 or rows.max() >= n):
            raise DataError(f'{flag} {path}: {key} must be 0-based integer rows below {n}, '
                            f'found {rows.min()}..{rows.max()} ({rows.dtype})')
        out[key] = rows.astype(np.int64)
    for name, values in out['attributes'].items():
        out['attributes'][name] = check_attribute(values, n, f'{flag} {path}: {name}', path)
    check_finite(out['features'], f'{flag} {path}')
    return out


# -- results -------------------------------------------------------------------------------------------------

CMC_RANKS = 50  # length of the curve kept in --results


def result_numbers(result):
    """The numbers of one MarsResult for --results: fractions, as the `CMC : ... , mAP : ...` line."""
    numbers = {f'rank{k}': (result.rank(k) if k <= len(result.cmc) else None) for k in (1, 5, 10, 20)}
    numbers.update(mAP=float(result.mAP), mINP=None if result.mINP is None else float(result.mINP),
                   cmc=[float(v) for v in result.cmc[:CMC_RANKS]],
                   num_scored=int(result.num_scored), num_skipped=int(result.num_skipped))
    return numbers


def write_results(path, result, settings, reranked=None, protocols=None):
    """--results F.json, atomically: the scores, the run's settings, the re-ranked scores when given, and one
    block per attribute protocol (same_clothes, clothes_changing, ...) of ``protocols``."""
    record = dict(result_numbers(result), **settings)
    for key, value in (protocols or {}).items():
        if key != 'overall':
            record[key] = result_numbers(value)
    if reranked is not None:
        record['reranked'] = result_numbers(reranked)
    text = json.dumps(record, indent=2) + '\n'
    atomic_save(text, path, write=lambda obj, f: f.write(obj.encode()))


# -- evaluate.py ---------------------------------------------------------------------------------------------

def check_outputs(args):
    """Refuse an unwritable output path before any feature is extracted."""
    for flag in ('save_features', 'results', 'cmc_plot'):
        if getattr(args, flag, None) is not None:
            check_writable(getattr(args, flag), '--' + flag)
    if getattr(args, 'visualize_ranks', None) is not None:
        check_writable(args.visualize_ranks, '--visualize_ranks', directory=True)


def check_rerank(args, n_gallery, n_query):
    """--rerank_k1 must leave gallery items outside the neighbourhoods, --rerank_k2 fit in the probe+gallery
    set (the other bounds: util.cli.options)."""
    if not args.rerank:
        return
    if args.rerank_k1 >= n_gallery:
        raise ReIDError(f'--rerank_k1 {args.rerank_k1} must be smaller than the gallery size ({n_gallery} '
                        f'tracklets)')
    if args.rerank_k2 > n_gallery + n_query:
        raise ReIDError(f'--rerank_k2 {args.rerank_k2} must be at most the {n_gallery + n_query} probe + gallery '
                        f'tracklets')


def evaluate(args):
    """evaluate.py: score a checkpoint on the test split, or re-score saved features."""
    check_outputs(args)
    if args.features is not None:
        saved = load_features(args.features)
        if args.gallery_info is not None:  # a gallery given on the command line replaces the file's
            saved['gallery_idx'] = read_rows(args.gallery_info, 'gallery', len(saved['labels']), args.features)
        n_gallery = len(saved['labels']) if saved['gallery_idx'] is None else len(saved['gallery_idx'])
        check_rerank(args, n_gallery, len(saved['query_idx']))
        db = None
        if args.visualize_ranks is not None:
            if args.test_txt is None or args.test_info is None:
                raise DataError('--visualize_ranks with --features needs --test_txt and --test_info (the frames)')
            db = read_database(args.test_txt, args.test_info)
            if len(db.info) != len(saved['labels']):
                raise DataError(f'--features {args.features}: {len(saved["labels"])} tracklets, but '
                                f'{args.test_info} has {len(db.info)} rows')
        attributes = feature_attributes(args, saved)
        print(f'Scoring {len(saved["features"])} saved features from {args.features}')
        settings = dict(test_sampling=saved['test_sampling'], features=args.features, checkpoint=None)
        # saved features are scored on the CPU unless --device cuda asks for the GPU
        device = init_distributed('cuda').device if args.device == 'cuda' else None
        report(args, saved['features'], saved['labels'], saved['cams'], saved['query_idx'], saved['gallery_idx'],
               db, settings, source=f'--features {args.features}', device=device, attributes=attributes)
        return 0

    ctx = init_distributed(args.device)
    try:
        return _evaluate_checkpoint(args, ctx)
    finally:
        cleanup(ctx)


def feature_attributes(args, saved):
    """The attributes of a --features file, replaced by those given on the command line; an attribute file needs
    the file's gallery index (the clothes-changing benchmarks never rank the query against itself)."""
    given = read_attributes(args, len(saved['labels']), args.features)
    if given and saved['gallery_idx'] is None:
        flags = ', '.join(f'--{ATTRIBUTE_FLAGS[k]}' for k in given)
        raise DataError(f'--features {args.features}: has no gallery_idx, which {flags} needs (save the features '
                        f'from a database with gallery_IDX.npy, or give --gallery_info)')
    return dict(saved['attributes'], **given)


def _evaluate_checkpoint(args, ctx):
    log = print if ctx.is_main else (lambda *a, **k: None)

    db = read_database(args.test_txt, args.test_info, args.query_info, args.gallery_info)
    check_rerank(args, len(db.info) if db.gallery_idx is None else len(db.gallery_idx), len(db.query_idx))
    attributes = read_attributes(args, len(db.info), args.test_info)
    loader = make_eval_loader(db, args, ctx)
    num_class = checkpoint_num_class(args.load_ckpt)
    # Every weight comes from the checkpoint, so the backbone needs no ImageNet initialisation.
    model = build_model(args.model_type, num_class, non_layers=args.non_layers, stripes=args.stripes,
                        temporal=args.temporal, stride=args.stride, pretrained='none', height=args.height, S=args.S)
    for note in load_checkpoint(model, args.load_ckpt, inputs=vars(args)):  # e.g. another S than in training
        log(note)
    model.to(ctx.device)
    if args.channels_last:
        to_channels_last(model)
    gallery = 'every test tracklet' if db.gallery_idx is None else f'{len(db.gallery_idx)} gallery tracklets'
    log(f'Loaded {args.load_ckpt} ({args.model_type}, {num_class} training identities); '
        f'{len(db.info)} test tracklets, {len(db.query_idx)} queries against {gallery}, S={args.S}, '
        f'{args.test_sampling} sampling, device {ctx.device}')

    start = time.perf_counter()
    feats, labels, cams = extract_features(model, loader, args.S, ctx.device, args.temporal,
                                           frame_level=model.frame_level, amp=args.amp,
                                           channels_last=args.channels_last, progress=ctx.is_main)
    feats, labels, cams = gather_features(feats, labels, cams, ctx)
    if not ctx.is_main:
        return 0
    seconds = time.perf_counter() - start
    clips = len(loader.dataset)  # every rank's loader indexes all clips; each loads its shard
    log(f'Features of {len(feats)} tracklets from {clips} clips of {args.S} frames in {seconds:.1f} s '
        f'({clips / seconds:.1f} clips/s, {clips * args.S / seconds:.0f} frames/s)')
    if args.save_features is not None:
        save_features(args.save_features, feats.numpy(), labels.numpy(), cams.numpy(), db.query_idx, db.gallery_idx,
                      test_sampling=args.test_sampling, **attributes)
        log(f'Saved features to {args.save_features}')
    settings = dict(test_sampling=args.test_sampling, features=None, checkpoint=args.load_ckpt)
    report(args, feats.numpy(), labels.numpy(), cams.numpy(), db.query_idx, db.gallery_idx, db, settings,
           source=f'features of {args.load_ckpt}', device=ctx.device, attributes=attributes)
    return 0


def rerank_score(features, labels, cams, query_idx, gallery_idx, args, device=None):
    """The metric on k-reciprocal re-ranked distances (SPEC 10): probe = the query rows, gallery = the
    evaluation gallery; computed on `device` (the CPU when None)."""
    from util.evaluation.rerank import k_reciprocal_distance
    feats = torch.as_tensor(np.asarray(features, dtype=np.float32), device=device or 'cpu')
    rows = torch.arange(len(feats), device=feats.device) if gallery_idx is None else \
        torch.as_tensor(gallery_idx, device=feats.device)
    dist = k_reciprocal_distance(feats[torch.as_tensor(query_idx, device=feats.device)], feats[rows],
                                 k1=args.rerank_k1, k2=args.rerank_k2, lambda_value=args.rerank_lambda)  # (Q, G)
    # ranked where it was computed (a GPU tensor stays there)
    return evaluate_distances(dist if dist.device.type != 'cpu' else dist.numpy(), np.asarray(labels, dtype=np.int64),
                              np.asarray(cams, dtype=np.int64), query_idx, rank_size=args.rank_size,
                              gallery_idx=gallery_idx, ap_rule=getattr(args, 'ap_rule', 'trapezoid'))


def report(args, features, labels, cams, query_idx, gallery_idx, db, settings, source, device=None, attributes=None):
    """Score, print, and write what was asked: attribute protocols, re-ranked scores, chance level, --results,
    --cmc_plot, ranked pictures."""
    ap_rule = getattr(args, 'ap_rule', 'trapezoid')
    protocols = score_all(features, labels, cams, query_idx, args.rank_size, gallery_idx, source=source,
                          device=device, ap_rule=ap_rule, attributes=attributes)
    result = protocols['overall']
    settings = dict(settings, ap_rule=ap_rule, test_stride=getattr(args, 'test_stride', 4),
                    protocols=[k for k in protocols if k != 'overall'])
    reranked = None
    if args.rerank:
        reranked = rerank_score(features, labels, cams, query_idx, gallery_idx, args, device)
        print(format_result(result))
        print(f'With k-reciprocal re-ranking (k1 {args.rerank_k1}, k2 {args.rerank_k2}, '
              f'lambda {args.rerank_lambda}):')
        print(format_result(reranked))
    else:
        print(format_result(result))
    if len(protocols) > 1:
        print(format_protocols(protocols))
    if args.chance_level:
        expected, rank1, mAP = chance_level(labels, cams, query_idx, args.rank_size, gallery_idx=gallery_idx)
        print(f'Chance level: rank-1 {expected:.4f} (expected for a random ranking); random features rank-1 '
              f'{rank1:.4f}, mAP {mAP:.4f} (mean of 100 draws)')
    if args.results is not None:
        n_gallery = len(labels) if gallery_idx is None else len(gallery_idx)
        settings = dict(settings, num_queries=int(len(query_idx)), num_tracklets=int(len(labels)),
                        num_gallery=int(n_gallery),
                        gallery='all test tracklets' if gallery_idx is None else 'gallery_idx',
                        gallery_info=getattr(args, 'gallery_info', None), rank_size=args.rank_size,
                        rerank=dict(k1=args.rerank_k1, k2=args.rerank_k2, lambda_value=args.rerank_lambda)
                        if args.rerank else None)
        write_results(args.results, result, settings, reranked, protocols)
        print(f'Results written to {args.results}')
    if args.cmc_plot is not None:
        from util.pictures.curves import plot_cmc  # matplotlib is only needed here
        curves = {'cosine distance': result}
        if reranked is not None:
            curves['k-reciprocal re-ranking'] = reranked
        plot_cmc(args.cmc_plot, curves)
        print(f'CMC curve written to {args.cmc_plot}')
    if args.visualize_ranks is not None:
        visualize_ranks(args, features, labels, cams, query_idx, db, gallery_idx)


def visualize_ranks(args, features, labels, cams, query_idx, db, gallery_idx=None):
    from util.pictures.ranks import save_ranked_results  # matplotlib is only needed here
    drawn = save_ranked_results(args.visualize_ranks, features, labels, cams, query_idx, db.paths, db.info, args.S,
                                num_queries=args.num_queries, topk=args.topk, gallery_idx=gallery_idx)
    print(f'Ranked results of {len(drawn)} queries in {args.visualize_ranks} (index.html)')
