"""Test-set feature extraction, the saved-features file, and evaluate.py's command.

Features follow the original protocol: every test tracklet (junk and distractors included) gives one clip of S
frames, the first frame of each chunk; resnet50_s1 scores frames independently and its S BN-neck features are
pooled with --temporal, the non-local types return one feature per clip.
"""
import contextlib
import os

import numpy as np
import torch
from tqdm import tqdm

from models import build_model, checkpoint_num_class, load_checkpoint, to_channels_last
from util.data import DeviceBatch, make_test_loader, normalize_clip, read_database
from util.distributed import cleanup, gather_tensors, init_distributed, unwrap_model
from util.checkpoint import atomic_save
from util.errors import DataError
from util.losses import temporal_pool
from util.metrics import evaluate_mars, format_result

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


@torch.no_grad()
def extract_features(model, loader, S, device, temporal, frame_level=None, amp='none', channels_last=False,
                     progress=True):
    """Features, pids and cameras of every clip the test loader yields, in loader order.

    Returns (features (N,D) float32 tensor on the CPU, labels (N,) int64, cams (N,) int64).
    """
    net = unwrap_model(model)
    if frame_level is None:
        frame_level = net.frame_level
    dtype = next(net.parameters()).dtype
    was_training = net.training
    net.eval()
    feats, labels, cams = [], [], []
    try:
        for clips, pid, cam in tqdm(loader, desc='Inference', ncols=100, leave=False, disable=not progress):
            x = prepare_clips(clips, frame_level, device, channels_last, dtype)
            feats.append(clip_features(net, x, S, temporal, frame_level, amp, device).cpu())
            labels.append(torch.as_tensor(pid, dtype=torch.int64))
            cams.append(torch.as_tensor(cam, dtype=torch.int64))
    finally:
        net.train(was_training)
    if not feats:  # an empty shard (more processes than tracklets): the right width for the all-gather
        empty = torch.zeros(0, dtype=torch.int64)
        return torch.zeros(0, net.bottleneck.num_features, dtype=torch.float32), empty, empty.clone()
    return torch.cat(feats).float(), torch.cat(labels), torch.cat(cams)


def make_eval_loader(db, args, ctx=None):
    """The test loader; under torchrun each process reads a contiguous shard of the test tracklets."""
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    pin = ctx is not None and ctx.device.type == 'cuda'
    return make_test_loader(db, args.S, args.batch_size, args.num_workers, height=args.height, width=args.width,
                            rank=rank, world_size=world, pin_memory=pin, decoder=decoder_choice(args))


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


def score(features, labels, cams, query_idx, rank_size):
    """evaluate_mars on numpy / torch inputs; rank_size 0 ranks the whole gallery."""
    features = np.asarray(features, dtype=np.float32)
    size = rank_size if rank_size > 0 else len(features)
    return evaluate_mars(features, np.asarray(labels, dtype=np.int64), np.asarray(cams, dtype=np.int64),
                         np.asarray(query_idx, dtype=np.int64).reshape(-1), rank_size=size)


def chance_level(labels, cams, query_idx, rank_size=10000, draws=100, seed=0):
    """What random ranking scores on this test split: (expected rank-1, mean rank-1 and mAP of `draws` sets of
    random Gaussian features through evaluate_mars).

    Expected rank-1: for each query with a valid match, the chance that the first non-junk gallery item is a
    good one, i.e. #good / #non-junk (junk: pid -1, or the query's pid seen by the query's camera).
    """
    labels, cams = np.asarray(labels), np.asarray(cams)
    q = np.asarray(query_idx).reshape(-1)
    same_id = labels[q][:, None] == labels[None, :]               # (Q, N)
    same_cam = cams[q][:, None] == cams[None, :]
    good = same_id & ~same_cam
    non_junk = ~((labels[None, :] == -1) | (same_id & same_cam))
    n_good, n_valid = good.sum(1), non_junk.sum(1)
    scored = n_good > 0
    expected = float(np.mean(n_good[scored] / n_valid[scored])) if scored.any() else float('nan')
    rng = np.random.default_rng(seed)
    results = [score(rng.standard_normal((len(labels), 64)).astype(np.float32), labels, cams, q, rank_size)
               for _ in range(draws)]
    return expected, float(np.mean([r.rank(1) for r in results])), float(np.mean([r.mAP for r in results]))


# -- saved features ------------------------------------------------------------------------------------------

def save_features(path, features, labels, cams, query_idx, **extra):
    """Write the .npz of --save_features atomically (features float32 (N,D); labels, cams (N,), query_idx (Q,)
    int64, 0-based; ``extra`` arrays, e.g. extract_features.py's tracklet paths, are stored as given)."""
    arrays = dict(features=np.asarray(features, dtype=np.float32), labels=np.asarray(labels, dtype=np.int64),
                  cams=np.asarray(cams, dtype=np.int64), query_idx=np.asarray(query_idx, dtype=np.int64).reshape(-1),
                  **{k: np.asarray(v) for k, v in extra.items()})
    atomic_save(arrays, path, write=lambda obj, f: np.savez(f, **obj))


def load_features(path):
    """Read and check a --save_features file: dict of the four arrays."""
    if not os.path.isfile(path):
        raise DataError(f'--features {path}: no such file')
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in FEATURE_KEYS if k not in data.files]
            if missing:
                raise DataError(f'--features {path}: missing array(s) {", ".join(missing)} '
                                f'(expected {", ".join(FEATURE_KEYS)})')
            out = {k: data[k] for k in FEATURE_KEYS}
    except DataError:
        raise
    except Exception as err:
        raise DataError(f'--features {path}: not a readable .npz file ({type(err).__name__}: {err})') from None
    n = len(out['features'])
    if out['features'].ndim != 2 or out['labels'].shape != (n,) or out['cams'].shape != (n,):
        raise DataError(f'--features {path}: expected features (N,D) with labels and cams of length N, got '
                        f'{out["features"].shape}, {out["labels"].shape}, {out["cams"].shape}')
    q = out['query_idx'].reshape(-1)
    if q.size and (q.min() < 0 or q.max() >= n):
        raise DataError(f'--features {path}: query_idx must be 0-based rows below {n}, '
                        f'found {int(q.min())}..{int(q.max())}')
    out['query_idx'] = q
    return out


# -- evaluate.py ---------------------------------------------------------------------------------------------

def evaluate(args):
    """evaluate.py: score a checkpoint on the test split, or re-score saved features."""
    if args.features is not None:
        saved = load_features(args.features)
        print(f'Scoring {len(saved["features"])} saved features from {args.features}')
        result = score(saved['features'], saved['labels'], saved['cams'], saved['query_idx'], args.rank_size)
        print(format_result(result))
        if args.visualize_ranks is not None:
            if args.test_txt is None or args.test_info is None:
                raise DataError('--visualize_ranks with --features needs --test_txt and --test_info (the frames)')
            db = read_database(args.test_txt, args.test_info)
            if len(db.info) != len(saved['labels']):
                raise DataError(f'--features {args.features}: {len(saved["labels"])} tracklets, but '
                                f'{args.test_info} has {len(db.info)} rows')
            visualize_ranks(args, saved['features'], saved['labels'], saved['cams'], saved['query_idx'], db)
        return 0

    ctx = init_distributed(args.device)
    try:
        return _evaluate_checkpoint(args, ctx)
    finally:
        cleanup(ctx)


def _evaluate_checkpoint(args, ctx):
    log = print if ctx.is_main else (lambda *a, **k: None)

    db = read_database(args.test_txt, args.test_info, args.query_info)
    loader = make_eval_loader(db, args, ctx)
    num_class = checkpoint_num_class(args.load_ckpt)
    # Every weight comes from the checkpoint, so the backbone needs no ImageNet initialisation.
    model = build_model(args.model_type, num_class, non_layers=args.non_layers, stripes=args.stripes,
                        temporal=args.temporal, stride=args.stride, pretrained='none', height=args.height, S=args.S)
    load_checkpoint(model, args.load_ckpt)
    model.to(ctx.device)
    if args.channels_last:
        to_channels_last(model)
    log(f'Loaded {args.load_ckpt} ({args.model_type}, {num_class} training identities); '
        f'{len(db.info)} test tracklets, {len(db.query_idx)} queries, S={args.S}, device {ctx.device}')

    feats, labels, cams = extract_features(model, loader, args.S, ctx.device, args.temporal,
                                           frame_level=model.frame_level, amp=args.amp,
                                           channels_last=args.channels_last, progress=ctx.is_main)
    feats, labels, cams = gather_features(feats, labels, cams, ctx)
    if not ctx.is_main:
        return 0
    if args.save_features is not None:
        save_features(args.save_features, feats.numpy(), labels.numpy(), cams.numpy(), db.query_idx)
        log(f'Saved features to {args.save_features}')
    result = score(feats.numpy(), labels.numpy(), cams.numpy(), db.query_idx, args.rank_size)
    print(format_result(result))
    if args.visualize_ranks is not None:
        visualize_ranks(args, feats.numpy(), labels.numpy(), cams.numpy(), db.query_idx, db)
    return 0


def visualize_ranks(args, features, labels, cams, query_idx, db):
    from util.visualize import save_ranked_results  # matplotlib is only needed here
    drawn = save_ranked_results(args.visualize_ranks, features, labels, cams, query_idx, db.paths, db.info, args.S,
                                num_queries=args.num_queries, topk=args.topk)
    print(f'Ranked results of {len(drawn)} queries in {args.visualize_ranks} (index.html)')
