"""Test-set feature extraction.

Features follow the original protocol by default: every test tracklet (junk and distractors included) gives one clip
of S frames, the first frame of each chunk; resnet50_s1 scores frames independently and its S BN-neck features are
pooled with --temporal, the non-local types return one feature per clip. --test_sampling picks the other test
protocols of the authors' follow-up code (CF-AAN; docs/evaluation.md); the 'all_*' modes average a tracklet's clip
features."""
import contextlib

import numpy as np
import torch
from tqdm import tqdm

from models import unwrap_model
from models.pooling import temporal_pool
from models.preprocess import normalize_clip
from util.data.frames import DeviceBatch
from util.data.loaders import make_test_loader
from util.distributed import gather_tensors

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
    any tracklets): the mean of its clips' eval features (docs/evaluation.md), summed as the batches come.
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


def make_eval_loader(db, clips, batch_size, num_workers, ctx=None):
    """The test loader of a ClipConfig; under torchrun each process reads a contiguous shard of the tracklets."""
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    pin = ctx is not None and ctx.device.type == 'cuda'
    return make_test_loader(db, clips.S, batch_size, num_workers, height=clips.height, width=clips.width,
                            rank=rank, world_size=world, pin_memory=pin, decoder=clips.decoder,
                            sampling=clips.test_sampling, stride=clips.test_stride)


def gather_features(feats, labels, cams, ctx):
    """Concatenate the shards of every rank in rank order (a no-op for one process)."""
    if ctx is None or ctx.world_size == 1:
        return feats, labels, cams
    # gloo gathers CPU tensors, NCCL device tensors
    return tuple(gather_tensors(t.to(ctx.device)).cpu() for t in (feats, labels, cams))
