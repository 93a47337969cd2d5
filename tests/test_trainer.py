"""The trainer built from parts: a Trainer assembled in Python trains exactly as train_baseline.py, the
--weight_decay defaults reach the optimiser, and --tensorboard logs the numbers of metrics.csv.

Tiny synthetic MARS (32x16 frames, S=2, P=2, K=2, resnet50_s1 with random initialisation, one epoch).
"""
import csv
import os
import shutil

import pytest
import torch

import train_baseline
import util.cli.train as cli_train
from models import build_model
from util.cli.options import parse_args, run_main
from util.data.loaders import make_test_loader, make_train_loader, read_database
from util.distributed import init_distributed
from util.evaluation.validation import Validator
from util.train.outputs import METRICS_COLUMNS, LastState, LogFile, MetricsCsv
from util.train.rundir import RunDir
from util.train.trainer import LossConfig, OptimConfig, Trainer, build_optimizer, build_scheduler, seed_everything


@pytest.fixture(scope='module')
def db(tiny_mars):
    return tiny_mars(seed=0, num_train_ids=4, num_test_ids=4, height=32, width=16, max_len=12, num_junk=2,
                     num_distractors=2) / 'db'


def script_args(d, ckpt, *extra):
    return ['--train_txt', str(d / 'train_path.txt'), '--train_info', str(d / 'train_info.npy'),
            '--test_txt', str(d / 'test_path.txt'), '--test_info', str(d / 'test_info.npy'),
            '--query_info', str(d / 'query_IDX.npy'), '--ckpt', str(ckpt), '--model_type', 'resnet50_s1',
            '--temporal', 'mean', '--S', '2', '--class_per_batch', '2', '--track_per_class', '2',
            '--batch_size', '8', '--height', '32', '--width', '16', '--pretrained', 'none', '--num_workers', '0',
            '--device', 'cpu', '--lr', '1e-4', '--n_epochs', '1', '--track_id_loss', *extra]


@pytest.fixture(scope='module')
def script_run(db, tmp_path_factory):
    """One epoch of train_baseline.py with --tensorboard: (its --ckpt, its TensorBoard directory)."""
    root = tmp_path_factory.mktemp('script')
    assert run_main(train_baseline.main, script_args(db, root / 'ckpt', '--tensorboard', str(root / 'tb'))) == 0
    return root / 'ckpt', root / 'tb'


def read_rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_a_trainer_built_from_parts_trains_as_the_script(db, script_run, tmp_path):
    """No command line: the parts built by hand, in the script's order (seed, data, model, optimiser), give the
    script's metrics, log and weights to the last bit."""
    ctx = init_distributed('cpu')
    seed_everything(0)
    train_db = read_database(db / 'train_path.txt', db / 'train_info.npy')
    test_db = read_database(db / 'test_path.txt', db / 'test_info.npy', db / 'query_IDX.npy')
    train_loader = make_train_loader(train_db, 2, 2, 2, 0, 0, height=32, width=16)
    test_loader = make_test_loader(test_db, 2, 8, 0, height=32, width=16)
    net = build_model('resnet50_s1', train_loader.dataset.n_id, temporal='mean', pretrained='none', height=32, S=2)
    optim = OptimConfig('adam', lr=1e-4, weight_decay=1e-5, lr_step_size=100)
    optimizer = build_optimizer(net.parameters(), optim)
    scheduler = build_scheduler(optimizer, optim)
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    run_dir = RunDir(tmp_path / 'ckpt')
    run_dir.prepare()
    config = dict(net.config, S=2, height=32, width=16, num_class=4)
    outputs = [LogFile(run_dir.log_file, frame_id_loss=False, track_id_loss=True), MetricsCsv(run_dir.metrics_file),
               LastState(run_dir.last_file, net, optimizer, scheduler, scaler, config, run_dir.log_file, flags={})]
    validator = Validator(test_loader, test_db, S=2, temporal='mean', amp='none', channels_last=False,
                          rank_size=10000, ctx=ctx)
    trainer = Trainer(net, net, optimizer, scheduler, scaler, train_loader, validator, outputs, run_dir, ctx,
                      n_epochs=1, eval_every=10, losses=LossConfig(S=2, temporal='mean', track_id_loss=True))
    best = trainer.fit()

    ckpt = script_run[0]
    script_rows, rows = read_rows(ckpt / 'metrics.csv'), read_rows(run_dir.metrics_file)
    for row in script_rows + rows:
        row.pop('seconds')
    assert rows == script_rows and float(rows[0]['rank1']) == best
    assert (ckpt / 'loss.txt').read_text() == (tmp_path / 'ckpt' / 'loss.txt').read_text()
    a, b = torch.load(ckpt / 'last.pth'), torch.load(run_dir.last_file)
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert sorted(os.listdir(tmp_path / 'ckpt')) == ['last.pth', 'loss.txt', 'metrics.csv']  # only these outputs


def test_tensorboard_scalars_are_the_numbers_of_metrics_csv(script_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ckpt, tb = script_run
    events = EventAccumulator(str(tb))
    events.Reload()
    rows = read_rows(ckpt / 'metrics.csv')
    filled = [c for c in METRICS_COLUMNS[1:] if rows[0][c] != '']
    assert filled == ['trip_loss', 'track_id_loss', 'total_loss', 'lr', 'rank1', 'rank5', 'rank10', 'rank20', 'mAP',
                      'seconds']
    assert sorted(events.Tags()['scalars']) == sorted(filled)
    for column in filled:
        (scalar,) = events.Scalars(column)
        assert scalar.step == 1
        # the file rounds to 6 decimals (seconds to 0.1, lr to 6 digits), the event keeps float32
        assert scalar.value == pytest.approx(float(rows[0][column]), abs=0.06 if column == 'seconds' else 6e-7)


@pytest.mark.parametrize('script,extra,expected', [
    ('baseline', [], 1e-5),
    ('NL', [], 5e-5),
    ('baseline', ['--optimizer', 'sgd'], 1e-4),
    ('NL', ['--optimizer', 'sgd', '--weight_decay', '2e-3'], 2e-3),
])
def test_weight_decay_reaches_the_optimiser(db, tmp_path, script, extra, expected):
    argv = script_args(db, tmp_path / 'ckpt', *extra)
    if script == 'NL':
        argv += ['--model_type', 'resnet50_NL', '--temporal', 'Done', '--non_layers', '0', '1', '0', '0']
    trainer = cli_train.build_trainer(parse_args(script, argv), init_distributed('cpu'))
    trainer.close()
    assert [g['weight_decay'] for g in trainer.optimizer.param_groups] == [expected]


@pytest.mark.parametrize('saved_before_the_flag', [False, True])
def test_resume_refuses_another_weight_decay(db, script_run, tmp_path, capsys, monkeypatch, saved_before_the_flag):
    """The resolved value is compared; a last.pth written before --weight_decay existed is compared through its
    optimiser's value."""
    ckpt = tmp_path / 'ckpt'
    shutil.copytree(script_run[0], ckpt)
    if saved_before_the_flag:
        state = torch.load(ckpt / 'last.pth')
        del state['args']['weight_decay']
        torch.save(state, ckpt / 'last.pth')
    monkeypatch.setattr(cli_train, 'read_database', lambda *a, **k: pytest.fail('read before the flags were checked'))
    argv = script_args(db, ckpt, '--n_epochs', '2', '--resume', str(ckpt), '--weight_decay', '1e-4')
    assert run_main(train_baseline.main, argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f'error: --resume {ckpt / "last.pth"}: the run was started with other flags, which its saved state would '
        "override: --weight_decay 1e-05 (now 0.0001); resume with the run's own flags (--n_epochs may grow), or "
        'start a new run from its weights with --load_ckpt')


def test_tensorboard_of_a_resumed_run_drops_the_interrupted_epochs(tmp_path):
    """A run killed after writing epochs 1-3 and resumed from epoch 1: epochs 2 and 3 are written again, once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from util.train.outputs import TensorBoardOutput

    def epochs(output, numbers, loss):
        for epoch in numbers:
            output.on_epoch(epoch=epoch, means={'trip_loss': loss}, lr=0.1, result=None, seconds=1.0,
                            best_rank1=0.0, pending={})

    first = TensorBoardOutput(tmp_path)
    epochs(first, [1, 2, 3], loss=1.0)
    first.on_end()
    resumed = TensorBoardOutput(tmp_path, start_epoch=1)
    epochs(resumed, [2, 3], loss=2.0)
    resumed.on_end()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars('trip_loss')] == [(1, 1.0), (2, 2.0), (3, 2.0)]
    assert sorted(events.Tags()['scalars']) == ['lr', 'seconds', 'total_loss', 'trip_loss']
