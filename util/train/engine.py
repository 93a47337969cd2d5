"""The training loop shared by train_baseline.py and train_NL.py.

One epoch = one pass of the identity-balanced sampler (every training identity once, P identities x K
tracklets per batch). Per batch: triplet loss on the clip features (resnet50_s1: the S frame features pooled
with --temporal), plus the optional ID losses. After every --eval_every epochs and after the last one the
model is scored on the test split; the best rank-1 weights go to ckpt_best.pth (original key names, with the
run configuration in ckpt_best.json), and the full state goes to last.pth after every epoch so that --resume
continues exactly.

A run owns its --ckpt directory: it holds the directory's lock for its whole length, and refuses a directory
holding another run unless told --resume or --overwrite. Everything it writes there is written atomically or,
for the log, cut back on resume to what the resumed epoch had written, so a kill at any point loses at most
the epoch in progress.

Under torchrun every process takes P / world_size identities of the same global batch. BatchNorm is
synchronised, and the triplet loss is mined over the global batch gathered with gradients, so the
gradients equal those of one process holding the whole batch (see `compute_losses`).
"""
import csv
import io
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

from models import build_model, load_checkpoint, load_state, original_state_dict, to_channels_last, unwrap_model
from models.network import DEFAULT_NON_LAYERS, DEFAULT_STRIPES
from util.data.loaders import make_train_loader, read_database
from util.distributed import (
    all_gather_with_grad,
    barrier,
    broadcast_object,
    cleanup,
    gather_tensors,
    init_distributed,
    wrap_model,
)
from util.errors import CheckpointError, OutputError, ReIDError
from util.evaluation.extract import (
    autocast,
    decoder_choice,
    extract_features,
    gather_features,
    make_eval_loader,
    prepare_clips,
    read_attributes,
    score_all,
)
from util.evaluation.metrics import format_protocols
from util.train.losses import batch_hard_triplet_soft, temporal_pool
from util.train.run import (
    LOCK_NAME,
    RUN_OUTPUTS,
    RunLock,
    changed_args,
    check_writable,
    existing_run_files,
    load_resume_state,
    remove_stale_temporaries,
    resolve_resume_path,
    save_best_weights,
    save_resume_state,
    set_rng_state,
    write_text,
)

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


# -- one training step ---------------------------------------------------------------------------------------

def train_step(model, optimizer, scaler, clips, labels, args, frame_level, world_size=1, on_non_finite=None):
    """One optimisation step on one batch, as train_baseline.py and train_NL.py take it (benchmarks time this).

    clips: uint8 (B,S,3,H,W) or a DeviceBatch; labels (B,). The network runs under --amp, the losses in fp32.
    Returns the loss values as Python floats; under torchrun (world_size > 1) averaged over ranks, so that
    every rank sees the same values and all stop together on a NaN. A non-finite loss raises
    NonFiniteLossError before the weights change, with the message on_non_finite(values) when given.
    """
    param = next(model.parameters())  # the input goes to the device and dtype of the weights
    x = prepare_clips(clips, frame_level, param.device, args.channels_last, param.dtype)
    labels = labels.to(param.device, non_blocking=True)
    with autocast(param.device, args.amp):
        feats, logits = model(x)
    if args.amp != 'none':  # losses in fp32
        feats, logits = feats.float(), logits.float()
    losses = compute_losses(feats, logits, labels, args, frame_level, world_size > 1)
    stacked = torch.stack([v.detach() for v in losses.values()])
    if world_size > 1:
        dist.all_reduce(stacked)
        stacked /= world_size
    values = dict(zip(losses, stacked.tolist()))
    if not all(math.isfinite(v) for v in values.values()):
        terms = ', '.join(f'{k}={v}' for k, v in values.items())
        raise NonFiniteLossError(on_non_finite(values) if on_non_finite else f'non-finite loss ({terms})')

    optimizer.zero_grad(set_to_none=True)
    scaler.scale(sum(losses.values())).backward()
    scaler.step(optimizer)
    scaler.update()
    return values


# -- metrics.csv and the log file ---------------------------------------------------------------------------

def _fmt(value, spec='.6f'):
    return '' if value is None else format(value, spec)


def _csv_lines(rows):
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def write_metrics_row(path, row):
    header = [] if os.path.exists(path) else [METRICS_COLUMNS]
    write_text(path, _csv_lines(header + [[row.get(c, '') for c in METRICS_COLUMNS]]), append=True)


def reset_metrics(path, keep_epochs):
    """Start metrics.csv afresh (atomically), keeping the rows of the first `keep_epochs` epochs (on
    --resume, rows of epochs after the resumed state were written by the interrupted run and will be
    written again)."""
    rows = []
    if keep_epochs > 0 and os.path.exists(path):
        with open(path, newline='') as f:
            rows = [r for r in csv.DictReader(f) if r.get('epoch', '').isdigit() and int(r['epoch']) <= keep_epochs]
    write_text(path, _csv_lines([METRICS_COLUMNS] + [[r.get(c, '') for c in METRICS_COLUMNS] for r in rows]))


def append_log(path, lines):
    write_text(path, ''.join(line + '\n' for line in lines), append=True)


def _file_size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


# -- the loop ------------------------------------------------------------------------------------------------

class Trainer:
    """Holds the run's state; `fit` runs the epochs. Built from the parsed arguments of a train script."""

    def __init__(self, args, ctx):
        self.args, self.ctx, self.device = args, ctx, ctx.device
        self.log = print if ctx.is_main else (lambda *a, **k: None)
        self.lock = None
        self.log_file = os.path.join(args.ckpt, args.log_path)
        self.metrics_file = os.path.join(args.ckpt, 'metrics.csv')
        self.last_file = os.path.join(args.ckpt, 'last.pth')
        self.best_file = os.path.join(args.ckpt, 'ckpt_best.pth')
        self.resume_path = resolve_resume_path(args.resume) if args.resume else None
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def close(self):
        """Release the --ckpt directory."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _setup(self):
        args, ctx = self.args, self.ctx
        # before any work: the outputs writable, the directory ours, the resumed run's flags unchanged
        self._on_main_first(self._claim_directory)
        resumed = load_resume_state(self.resume_path) if self.resume_path else None
        if resumed is not None:
            self._check_resumed_flags(resumed)
        seed_everything(args.seed)
        if self.device.type == 'cuda':
            torch.backends.cudnn.benchmark = True

        # data: every rank reads the same identity-balanced global batches and keeps its share
        train_db = read_database(args.train_txt, args.train_info)
        self.test_db = read_database(args.test_txt, args.test_info, args.query_info, args.gallery_info)
        self.test_attributes = read_attributes(args, len(self.test_db.info), args.test_info)  # --clothes_info ...
        self.train_loader = make_train_loader(train_db, args.S, args.class_per_batch, args.track_per_class,
                                              args.seed, args.num_workers, height=args.height, width=args.width,
                                              rank=ctx.rank, world_size=ctx.world_size,
                                              pin_memory=self.device.type == 'cuda', decoder=decoder_choice(args))
        self.test_loader = make_eval_loader(self.test_db, args, ctx)
        n_id = self.train_loader.dataset.n_id

        # model: build, load, move, wrap (SyncBatchNorm + DDP), compile; the optimiser sees the final modules
        model = build_model(args.model_type, n_id, non_layers=args.non_layers, stripes=args.stripes,
                            temporal=args.temporal, stride=args.stride,
                            pretrained='none' if self.resume_path else args.pretrained,
                            height=args.height, S=args.S)
        self.frame_level = model.frame_level
        self.dtype = next(model.parameters()).dtype  # of the input too (float32 unless built in float64)
        # what ckpt_best.json and last.pth record, and evaluate.py / --load_ckpt check
        self.run_config = dict(model.config, S=args.S, height=args.height, width=args.width, num_class=n_id)
        if resumed is not None:
            load_state(model, resumed['model'], resumed.get('config'), self.resume_path)
        elif args.load_ckpt is not None:
            for note in load_checkpoint(model, args.load_ckpt, inputs=vars(args), new_classifier=True):
                self.log(note)
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
        if resumed is not None:
            self._restore(resumed)
        if ctx.is_main:
            self._prepare_outputs(resumed)
        self.log(f'{args.model_type}: {n_id} training identities, {len(train_db.info)} training tracklets, '
                 f'{len(self.train_loader)} iterations per epoch (P={args.class_per_batch}, '
                 f'K={args.track_per_class}, S={args.S}); {len(self.test_db.info)} test tracklets; '
                 f'device {self.device}' + (f' x {ctx.world_size} processes' if ctx.world_size > 1 else ''))

    def _on_main_first(self, step):
        """Run `step` on the main process only; a ReIDError there stops every process (the others would
        otherwise wait for it forever)."""
        error = None
        if self.ctx.is_main:
            try:
                step()
            except ReIDError as err:
                error = err
        message = broadcast_object(None if error is None else str(error), self.ctx)
        if error is not None:
            raise error
        if message is not None:
            raise ReIDError(message)

    def _claim_directory(self):
        """--ckpt and --log_path writable, the directory locked for this run, and no other run in it."""
        args = self.args
        check_writable(args.ckpt, '--ckpt', directory=True)
        check_writable(self.log_file, '--log_path')
        self.lock = RunLock(args.ckpt).acquire()
        remove_stale_temporaries(args.ckpt, RUN_OUTPUTS + (LOCK_NAME,))
        remove_stale_temporaries(os.path.dirname(os.path.abspath(self.log_file)), (os.path.basename(self.log_file),))
        found = existing_run_files(args.ckpt)
        if found and not self._resuming_here() and not args.overwrite:
            raise OutputError(f'--ckpt {args.ckpt} already holds a training run ({", ".join(found)}): pass '
                              f'--resume {args.ckpt} to continue it, another --ckpt, or --overwrite to replace it')

    def _resuming_here(self):
        return self.resume_path is not None and os.path.samefile(os.path.dirname(os.path.abspath(self.resume_path)),
                                                                  self.args.ckpt)

    def _check_resumed_flags(self, state):
        """Refuse flags that the resumed state would silently override."""
        args = self.args
        diff = changed_args(state.get('args', {}), args,
                            defaults={'non_layers': DEFAULT_NON_LAYERS, 'stripes': DEFAULT_STRIPES})
        if diff:
            raise CheckpointError(
                f'--resume {self.resume_path}: the run was started with other flags, which its saved state would '
                'override: ' + ', '.join(f'--{k} {_flag_text(old)} (now {_flag_text(new)})'
                                         for k, (old, new) in diff.items()) +
                "; resume with the run's own flags (--n_epochs may grow), or start a new run from its weights "
                'with --load_ckpt')
        if args.n_epochs < int(state['epoch']):
            raise CheckpointError(f"--resume {self.resume_path}: the run has already completed {state['epoch']} "
                                  f'epochs, more than --n_epochs {args.n_epochs}')

    def _prepare_outputs(self, resumed):
        """Main process, once everything is built: the log and metrics.csv as the resumed epoch left them (or
        new ones), and with --overwrite the previous run's files removed."""
        args = self.args
        if args.overwrite:
            for name in RUN_OUTPUTS:
                path = os.path.join(args.ckpt, name)
                if os.path.exists(path):
                    os.remove(path)
        if resumed is None:
            write_text(self.log_file, '')  # a new run starts a new log
        elif self._resuming_here() and resumed['args'].get('log_path') == args.log_path:
            # an interrupted epoch may have written its log lines before dying: cut back to the resumed epoch
            size = resumed.get('log_size')
            if size is not None and _file_size(self.log_file) > size:
                try:
                    os.truncate(self.log_file, size)
                except OSError as err:
                    raise OutputError(f'cannot write {self.log_file}: {err.strerror or err}') from None
        elif not os.path.exists(self.log_file):
            write_text(self.log_file, '')
        reset_metrics(self.metrics_file, self.start_epoch)

    def _restore(self, state):
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
                values = train_step(self.model, self.optimizer, self.scaler, clips, labels, args, self.frame_level,
                                    self.ctx.world_size,
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
        protocols = score_all(feats.numpy(), labels.numpy(), cams.numpy(), self.test_db.query_idx, args.rank_size,
                              self.test_db.gallery_idx, source=f'validation features ({args.test_sampling} sampling)',
                              device=self.device, ap_rule=args.ap_rule, attributes=self.test_attributes)
        if len(protocols) > 1:
            self.log(format_protocols(protocols))
        return protocols['overall']

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
            save_best_weights(self.best_file, original_state_dict(self.net), self.run_config)
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
                save_resume_state(self.last_file, model_state=original_state_dict(self.net), config=self.run_config,
                                  optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                                  epoch=done, best_rank1=self.best_rank1, pending=self.pending,
                                  log_size=_file_size(self.log_file), args=args)
            barrier(ctx)
        self.log(f'Done: best rank-1 {self.best_rank1:.4f}; weights in {self.best_file}')
        if ctx.is_main:
            from util.pictures.curves import plot_training_curves  # matplotlib is only needed here
            try:
                self.log(f'Training curves: {plot_training_curves(self.metrics_file)}')
            except OSError as err:
                raise OutputError(f'cannot write the training curves beside {self.metrics_file}: '
                                  f'{err.strerror or err}') from None
        return self.best_rank1


def train(args):
    """Entry point of train_baseline.py and train_NL.py (args from util.cli.options.parse_args)."""
    ctx = init_distributed(args.device)
    try:
        trainer = Trainer(args, ctx)
        try:
            trainer.fit()
        finally:
            trainer.close()
    finally:
        cleanup(ctx)
    return 0


def _flag_text(value):
    return ' '.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
