"""The training loop shared by train_baseline.py and train_NL.py.

One epoch = one pass of the identity-balanced sampler (every training identity once, P identities x K
tracklets per batch). Per batch: triplet loss on the clip features (resnet50_s1: the S frame features pooled
with --temporal), plus the optional ID losses. After every --eval_every epochs and after the last one the
model is scored on the test split; the best rank-1 weights go to ckpt_best.pth (original key names), and the
full state goes to last.pth after every epoch so that --resume continues exactly.

Under torchrun every process takes P / world_size identities of the same global batch. BatchNorm is
synchronised, and the triplet loss is mined over the global batch gathered with gradients, so the
gradients equal those of one process holding the whole batch (see `compute_losses`).
"""
import csv
import math
import os
import random
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from models import build_model, load_checkpoint, original_state_dict, to_channels_last
from util.checkpoint import (atomic_save, changed_args, load_resume_state, resolve_resume_path,
                             save_resume_state, set_rng_state)
from util.data import make_train_loader, read_database
from util.distributed import (all_gather_with_grad, barrier, cleanup, gather_tensors, init_distributed,
                              unwrap_model, wrap_model)
from util.errors import ReIDError
from util.evaluation import (autocast, decoder_choice, extract_features, gather_features, make_eval_loader,
                             prepare_clips, score)
from util.losses import batch_hard_triplet_soft, temporal_pool

# Adam weight decay of the two original scripts; SGD uses 1e-4 in both.
ADAM_WEIGHT_DECAY = {'baseline': 1e-5, 'NL': 5e-5}
METRICS_COLUMNS = ('epoch', 'trip_loss', 'frame_id_loss', 'track_id_loss', 'total_loss', 'lr',
                   'rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'seconds')
LOSS_NAMES = ('trip_loss', 'frame_id_loss', 'track_id_loss')


class NonFiniteLossError(ReIDError):
    """A loss became NaN or infinite; training stops without touching the saved checkpoints."""


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def build_optimizer(params, args):
    if args.optimizer == 'sgd':
        return torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    return torch.optim.Adam(params, lr=args.lr, weight_decay=ADAM_WEIGHT_DECAY[args.script])


def build_scheduler(optimizer, args):
    """StepLR(step, 0.1) stepped once per epoch; --lr_step_size 0 keeps the rate constant."""
    if args.lr_step_size == 0:
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, args.lr_step_size, 0.1)


# -- losses --------------------------------------------------------------------------------------------------

def compute_losses(feats, logits, labels, args, frame_level, distributed=False):
    """The loss terms of one batch: dict name -> scalar tensor (fp32 under --amp: the caller casts the outputs).

    feats (N,2048), logits (N,C): per frame (N = B*S) for resnet50_s1, per clip (N = B) otherwise.

    Under torchrun, `feats` and `labels` are this rank's share of the global batch. The triplet loss is
    mined over the global batch, gathered with gradients (the same value on every rank); the ID losses are
    this rank's mean. Neither needs rescaling: the gather's backward sums the gradients of all ranks and
    DDP averages over ranks, which together give exactly the one-process gradient of the global-batch
    losses (shares are equal; see util/distributed.py).
    """
    S = args.S
    if frame_level:
        clip_feats = temporal_pool(feats, S, args.temporal)    # (B*S,D) -> (B,D)
        clip_logits = temporal_pool(logits, S, args.temporal)  # (B*S,C) -> (B,C)
    else:
        clip_feats, clip_logits = feats, logits

    if distributed:
        trip_feats, trip_labels = all_gather_with_grad(clip_feats), gather_tensors(labels)  # global batch
    else:
        trip_feats, trip_labels = clip_feats, labels
    losses = {'trip_loss': batch_hard_triplet_soft(trip_feats, trip_labels)}
    if args.frame_id_loss:
        losses['frame_id_loss'] = F.cross_entropy(logits, labels.repeat_interleave(S))  # every frame's logits
    if args.track_id_loss:
        losses['track_id_loss'] = F.cross_entropy(clip_logits, labels)
    return losses


# -- metrics.csv and the log file ---------------------------------------------------------------------------

def _fmt(value, spec='.6f'):
    return '' if value is None else format(value, spec)


def write_metrics_row(path, row):
    new = not os.path.exists(path)
    with open(path, 'a', newline='') as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(METRICS_COLUMNS)
        writer.writerow([row.get(c, '') for c in METRICS_COLUMNS])


def reset_metrics(path, keep_epochs):
    """Start metrics.csv afresh, keeping the rows of the first `keep_epochs` epochs (on --resume, rows of
    epochs after the resumed state were written by the interrupted run and will be written again)."""
    rows = []
    if keep_epochs > 0 and os.path.exists(path):
        with open(path, newline='') as f:
            rows = [r for r in csv.DictReader(f) if r.get('epoch', '').isdigit() and int(r['epoch']) <= keep_epochs]
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(METRICS_COLUMNS)
        for r in rows:
            writer.writerow([r.get(c, '') for c in METRICS_COLUMNS])


def append_log(path, lines):
    with open(path, 'a') as f:
        f.write(''.join(line + '\n' for line in lines))


# -- the loop ------------------------------------------------------------------------------------------------

class Trainer:
    """Holds the run's state; `fit` runs the epochs. Built from the parsed arguments of a train script."""

    def __init__(self, args, ctx):
        self.args, self.ctx, self.device = args, ctx, ctx.device
        self.log = print if ctx.is_main else (lambda *a, **k: None)
        seed_everything(args.seed)
        if self.device.type == 'cuda':
            torch.backends.cudnn.benchmark = True

        # data: every rank reads the same identity-balanced global batches and keeps its share
        train_db = read_database(args.train_txt, args.train_info)
        self.test_db = read_database(args.test_txt, args.test_info, args.query_info, args.gallery_info)
        self.train_loader = make_train_loader(train_db, args.S, args.class_per_batch, args.track_per_class,
                                              args.seed, args.num_workers, height=args.height, width=args.width,
                                              rank=ctx.rank, world_size=ctx.world_size,
                                              pin_memory=self.device.type == 'cuda', decoder=decoder_choice(args))
        self.test_loader = make_eval_loader(self.test_db, args, ctx)
        n_id = self.train_loader.dataset.n_id

        # model: build, load, move, wrap (SyncBatchNorm + DDP), compile; the optimiser sees the final modules
        self.resume_path = resolve_resume_path(args.resume) if args.resume else None
        model = build_model(args.model_type, n_id, non_layers=args.non_layers, stripes=args.stripes,
                            temporal=args.temporal, stride=args.stride,
                            pretrained='none' if self.resume_path else args.pretrained,
                            height=args.height, S=args.S)
        self.frame_level = model.frame_level
        self.dtype = next(model.parameters()).dtype  # of the input too (float32 unless built in float64)
        if self.resume_path:
            load_checkpoint(model, self.resume_path)
        elif args.load_ckpt is not None:
            load_checkpoint(model, args.load_ckpt)
            self.log(f'Loaded weights from {args.load_ckpt}')
        model.to(self.device)
        if args.channels_last:
            to_channels_last(model)
        # without an ID loss the BN-neck and classifier get no gradient, which DDP must be told about
        model = wrap_model(model, ctx, find_unused_parameters=not (args.track_id_loss or args.frame_id_loss))
        self.net = unwrap_model(model)  # the plain network (BatchNorms synchronised) for evaluation and saving
        self.model = torch.compile(model) if args.compile else model
        self.optimizer = build_optimizer(self.net.parameters(), args)
        self.scheduler = build_scheduler(self.optimizer, args)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=args.amp == 'fp16')

        self.start_epoch, self.best_rank1, self.rng_state = 0, 0.0, None
        self.pending = {name: [] for name in LOSS_NAMES}  # per-epoch loss strings for the next log entry
        self.log_file = os.path.join(args.ckpt, args.log_path)
        self.metrics_file = os.path.join(args.ckpt, 'metrics.csv')
        self.last_file = os.path.join(args.ckpt, 'last.pth')
        self.best_file = os.path.join(args.ckpt, 'ckpt_best.pth')
        if self.resume_path:
            self._restore(load_resume_state(self.resume_path))
        if ctx.is_main:
            os.makedirs(args.ckpt, exist_ok=True)
            reset_metrics(self.metrics_file, self.start_epoch)
            open(self.log_file, 'a').close()
        self.log(f'{args.model_type}: {n_id} training identities, {len(train_db.info)} training tracklets, '
                 f'{len(self.train_loader)} iterations per epoch (P={args.class_per_batch}, '
                 f'K={args.track_per_class}, S={args.S}); {len(self.test_db.info)} test tracklets; '
                 f'device {self.device}' + (f' x {ctx.world_size} processes' if ctx.world_size > 1 else ''))

    def _restore(self, state):
        args = self.args
        diff = changed_args(state.get('args', {}), args)
        if diff:
            self.log('warning: --resume with arguments that differ from the interrupted run: ' +
                     ', '.join(f'{k} {old!r} -> {new!r}' for k, (old, new) in diff.items()))
        self.optimizer.load_state_dict(state['optimizer'])
        if self.scheduler is not None and state.get('scheduler') is not None:
            self.scheduler.load_state_dict(state['scheduler'])
        if state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        self.start_epoch = int(state['epoch'])
        self.best_rank1 = float(state['best_rank1'])
        self.pending = {name: list(state['pending'].get(name, [])) for name in LOSS_NAMES}
        self.rng_state = state['rng']
        self.log(f'Resumed from {self.resume_path}: {self.start_epoch} epochs done, best rank-1 {self.best_rank1:.4f}')

    # -- one epoch ----------------------------------------------------------------------------------------

    def train_epoch(self, epoch):
        """Train one epoch (0-based index); returns the epoch-mean of each active loss term."""
        args = self.args
        self.model.train()
        self.train_loader.set_epoch(epoch)
        sums, n = {}, 0
        bar = tqdm(self.train_loader, desc=f'Epoch {epoch + 1}/{args.n_epochs}', ncols=100, leave=True,
                   disable=not self.ctx.is_main)
        try:
            for it, (clips, labels) in enumerate(bar):
                x = prepare_clips(clips, self.frame_level, self.device, args.channels_last, self.dtype)
                labels = labels.to(self.device, non_blocking=True)
                with autocast(self.device, args.amp):
                    feats, logits = self.model(x)
                if args.amp != 'none':  # losses in fp32
                    feats, logits = feats.float(), logits.float()
                losses = compute_losses(feats, logits, labels, args, self.frame_level, self.ctx.world_size > 1)
                total = sum(losses.values())
                values = self._loss_values(losses)
                if not all(math.isfinite(v) for v in values.values()):
                    raise NonFiniteLossError(self._non_finite_message(epoch, it, values))

                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(total).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()

                n += 1
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k.replace('_loss', ''): f'{s / n:.4f}' for k, s in sums.items()}, refresh=False)
        finally:
            bar.close()  # leaves the bar on its own line before any error message
        return {k: s / max(n, 1) for k, s in sums.items()}

    def _loss_values(self, losses):
        """Python floats of the loss terms; with several processes, averaged over ranks (the global mean)."""
        stacked = torch.stack([v.detach() for v in losses.values()])
        if self.ctx.world_size > 1:
            dist.all_reduce(stacked)  # every rank sees the same values, so all stop together on a NaN
            stacked /= self.ctx.world_size
        return dict(zip(losses, stacked.tolist()))

    def _non_finite_message(self, epoch, it, values):
        terms = ', '.join(f'{k}={v}' for k, v in values.items())
        kept = (f'{self.last_file} (after epoch {epoch}) is kept' if epoch > 0
                else 'no checkpoint had been written yet')
        return (f'non-finite loss at epoch {epoch + 1}, iteration {it + 1} ({terms}); training stopped, '
                f'{kept}; try a lower --lr or --amp none')

    # -- validation ---------------------------------------------------------------------------------------

    def validate(self):
        """MarsResult on the test split (rank 0; None on other ranks)."""
        args = self.args
        feats, labels, cams = extract_features(self.net, self.test_loader, args.S, self.device, args.temporal,
                                               frame_level=self.frame_level, amp=args.amp,
                                               channels_last=args.channels_last, progress=self.ctx.is_main)
        feats, labels, cams = gather_features(feats, labels, cams, self.ctx)
        if not self.ctx.is_main:
            return None
        return score(feats.numpy(), labels.numpy(), cams.numpy(), self.test_db.query_idx, args.rank_size,
                     self.test_db.gallery_idx, source=f'validation features ({args.test_sampling} sampling)',
                     device=self.device)

    def record_validation(self, epoch_count, result):
        """Print, log (the original's lines) and keep the best weights (rank-1 >=, as the original)."""
        args = self.args
        rank1, mAP = float(result.rank(1)), float(result.mAP)
        self.log(f'CMC: {rank1:.4f}, mAP : {mAP:.4f}' +
                 (f'  ({result.num_skipped} queries without a valid match skipped)' if result.num_skipped else ''))
        lines = [f'epoch {epoch_count}, rank-1 {rank1:f} , mAP {mAP:f}']
        if args.frame_id_loss:
            lines.append(f"Frame ID loss : {self.pending['frame_id_loss']!r}")
        if args.track_id_loss:
            lines.append(f"Track ID loss : {self.pending['track_id_loss']!r}")
        lines.append(f"Trip Loss : {self.pending['trip_loss']!r}")
        self.pending = {name: [] for name in LOSS_NAMES}
        if rank1 >= self.best_rank1:
            atomic_save(original_state_dict(self.net), self.best_file)
            self.best_rank1 = rank1
            lines.append('best')
        append_log(self.log_file, lines)

    # -- the run ------------------------------------------------------------------------------------------

    def fit(self):
        args, ctx = self.args, self.ctx
        if args.resume_validation:
            result = self.validate()
            if ctx.is_main:
                self.record_validation(self.start_epoch, result)
        if self.rng_state is not None:
            set_rng_state(self.rng_state)  # after building and validating, so the continuation draws as before

        for epoch in range(self.start_epoch, args.n_epochs):
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
                means['trip_loss'], _fmt(means.get('frame_id_loss'), '.4f') or '-',
                _fmt(means.get('track_id_loss'), '.4f') or '-'))
            for name in LOSS_NAMES:
                self.pending[name].append('%.4f' % means.get(name, 0.0))

            result = None
            if (args.eval_every and done % args.eval_every == 0) or done == args.n_epochs:
                result = self.validate()
                if ctx.is_main:
                    self.record_validation(done, result)

            if ctx.is_main:
                row = {'epoch': done, 'lr': _fmt(lr, '.6g'), 'total_loss': _fmt(sum(means.values())),
                       'seconds': _fmt(time.time() - start, '.1f')}
                row.update({k: _fmt(v) for k, v in means.items()})
                if result is not None:
                    row.update({f'rank{k}': _fmt(float(result.rank(k))) for k in (1, 5, 10, 20)
                                if k <= len(result.cmc)})
                    row['mAP'] = _fmt(float(result.mAP))
                write_metrics_row(self.metrics_file, row)
                save_resume_state(self.last_file, model_state=original_state_dict(self.net), config=self.net.config,
                                  optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                                  epoch=done, best_rank1=self.best_rank1, pending=self.pending, args=args)
            barrier(ctx)
        self.log(f'Done: best rank-1 {self.best_rank1:.4f}; weights in {self.best_file}')
        if ctx.is_main:
            from util.visualize import plot_training_curves  # matplotlib is only needed here
            self.log(f'Training curves: {plot_training_curves(self.metrics_file)}')
        return self.best_rank1


def train(args):
    """Entry point of train_baseline.py and train_NL.py (args from util.options.parse_args)."""
    ctx = init_distributed(args.device)
    try:
        Trainer(args, ctx).fit()
    finally:
        cleanup(ctx)
    return 0
