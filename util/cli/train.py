"""train_baseline.py and train_NL.py: the flags turned into a Trainer's parts (`build_trainer`), and the run.

The order of the work is the original's and every random draw happens where it did: the --ckpt directory
claimed and the resumed run's flags checked before any work, then the seed, the data, the model (built,
loaded, moved, wrapped for DDP, compiled), the optimiser, and the outputs once everything is built.
"""

import torch

from models import build_model, load_checkpoint, load_state, to_channels_last, unwrap_model
from models.network import DEFAULT_NON_LAYERS, DEFAULT_STRIPES
from util.cli.evaluate import clip_config
from util.data.loaders import decoder_for, make_train_loader, read_database
from util.distributed import broadcast_object, cleanup, init_distributed, wrap_model
from util.errors import CheckpointError, ReIDError
from util.evaluation.attributes import ATTRIBUTES, load_attributes
from util.evaluation.extract import make_eval_loader
from util.evaluation.validation import Validator
from util.io import check_writable
from util.train.outputs import BestWeights, LastState, LogFile, MetricsCsv, TensorBoardOutput, TrainingCurves
from util.train.run import changed_args, load_resume_state, resolve_resume_path
from util.train.rundir import RunDir
from util.train.trainer import (
    LOSS_NAMES,
    LossConfig,
    OptimConfig,
    StartState,
    Trainer,
    build_optimizer,
    build_scheduler,
    seed_everything,
)


def loss_config(args):
    return LossConfig(S=args.S, temporal=args.temporal, frame_id_loss=args.frame_id_loss,
                      track_id_loss=args.track_id_loss)


def optim_config(args):
    """--optimizer, --lr, --weight_decay (resolved to the script's default by parse_args), --lr_step_size."""
    return OptimConfig(name=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                       lr_step_size=args.lr_step_size)


def on_main_first(ctx, step):
    """Run `step` on the main process only; a ReIDError there stops every process (the others would
    otherwise wait for it forever)."""
    error = None
    if ctx.is_main:
        try:
            step()
        except ReIDError as err:
            error = err
    message = broadcast_object(None if error is None else str(error), ctx)
    if error is not None:
        raise error
    if message is not None:
        raise ReIDError(message)


def check_resumed_flags(state, args, resume_path):
    """Refuse flags that the resumed state would silently override."""
    saved = dict(state.get('args', {}))
    if 'weight_decay' not in saved and state.get('optimizer', {}).get('param_groups'):
        # a state saved before --weight_decay existed: its optimiser holds the value it trained with
        saved['weight_decay'] = state['optimizer']['param_groups'][0]['weight_decay']
    diff = changed_args(saved, vars(args), defaults={'non_layers': DEFAULT_NON_LAYERS, 'stripes': DEFAULT_STRIPES})
    if diff:
        raise CheckpointError(
            f'--resume {resume_path}: the run was started with other flags, which its saved state would '
            'override: ' + ', '.join(f'--{k} {_flag_text(old)} (now {_flag_text(new)})'
                                     for k, (old, new) in diff.items()) +
            "; resume with the run's own flags (--n_epochs may grow), or start a new run from its weights "
            'with --load_ckpt')
    if args.n_epochs < int(state['epoch']):
        raise CheckpointError(f"--resume {resume_path}: the run has already completed {state['epoch']} "
                              f'epochs, more than --n_epochs {args.n_epochs}')


def _flag_text(value):
    return ' '.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def start_state(state):
    """The StartState of a resume state."""
    return StartState(epoch=int(state['epoch']), best_rank1=float(state['best_rank1']),
                      pending={name: list(state['pending'].get(name, [])) for name in LOSS_NAMES},
                      rng=state['rng'])


def build_trainer(args, ctx):
    """The Trainer of a train script's parsed flags on this process (ctx: its DistContext). It holds the
    --ckpt directory's lock until trainer.close()."""
    log = print if ctx.is_main else (lambda *a, **k: None)
    device = ctx.device
    optim = optim_config(args)
    resume_path = resolve_resume_path(args.resume) if args.resume else None
    run_dir = RunDir(args.ckpt, args.log_path, resume_path, args.overwrite)

    def claim():
        run_dir.claim()
        if args.tensorboard is not None:
            check_writable(args.tensorboard, '--tensorboard', directory=True)

    try:
        # before any work: the outputs writable, the directory ours, the resumed run's flags unchanged
        on_main_first(ctx, claim)
        resumed = load_resume_state(resume_path) if resume_path else None
        if resumed is not None:
            check_resumed_flags(resumed, args, resume_path)
        seed_everything(args.seed)
        if device.type == 'cuda':
            torch.backends.cudnn.benchmark = True

        # data: every rank reads the same identity-balanced global batches and keeps its share
        decoder = decoder_for(args.decode_on_device, args.resize_on_device)
        train_db = read_database(args.train_txt, args.train_info)
        test_db = read_database(args.test_txt, args.test_info, args.query_info, args.gallery_info)
        attributes = load_attributes({name: getattr(args, f'{name}_info') for name in ATTRIBUTES}, len(test_db.info),
                                     args.test_info)  # --clothes_info ...: validation prints their protocols
        train_loader = make_train_loader(train_db, args.S, args.class_per_batch, args.track_per_class, args.seed,
                                         args.num_workers, height=args.height, width=args.width, rank=ctx.rank,
                                         world_size=ctx.world_size, pin_memory=device.type == 'cuda',
                                         decoder=decoder)
        test_loader = make_eval_loader(test_db, clip_config(args), args.batch_size, args.num_workers, ctx)
        n_id = train_loader.dataset.n_id

        # model: build, load, move, wrap (SyncBatchNorm + DDP), compile; the optimiser sees the final modules
        model = build_model(args.model_type, n_id, non_layers=args.non_layers, stripes=args.stripes,
                            temporal=args.temporal, stride=args.stride,
                            pretrained='none' if resume_path else args.pretrained, height=args.height, S=args.S)
        # what ckpt_best.json and last.pth record, and evaluate.py / --load_ckpt check
        run_config = dict(model.config, S=args.S, height=args.height, width=args.width, num_class=n_id)
        if resumed is not None:
            load_state(model, resumed['model'], resumed.get('config'), resume_path)
        elif args.load_ckpt is not None:
            for note in load_checkpoint(model, args.load_ckpt, inputs=vars(args), new_classifier=True):
                log(note)
            log(f'Loaded weights from {args.load_ckpt}')
        model.to(device)
        if args.channels_last:
            to_channels_last(model)
        # without an ID loss the BN-neck and classifier get no gradient, which DDP must be told about
        model = wrap_model(model, ctx, find_unused_parameters=not (args.track_id_loss or args.frame_id_loss))
        net = unwrap_model(model)  # the plain network (BatchNorms synchronised) for evaluation and saving
        trained = torch.compile(model) if args.compile else model
        optimizer = build_optimizer(net.parameters(), optim)
        scheduler = build_scheduler(optimizer, optim)
        scaler = torch.amp.GradScaler(device.type, enabled=args.amp == 'fp16')

        start = StartState()
        if resumed is not None:
            optimizer.load_state_dict(resumed['optimizer'])
            if scheduler is not None and resumed.get('scheduler') is not None:
                scheduler.load_state_dict(resumed['scheduler'])
            if resumed.get('scaler'):
                scaler.load_state_dict(resumed['scaler'])
            start = start_state(resumed)
            log(f'Resumed from {resume_path}: {start.epoch} epochs done, best rank-1 {start.best_rank1:.4f}')
        outputs = []
        if ctx.is_main:
            run_dir.prepare(resumed['args'].get('log_path') if resumed else None,
                            resumed.get('log_size') if resumed else None, start.epoch)
            outputs = [BestWeights(run_dir.best_file, net, run_config),
                       LogFile(run_dir.log_file, args.frame_id_loss, args.track_id_loss),
                       MetricsCsv(run_dir.metrics_file)]
            if args.tensorboard is not None:
                outputs.append(TensorBoardOutput(args.tensorboard, start.epoch))
            outputs += [LastState(run_dir.last_file, net, optimizer, scheduler, scaler, run_config,
                                  run_dir.log_file, dict(vars(args))),
                        TrainingCurves(run_dir.metrics_file, log)]
        log(f'{args.model_type}: {n_id} training identities, {len(train_db.info)} training tracklets, '
            f'{len(train_loader)} iterations per epoch (P={args.class_per_batch}, '
            f'K={args.track_per_class}, S={args.S}); {len(test_db.info)} test tracklets; '
            f'device {device}' + (f' x {ctx.world_size} processes' if ctx.world_size > 1 else ''))
    except BaseException:
        run_dir.release()
        raise

    validator = Validator(test_loader, test_db, args.S, args.temporal, args.amp, args.channels_last,
                          args.rank_size, ctx, description=f'validation features ({args.test_sampling} sampling)',
                          ap_rule=args.ap_rule, attributes=attributes)
    return Trainer(trained, net, optimizer, scheduler, scaler, train_loader, validator, outputs, run_dir, ctx,
                   n_epochs=args.n_epochs, eval_every=args.eval_every, losses=loss_config(args), amp=args.amp,
                   channels_last=args.channels_last, start=start, validate_first=args.resume_validation)


def train(args):
    """Entry point of train_baseline.py and train_NL.py (args from util.cli.options.parse_args)."""
    ctx = init_distributed(args.device)
    try:
        trainer = build_trainer(args, ctx)
        try:
            trainer.fit()
        finally:
            trainer.close()
    finally:
        cleanup(ctx)
    return 0
