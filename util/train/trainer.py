"""The training loop shared by train_baseline.py and train_NL.py, built from ready parts.

One epoch = one pass of the identity-balanced sampler (every training identity once, P identities x K
tracklets per batch). Per batch: triplet loss on the clip features (resnet50_s1: the S frame features pooled
with --temporal), plus the optional ID losses. After every `eval_every` epochs and after the last one the
validator scores the model on the test split; the output objects (util/train/outputs.py) write the log,
metrics.csv, the checkpoints and the curves. util.cli.train.build_trainer turns the command line into the
parts; from Python a Trainer can be built from any model, optimiser and loader.

Under torchrun every process takes P / world_size identities of the same global batch. BatchNorm is
synchronised, and the triplet loss is mined over the global batch gathered with gradients, so the
gradients equal those of one process holding the whole batch (see `compute_losses`).
"""
import math
import random
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from models.pooling import temporal_pool
from util.distributed import all_gather_with_grad, barrier, gather_tensors
from util.errors import ReIDError
from util.evaluation.extract import autocast, prepare_clips
from util.train.losses import batch_hard_triplet_soft
from util.train.run import set_rng_state

LOSS_NAMES = ('trip_loss', 'frame_id_loss', 'track_id_loss')


class NonFiniteLossError(ReIDError):
    """A loss became NaN or infinite; training stops without touching the saved checkpoints."""


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


# -- optimiser -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OptimConfig:
    """name 'adam' or 'sgd' (momentum 0.9); lr_step_size: epochs between decays by 0.1, 0 for none."""
    name: str = 'adam'
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_step_size: int = 100


def build_optimizer(params, config):
    if config.name == 'sgd':
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer, config):
    """StepLR(step, 0.1) stepped once per epoch; lr_step_size 0 keeps the rate constant (None)."""
    if config.lr_step_size == 0:
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step_size, 0.1)


# -- losses --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LossConfig:
    """The loss terms of a batch: the triplet loss always, the ID losses when asked. S frames per clip and
    the frame pooling `temporal` ('mean', 'max'; 'Done' for models that pool inside)."""
    S: int
    temporal: str = 'mean'
    frame_id_loss: bool = False
    track_id_loss: bool = False


def compute_losses(feats, logits, labels, config, frame_level, distributed=False):
    """The loss terms of one batch: dict name -> scalar tensor (fp32 under amp: the caller casts the outputs).

    feats (N,2048), logits (N,C): per frame (N = B*S) for resnet50_s1, per clip (N = B) otherwise.

    Under torchrun, `feats` and `labels` are this rank's share of the global batch. The triplet loss is
    mined over the global batch, gathered with gradients (the same value on every rank); the ID losses are
    this rank's mean. Neither needs rescaling: the gather's backward sums the gradients of all ranks and
    DDP averages over ranks, which together give exactly the one-process gradient of the global-batch
    losses (shares are equal; see util/distributed.py).
    """
    S = config.S
    if frame_level:
        clip_feats = temporal_pool(feats, S, config.temporal)    # (B*S,D) -> (B,D)
        clip_logits = temporal_pool(logits, S, config.temporal)  # (B*S,C) -> (B,C)
    else:
        clip_feats, clip_logits = feats, logits

    if distributed:
        trip_feats, trip_labels = all_gather_with_grad(clip_feats), gather_tensors(labels)  # global batch
    else:
        trip_feats, trip_labels = clip_feats, labels
    losses = {'trip_loss': batch_hard_triplet_soft(trip_feats, trip_labels)}
    if config.frame_id_loss:
        losses['frame_id_loss'] = F.cross_entropy(logits, labels.repeat_interleave(S))  # every frame's logits
    if config.track_id_loss:
        losses['track_id_loss'] = F.cross_entropy(clip_logits, labels)
    return losses


# -- one training step ---------------------------------------------------------------------------------------

def train_step(model, optimizer, scaler, clips, labels, losses, frame_level, amp='none', channels_last=False,
               world_size=1, on_non_finite=None):
    """One optimisation step on one batch, as train_baseline.py and train_NL.py take it (benchmarks time this).

    clips: uint8 (B,S,3,H,W) or a DeviceBatch; labels (B,); losses: a LossConfig; frame_level: the model sees
    frames (B*S,3,H,W) rather than clips. The network runs under `amp` ('none', 'bf16', 'fp16'), the losses
    in fp32. Returns the loss values as Python floats; under torchrun (world_size > 1) averaged over ranks,
    so that every rank sees the same values and all stop together on a NaN. A non-finite loss raises
    NonFiniteLossError before the weights change, with the message on_non_finite(values) when given.
    """
    param = next(model.parameters())  # the input goes to the device and dtype of the weights
    x = prepare_clips(clips, frame_level, param.device, channels_last, param.dtype)
    labels = labels.to(param.device, non_blocking=True)
    with autocast(param.device, amp):
        feats, logits = model(x)
    if amp != 'none':  # losses in fp32
        feats, logits = feats.float(), logits.float()
    terms = compute_losses(feats, logits, labels, losses, frame_level, world_size > 1)
    stacked = torch.stack([v.detach() for v in terms.values()])
    if world_size > 1:
        dist.all_reduce(stacked)
        stacked /= world_size
    values = dict(zip(terms, stacked.tolist()))
    if not all(math.isfinite(v) for v in values.values()):
        text = ', '.join(f'{k}={v}' for k, v in values.items())
        raise NonFiniteLossError(on_non_finite(values) if on_non_finite else f'non-finite loss ({text})')

    optimizer.zero_grad(set_to_none=True)
    scaler.scale(sum(terms.values())).backward()
    scaler.step(optimizer)
    scaler.update()
    return values


# -- the loop ------------------------------------------------------------------------------------------------

def _no_pending():
    return {name: [] for name in LOSS_NAMES}


@dataclass(frozen=True)
class StartState:
    """Where a run starts: epochs already done, the best rank-1 so far, the per-epoch loss strings not yet
    written to the log, and the random generators' state to continue from (None: as seeded)."""
    epoch: int = 0
    best_rank1: float = 0.0
    pending: dict = field(default_factory=_no_pending)
    rng: dict = None


class Trainer:
    """Runs the epochs of a training run from built parts.

    model: the network as trained (DDP-wrapped, compiled); net: the plain network it wraps (validated and
    saved; its `frame_level` says whether it sees frames or clips); scheduler: stepped once per epoch, or
    None; train_loader: yields (uint8 clips (B,S,3,H,W), labels (B,)) and has set_epoch(epoch);
    validator(net) -> MarsResult on the main process, None elsewhere; outputs: objects with
    on_validation / on_epoch / on_end (util/train/outputs.py; an empty list on the other processes);
    run_dir: the RunDir (util/train/rundir.py) whose files the messages name and which `close` releases;
    losses: a LossConfig; n_epochs: the epoch to stop after; eval_every: validate after every N epochs and
    after the last (0: after the last only); amp, channels_last: as train_step; start: a StartState (a new
    run by default); validate_first: score the net once before the first epoch.
    """

    def __init__(self, model, net, optimizer, scheduler, scaler, train_loader, validator, outputs, run_dir, ctx,
                 *, n_epochs, eval_every, losses, amp='none', channels_last=False, start=None,
                 validate_first=False):
        self.model, self.net = model, net
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.train_loader, self.validator, self.outputs, self.ctx = train_loader, validator, list(outputs), ctx
        self.n_epochs, self.eval_every, self.losses = n_epochs, eval_every, losses
        self.amp, self.channels_last = amp, channels_last
        self.frame_level = net.frame_level
        start = start or StartState()
        self.start_epoch, self.best_rank1, self.rng_state = start.epoch, start.best_rank1, start.rng
        self.pending = {name: list(start.pending.get(name, [])) for name in LOSS_NAMES}
        self.validate_first = validate_first
        self.run_dir = run_dir
        self.log = print if ctx.is_main else (lambda *a, **k: None)

    def close(self):
        """Release the run directory."""
        self.run_dir.release()

    def _notify(self, event, **kwargs):
        for output in self.outputs:
            getattr(output, event)(**kwargs)

    # -- one epoch ----------------------------------------------------------------------------------------

    def train_epoch(self, epoch):
        """Train one epoch (0-based index); returns the epoch-mean of each active loss term."""
        self.model.train()
        self.train_loader.set_epoch(epoch)
        sums, n = {}, 0
        bar = tqdm(self.train_loader, desc=f'Epoch {epoch + 1}/{self.n_epochs}', ncols=100, leave=True,
                   disable=not self.ctx.is_main)
        try:
            for it, (clips, labels) in enumerate(bar):
                values = train_step(self.model, self.optimizer, self.scaler, clips, labels, self.losses,
                                    self.frame_level, self.amp, self.channels_last, self.ctx.world_size,
                                    on_non_finite=lambda values, it=it: self._non_finite_message(epoch, it, values))
                n += 1
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k.replace('_loss', ''): f'{s / n:.4f}' for k, s in sums.items()}, refresh=False)
        finally:
            bar.close()  # leaves the bar on its own line before any error message
        return {k: s / max(n, 1) for k, s in sums.items()}

    def _non_finite_message(self, epoch, it, values):
        terms = ', '.join(f'{k}={v}' for k, v in values.items())
        kept = (f'{self.run_dir.last_file} (after epoch {epoch}) is kept' if epoch > 0
                else 'no checkpoint had been written yet')
        return (f'non-finite loss at epoch {epoch + 1}, iteration {it + 1} ({terms}); training stopped, '
                f'{kept}; try a lower --lr or --amp none')

    # -- validation ---------------------------------------------------------------------------------------

    def validate(self, epochs_done):
        """Score the net; on the main process print the result, keep the best rank-1 (>=, as the original)
        and hand the result with the pending loss strings to the outputs. Returns the MarsResult (None on
        the other processes)."""
        result = self.validator(self.net)
        if result is None:
            return None
        rank1, mAP = float(result.rank(1)), float(result.mAP)
        self.log(f'CMC: {rank1:.4f}, mAP : {mAP:.4f}' +
                 (f'  ({result.num_skipped} queries without a valid match skipped)' if result.num_skipped else ''))
        best = rank1 >= self.best_rank1
        if best:
            self.best_rank1 = rank1
        pending, self.pending = self.pending, _no_pending()
        self._notify('on_validation', epoch=epochs_done, result=result, pending=pending, best=best)
        return result

    # -- the run ------------------------------------------------------------------------------------------

    def fit(self):
        """Run the remaining epochs; returns the best rank-1."""
        if self.validate_first:
            self.validate(self.start_epoch)
        if self.rng_state is not None:
            set_rng_state(self.rng_state)  # after building and validating, so the continuation draws as before

        for epoch in range(self.start_epoch, self.n_epochs):
            start = time.time()
            lr = self.optimizer.param_groups[0]['lr']
            means = self.train_epoch(epoch)
            if self.scheduler is not None:
                with warnings.catch_warnings():
                    # with fp16 the gradient scaler may skip every step of a short epoch; the epoch still counts
                    warnings.filterwarnings('ignore', message='Detected call of `lr_scheduler.step()`')
                    self.scheduler.step()
            done = epoch + 1
            self.log('Trip : %.4f , ID : %s , Track_ID : %s' % (
                means['trip_loss'], _fmt(means.get('frame_id_loss')), _fmt(means.get('track_id_loss'))))
            for name in LOSS_NAMES:
                self.pending[name].append('%.4f' % means.get(name, 0.0))

            result = None
            if (self.eval_every and done % self.eval_every == 0) or done == self.n_epochs:
                result = self.validate(done)
            self._notify('on_epoch', epoch=done, means=means, lr=lr, result=result,
                         seconds=time.time() - start, best_rank1=self.best_rank1, pending=self.pending)
            barrier(self.ctx)
        self.log(f'Done: best rank-1 {self.best_rank1:.4f}; weights in {self.run_dir.best_file}')
        self._notify('on_end')
        return self.best_rank1


def _fmt(value):
    return '-' if value is None else format(value, '.4f')
