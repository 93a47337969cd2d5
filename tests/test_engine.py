"""The training loop: atomic checkpoints, exact resume, non-finite losses, loss wiring, bad-input errors, and
the run's ownership of its --ckpt directory under faults (full disk, a file where a directory should be,
SIGKILL and Ctrl-C during a checkpoint write, a second process on the same directory).

Runs in-process on a tiny synthetic MARS (32x16 frames, S=4, P=2, K=2, random initialisation); the kill and
interrupt cases run the training script in a subprocess whose torch.save stops inside the last.pth write.
"""
import copy
import csv
import errno
import glob
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import FullDisk

import train_baseline
import util.cli.train as cli_train
import util.train.trainer as trainer_module
from models import build_model
from util.cli.options import parse_args, run_main
from util.distributed import init_distributed
from util.errors import OutputError
from util.evaluation.extract import prepare_clips
from util.io import atomic_save, remove_stale_temporaries, write_text
from util.train.losses import batch_hard_triplet_soft
from util.train.outputs import METRICS_COLUMNS
from util.train.run import RunLock, load_resume_state, rng_state, set_rng_state
from util.train.trainer import (
    LossConfig,
    NonFiniteLossError,
    OptimConfig,
    build_optimizer,
    compute_losses,
    train_step,
)


@pytest.fixture(scope='module')
def db(tiny_mars):
    """Database files of a tiny synthetic MARS: 4 train and 4 test identities, 32x16 frames."""
    return tiny_mars(seed=0, num_train_ids=4, num_test_ids=4, height=32, width=16, max_len=12, num_junk=2,
                     num_distractors=2) / 'db'


def db_args(d):
    return ['--train_txt', str(d / 'train_path.txt'), '--train_info', str(d / 'train_info.npy'),
            '--test_txt', str(d / 'test_path.txt'), '--test_info', str(d / 'test_info.npy'),
            '--query_info', str(d / 'query_IDX.npy')]


def baseline_args(d, ckpt, *extra):
    return db_args(d) + ['--ckpt', str(ckpt), '--model_type', 'resnet50_s1', '--temporal', 'mean', '--S', '4',
                         '--class_per_batch', '2', '--track_per_class', '2', '--batch_size', '8',
                         '--height', '32', '--width', '16', '--pretrained', 'none', '--num_workers', '0',
                         '--device', 'cpu', '--lr', '1e-4', '--lr_step_size', '1', '--eval_every', '1',
                         '--track_id_loss', '--frame_id_loss', *extra]


def run_baseline(d, ckpt, *extra):
    return cli_train.train(parse_args('baseline', baseline_args(d, ckpt, *extra)))


@pytest.fixture(scope='module')
def first_epoch(db, tmp_path_factory):
    """A --ckpt directory after one epoch of a run stopped there."""
    ckpt = tmp_path_factory.mktemp('first') / 'ckpt'
    run_baseline(db, ckpt, '--n_epochs', '1')
    return ckpt


@pytest.fixture(scope='module')
def two_epochs(db, tmp_path_factory):
    """A --ckpt directory after two epochs run straight."""
    ckpt = tmp_path_factory.mktemp('two') / 'ckpt'
    run_baseline(db, ckpt, '--n_epochs', '2')
    return ckpt


def read_rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def same_rows(a, b):
    a, b = read_rows(a), read_rows(b)
    for row in a + b:
        row.pop('seconds')
    return a == b


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# train_baseline.py whose torch.save, on writing last.pth after epoch EPOCH, writes part of the file, touches
# MARKER and waits there to be killed or interrupted.
STOPPED_IN_SAVE = """
import sys, time
import torch
import util.train.run
real_save = torch.save
def stopping_save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and obj.get('format') == util.train.run.RESUME_FORMAT and obj['epoch'] == {epoch}:
        f.write(b'part of a checkpoint')
        f.flush()
        open({marker!r}, 'w').close()
        time.sleep(300)
    return real_save(obj, f, *args, **kwargs)
torch.save = stopping_save
import train_baseline
from util.cli.options import run_main
sys.exit(run_main(train_baseline.main, sys.argv[1:]))
"""


def start_stopped_in_save(tmp_path, argv, epoch):
    """The training subprocess, once it is inside the write of last.pth after `epoch` epochs."""
    script, marker = tmp_path / 'stopped_in_save.py', tmp_path / 'in_save'
    script.write_text(STOPPED_IN_SAVE.format(epoch=epoch, marker=str(marker)))
    proc = subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': ROOT})
    deadline = time.time() + 600
    while not marker.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f'the training subprocess never reached the save: {err[-2000:]}')
        time.sleep(0.2)
    return proc


def temporaries(directory):
    return sorted(glob.glob(os.path.join(directory, '.*.tmp')))


# -- atomic writes and RNG state ------------------------------------------------------------------------------

class Unpicklable:
    def __reduce__(self):
        raise RuntimeError('cannot pickle')


def test_atomic_save_replaces_whole_file(tmp_path):
    path = tmp_path / 'x.pth'
    atomic_save({'a': torch.arange(3)}, path)
    atomic_save({'a': torch.arange(5)}, path)
    assert torch.equal(torch.load(path)['a'], torch.arange(5))
    assert os.listdir(tmp_path) == ['x.pth']


def test_atomic_save_failure_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'x.pth'
    atomic_save({'a': torch.arange(3)}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match='cannot pickle'):
        atomic_save({'a': torch.arange(4), 'b': Unpicklable()}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['x.pth']
    with pytest.raises(RuntimeError):
        atomic_save(Unpicklable(), tmp_path / 'new.pth')
    assert os.listdir(tmp_path) == ['x.pth']  # no partial new file either


def test_check_writable_refuses_unwritable_outputs(tmp_path):
    from util.errors import OutputError
    from util.io import check_writable
    check_writable(tmp_path / 'new' / 'f.npz', '--save_features')          # creates the missing directory
    assert os.listdir(tmp_path / 'new') == []                               # and leaves no probe file
    (tmp_path / 'file').write_text('x')
    with pytest.raises(OutputError, match=r'^--ckpt .*file: exists and is not a directory'):
        check_writable(tmp_path / 'file', '--ckpt', directory=True)
    with pytest.raises(OutputError, match=r'is a file, not a directory'):
        check_writable(tmp_path / 'file' / 'sub' / 'f.npz', '--save_features')
    with pytest.raises(OutputError, match=r'is a directory, expected a file name'):
        check_writable(tmp_path, '--results')
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / 'ro'
        ro.mkdir(mode=0o555)
        with pytest.raises(OutputError, match='not writable'):
            check_writable(ro / 'f.npz', '--save_features')


def test_rng_state_round_trip():
    import random
    state = rng_state()
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws


# -- losses -----------------------------------------------------------------------------------------------------

LOSSES = LossConfig(S=3, temporal='mean', frame_id_loss=True, track_id_loss=True)


def test_frame_level_losses_pool_clips_and_expand_labels():
    torch.manual_seed(0)
    feats, logits = torch.randn(4 * 3, 8), torch.randn(4 * 3, 5)  # 4 clips of S=3 frames
    labels = torch.tensor([0, 0, 1, 1])
    losses = compute_losses(feats, logits, labels, LOSSES, frame_level=True)
    clip_feats = feats.reshape(4, 3, 8).mean(1)
    clip_logits = logits.reshape(4, 3, 5).mean(1)
    assert torch.allclose(losses['trip_loss'], batch_hard_triplet_soft(clip_feats, labels))
    assert torch.allclose(losses['track_id_loss'], F.cross_entropy(clip_logits, labels))
    frame_labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    assert torch.allclose(losses['frame_id_loss'], F.cross_entropy(logits, frame_labels))


def test_clip_level_losses_use_outputs_as_they_are():
    config = LossConfig(S=3, temporal='Done', frame_id_loss=False, track_id_loss=True)
    feats, logits, labels = torch.randn(4, 8), torch.randn(4, 5), torch.tensor([0, 0, 1, 1])
    losses = compute_losses(feats, logits, labels, config, frame_level=False)
    assert set(losses) == {'trip_loss', 'track_id_loss'}
    assert torch.allclose(losses['track_id_loss'], F.cross_entropy(logits, labels))


def _step_setup():
    torch.manual_seed(0)
    model = build_model('resnet50_s1', 3, pretrained='none', height=32).train()
    losses = LossConfig(S=2, temporal='mean', track_id_loss=True)
    optimizer = build_optimizer(model.parameters(), OptimConfig('adam', lr=1e-3, weight_decay=1e-5))
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    clips = torch.randint(0, 256, (4, 2, 3, 32, 16), dtype=torch.uint8)  # 2 identities x 2 clips of 2 frames
    return model, losses, optimizer, scaler, clips, torch.tensor([0, 0, 1, 1])


def test_train_step_returns_the_losses_of_the_batch_and_updates_the_weights():
    model, losses, optimizer, scaler, clips, labels = _step_setup()
    twin = copy.deepcopy(model)
    feats, logits = twin(prepare_clips(clips, True, torch.device('cpu')))
    expected = compute_losses(feats, logits, labels, losses, frame_level=True)
    values = train_step(model, optimizer, scaler, clips, labels, losses, frame_level=True)
    assert values == {k: v.item() for k, v in expected.items()}
    sum(expected.values()).backward()
    torch.optim.Adam(twin.parameters(), lr=1e-3, weight_decay=1e-5).step()  # the baseline's Adam
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def test_train_step_stops_on_a_non_finite_loss_before_the_weights_change(monkeypatch):
    model, losses, optimizer, scaler, clips, labels = _step_setup()
    before = [p.detach().clone() for p in model.parameters()]  # (BatchNorm statistics move in the forward)
    monkeypatch.setattr(trainer_module, 'batch_hard_triplet_soft', lambda f, y: torch.tensor(float('inf')))
    with pytest.raises(NonFiniteLossError, match=r'^non-finite loss \(trip_loss=inf, track_id_loss=[0-9.]+\)$'):
        train_step(model, optimizer, scaler, clips, labels, losses, frame_level=True)
    with pytest.raises(NonFiniteLossError, match='^epoch 7$'):
        train_step(model, optimizer, scaler, clips, labels, losses, True, on_non_finite=lambda v: 'epoch 7')
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())) and not optimizer.state


# -- one run's outputs --------------------------------------------------------------------------------------------

def test_outputs_of_a_run(first_epoch):
    files = sorted(os.listdir(first_epoch))  # the lock is gone with the run
    assert files == ['ckpt_best.json', 'ckpt_best.pth', 'last.pth', 'loss.txt', 'metrics.csv', 'training_curves.png']
    best = torch.load(first_epoch / 'ckpt_best.pth')
    assert all(k.startswith('module.') and isinstance(v, torch.Tensor) for k, v in best.items())  # the original's
    config = {'model_type': 'resnet50_s1', 'non_layers': [0, 0, 0, 0], 'stripes': [16, 16, 16, 16],
              'temporal': 'mean', 'stride': 1, 'S': 4, 'height': 32, 'width': 16, 'num_class': 4}
    record = json.loads((first_epoch / 'ckpt_best.json').read_text())
    assert {k: record[k] for k in config} == config
    assert torch.load(first_epoch / 'last.pth')['config'] == config
    umask = os.umask(0)
    os.umask(umask)
    for name in files:  # created files follow the umask (mkstemp alone would make them 0600)
        assert stat.S_IMODE(os.stat(first_epoch / name).st_mode) == 0o666 & ~umask, name
    assert 'module.classifier.weight' in best and best['module.classifier.weight'].shape[0] == 4
    lines = (first_epoch / 'loss.txt').read_text().splitlines()
    assert lines[0].startswith('epoch 1, rank-1 ') and ' , mAP ' in lines[0]
    assert lines[1].startswith("Frame ID loss : ['") and lines[2].startswith("Track ID loss : ['")
    assert lines[3].startswith("Trip Loss : ['") and lines[4] == 'best'
    rows = read_rows(first_epoch / 'metrics.csv')
    assert list(rows[0]) == list(METRICS_COLUMNS)
    assert rows[0]['epoch'] == '1' and rows[0]['rank1'] and rows[0]['lr'] == '0.0001'
    state = load_resume_state(str(first_epoch))
    assert state['epoch'] == 1 and state['args']['model_type'] == 'resnet50_s1'


# -- exact resume ------------------------------------------------------------------------------------------------

def test_resume_after_a_kill_during_the_last_pth_write_continues_exactly(db, first_epoch, two_epochs, tmp_path):
    """SIGKILL inside the write of last.pth, after epoch 2 had written its log lines and metrics row: the old
    last.pth stays whole, the lock does not block, the temporary file is cleaned, and the resumed run writes
    every epoch's log line once and ends exactly as a straight run."""
    straight = two_epochs
    resumed = tmp_path / 'resumed'
    shutil.copytree(first_epoch, resumed)
    argv = baseline_args(db, resumed, '--n_epochs', '2', '--resume', str(resumed / 'last.pth'))
    proc = start_stopped_in_save(tmp_path, argv, epoch=2)
    proc.kill()
    proc.communicate()
    assert (resumed / 'last.pth').read_bytes() == (first_epoch / 'last.pth').read_bytes()
    assert len(temporaries(resumed)) == 1 and (resumed / '.lock').exists()  # what a killed run leaves
    assert (resumed / 'loss.txt').read_text().count('epoch 2, rank-1') == 1

    run_baseline(db, resumed, '--n_epochs', '2', '--resume', str(resumed))
    assert temporaries(resumed) == [] and not (resumed / '.lock').exists()
    assert [r['epoch'] for r in read_rows(resumed / 'metrics.csv')] == ['1', '2']
    assert same_rows(straight / 'metrics.csv', resumed / 'metrics.csv')
    assert (straight / 'loss.txt').read_text() == (resumed / 'loss.txt').read_text()
    wa = torch.load(straight / 'last.pth')['model']
    wb = torch.load(resumed / 'last.pth')['model']
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = torch.load(straight / 'last.pth')['optimizer']['state']
    sb = torch.load(resumed / 'last.pth')['optimizer']['state']
    assert all(torch.equal(sa[i]['exp_avg'], sb[i]['exp_avg']) for i in sa)


@pytest.mark.parametrize('flag', ['--decode_on_device', '--resize_on_device'])
def test_device_side_input_trains_like_the_default_on_cpu(db, first_epoch, tmp_path, flag):
    """On the CPU the clips finished in the main process are the workers' clips: the same epoch, to the last
    digit."""
    run_baseline(db, tmp_path / 'ckpt', '--n_epochs', '1', flag)
    a, b = read_rows(first_epoch / 'metrics.csv'), read_rows(tmp_path / 'ckpt' / 'metrics.csv')
    for row in (a[0], b[0]):
        row.pop('seconds')
    assert a == b


# -- non-finite loss -----------------------------------------------------------------------------------------

def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(db, first_epoch, tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / 'ckpt'
    shutil.copytree(first_epoch, ckpt)
    saved = {name: (ckpt / name).read_bytes() for name in ('last.pth', 'ckpt_best.pth')}
    calls = []

    def nan_on_second_batch(feats, labels):
        calls.append(1)
        loss = batch_hard_triplet_soft(feats, labels)
        return loss * float('nan') if len(calls) == 2 else loss

    monkeypatch.setattr(trainer_module, 'batch_hard_triplet_soft', nan_on_second_batch)
    argv = baseline_args(db, ckpt, '--n_epochs', '3', '--resume', str(ckpt))
    with pytest.raises(NonFiniteLossError) as err:
        cli_train.train(parse_args('baseline', argv))
    message = str(err.value)
    assert 'non-finite loss at epoch 2, iteration 2' in message and 'trip_loss=nan' in message
    assert 'last.pth (after epoch 1) is kept' in message
    for name, data in saved.items():
        assert (ckpt / name).read_bytes() == data

    calls.clear()
    assert run_main(train_baseline.main, argv) == 2
    last = capsys.readouterr().err.replace('\r', '\n').strip().splitlines()[-1]
    assert last.startswith('error: non-finite loss at epoch 2')


# -- bad input ------------------------------------------------------------------------------------------------

def _fail(argv, capsys, main=train_baseline.main):
    assert run_main(main, argv) == 2
    last = capsys.readouterr().err.replace('\r', '\n').strip().splitlines()[-1]  # after any progress bar
    assert last.startswith('error: ')
    return last


def test_missing_database_file(db, tmp_path, capsys):
    argv = baseline_args(db, tmp_path / 'c', '--n_epochs', '1')
    argv[argv.index('--train_info') + 1] = str(tmp_path / 'nope.npy')
    assert 'nope.npy: file not found' in _fail(argv, capsys)


def test_info_rows_past_the_path_list(db, tmp_path, capsys):
    info = np.load(db / 'train_info.npy')
    info[-1, 1] = 10 ** 6
    np.save(tmp_path / 'bad_info.npy', info)
    argv = baseline_args(db, tmp_path / 'c', '--n_epochs', '1')
    argv[argv.index('--train_info') + 1] = str(tmp_path / 'bad_info.npy')
    assert f'tracklet row {len(info) - 1}' in _fail(argv, capsys)


def test_query_index_out_of_range(db, tmp_path, capsys):
    np.save(tmp_path / 'bad_query.npy', np.array([[0, 10 ** 4]], dtype=np.uint16))
    argv = baseline_args(db, tmp_path / 'c', '--n_epochs', '1')
    argv[argv.index('--query_info') + 1] = str(tmp_path / 'bad_query.npy')
    assert 'query index 10000' in _fail(argv, capsys)


def test_corrupt_frame_names_file_and_tracklet(db, tmp_path, capsys):
    bad = tmp_path / 'corrupt.jpg'
    bad.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    n = len((db / 'train_path.txt').read_text().splitlines())
    (tmp_path / 'paths.txt').write_text(f'{bad}\n' * n)
    argv = baseline_args(db, tmp_path / 'c', '--n_epochs', '1')
    argv[argv.index('--train_txt') + 1] = str(tmp_path / 'paths.txt')
    message = _fail(argv, capsys)
    assert 'corrupt.jpg' in message and 'tracklet row' in message


def test_fewer_identities_than_class_per_batch(db, tmp_path, capsys):
    argv = baseline_args(db, tmp_path / 'c', '--n_epochs', '1', '--class_per_batch', '8')
    assert 'class_per_batch 8 is larger than the 4 training identities' in _fail(argv, capsys)


def test_checkpoint_of_another_model_type(db, first_epoch, capsys):
    import evaluate
    argv = db_args(db) + ['--model_type', 'resnet50_NL', '--temporal', 'Done', '--S', '4', '--height', '32',
                          '--width', '16', '--num_workers', '0', '--device', 'cpu',
                          '--load_ckpt', str(first_epoch / 'ckpt_best.pth')]
    message = _fail(argv, capsys, evaluate.main)
    assert 'does not fit resnet50_NL' in message and 'resnet50_s1' in message


def test_resume_from_a_weights_only_file(db, first_epoch, tmp_path, capsys):
    argv = baseline_args(db, tmp_path / 'c', '--n_epochs', '2', '--resume', str(first_epoch / 'ckpt_best.pth'))
    assert 'not a resume state' in _fail(argv, capsys)


def test_features_of_an_empty_shard_have_the_feature_width(db):
    """With more processes than test tracklets a rank loads nothing; its (0, D) features must still
    concatenate with the other ranks' (n, D) ones."""
    from models import build_model
    from util.data.loaders import make_test_loader, read_database
    from util.evaluation.extract import extract_features
    test = read_database(db / 'test_path.txt', db / 'test_info.npy', db / 'query_IDX.npy')
    n = len(test.info)
    model = build_model('resnet50_s1', 4, pretrained='none', height=32, S=2)
    empty = make_test_loader(test, 2, 4, 0, 32, 16, rank=0, world_size=n + 1)
    full = make_test_loader(test, 2, 4, 0, 32, 16, rank=n, world_size=n + 1)
    feats, labels, cams = extract_features(model, empty, 2, torch.device('cpu'), 'mean', progress=False)
    assert feats.shape == (0, 2048) and labels.shape == cams.shape == (0,)
    other = extract_features(model, full, 2, torch.device('cpu'), 'mean', progress=False)[0]
    assert torch.cat([feats, other]).shape == (other.shape[0], 2048) and other.shape[0] >= 1


# -- file-system faults in the writes ------------------------------------------------------------------------

def test_atomic_save_full_disk_part_way_is_one_line_and_keeps_the_old_file(tmp_path):
    path = tmp_path / 'x.pth'
    atomic_save({'a': torch.arange(3)}, path)
    before = path.read_bytes()

    def full_disk(obj, f):
        f.write(b'the first part')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match=rf'^cannot write {path}: No space left on device$'):
        atomic_save({'a': torch.arange(4)}, path, write=full_disk)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ['x.pth']
    (tmp_path / 'file').write_text('')
    with pytest.raises(OutputError, match=r'^cannot write .*file/x.pth: (File exists|Not a directory)$'):
        atomic_save(1, tmp_path / 'file' / 'x.pth')


def test_atomic_save_and_write_text_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_save({'a': 1}, tmp_path / 'x.pth')
        write_text(tmp_path / 'log.txt', 'a\n')
        os.umask(0o002)
        atomic_save({'a': 1}, tmp_path / 'y.pth')
    finally:
        os.umask(old)
    modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in ('x.pth', 'log.txt', 'y.pth')}
    assert modes == {'x.pth': 0o640, 'log.txt': 0o640, 'y.pth': 0o664}


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    for name in ('.last.pth.k2j4.tmp', '.ckpt_best.pth.a1.tmp', '.write-test.x9', '.other.pth.a1.tmp', 'last.pth'):
        (tmp_path / name).write_bytes(b'')
    removed = remove_stale_temporaries(tmp_path, ['last.pth', 'ckpt_best.pth'])
    assert [os.path.basename(p) for p in removed] == ['.ckpt_best.pth.a1.tmp', '.last.pth.k2j4.tmp', '.write-test.x9']
    assert sorted(os.listdir(tmp_path)) == ['.other.pth.a1.tmp', 'last.pth']


def _not_read(*args, **kwargs):
    raise AssertionError('the database was read before the outputs were checked')


def test_unwritable_outputs_are_refused_before_any_work(db, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_train, 'read_database', _not_read)
    (tmp_path / 'file').write_text('x')
    cases = [
        (baseline_args(db, tmp_path / 'file'), f'--ckpt {tmp_path / "file"}: exists and is not a directory'),
        (baseline_args(db, tmp_path / 'file' / 'ckpt'), f'{tmp_path / "file"} is a file, not a directory'),
        (baseline_args(db, tmp_path / 'c', '--log_path', 'sub'), 'is a directory, expected a file name'),
        (baseline_args(db, tmp_path / 'd', '--log_path', '../file/loss.txt'), '--log_path '),
    ]
    (tmp_path / 'c' / 'sub').mkdir(parents=True)
    for argv, message in cases:
        assert message in _fail(argv, capsys)

    # a read-only directory (root writes anywhere, so the file system says it here)
    import util.io

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(util.io.tempfile, 'mkstemp', read_only)
    message = _fail(baseline_args(db, tmp_path / 'e'), capsys)
    assert message == f'error: --ckpt {tmp_path / "e"}: cannot write there (Read-only file system)'


def test_real_torch_save_filling_the_disk_in_last_pth_is_one_line(db, first_epoch, tmp_path, capsys, monkeypatch):
    # the disk fills inside torch.save's own writes: torch raises RuntimeError('... unexpected pos ...') from
    # the OSError, which was a 30-line traceback
    import util.train.run as run
    ckpt = tmp_path / 'ckpt'
    shutil.copytree(first_epoch, ckpt)
    before = (ckpt / 'last.pth').read_bytes()
    real_fdopen = os.fdopen

    def fdopen(fd, mode):
        name = os.path.basename(os.readlink(f'/proc/self/fd/{fd}'))
        return FullDisk(real_fdopen(fd, mode), 4096) if name.startswith('.last.pth.') else real_fdopen(fd, mode)

    monkeypatch.setattr(run.os, 'fdopen', fdopen)
    assert run_main(train_baseline.main, baseline_args(db, ckpt, '--n_epochs', '2', '--resume', str(ckpt))) == 2
    err = capsys.readouterr().err.replace('\r', '\n')
    assert 'Traceback' not in err and 'RuntimeError' not in err
    assert err.strip().splitlines()[-1] == f'error: cannot write {ckpt / "last.pth"}: No space left on device'
    assert (ckpt / 'last.pth').read_bytes() == before and temporaries(ckpt) == []  # still resumable


def test_full_disk_while_saving_is_one_line_and_keeps_the_last_checkpoint(db, first_epoch, tmp_path, capsys,
                                                                         monkeypatch):
    ckpt = tmp_path / 'ckpt'
    shutil.copytree(first_epoch, ckpt)
    before = (ckpt / 'last.pth').read_bytes()
    real_save = torch.save

    def full_disk_on_last(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get('format') == 'ste-nvan-resume-v1':
            f.write(b'the first part')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', full_disk_on_last)
    message = _fail(baseline_args(db, ckpt, '--n_epochs', '2', '--resume', str(ckpt)), capsys)
    assert message == f'error: cannot write {ckpt / "last.pth"}: No space left on device'
    assert (ckpt / 'last.pth').read_bytes() == before
    assert temporaries(ckpt) == [] and not (ckpt / '.lock').exists()


def test_ctrl_c_during_a_checkpoint_write(db, first_epoch, tmp_path):
    ckpt = tmp_path / 'ckpt'
    shutil.copytree(first_epoch, ckpt)
    proc = start_stopped_in_save(tmp_path, baseline_args(db, ckpt, '--n_epochs', '2', '--resume', str(ckpt)), 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.replace('\r', '\n').strip().splitlines()[-1] == 'error: interrupted' and 'Traceback' not in err
    assert (ckpt / 'last.pth').read_bytes() == (first_epoch / 'last.pth').read_bytes()
    assert temporaries(ckpt) == [] and not (ckpt / '.lock').exists()


# -- the run owns its --ckpt directory ---------------------------------------------------------------------------

def test_a_directory_holding_a_run_is_refused_without_resume_or_overwrite(db, first_epoch, tmp_path, capsys,
                                                                          monkeypatch):
    ckpt, other = tmp_path / 'ckpt', tmp_path / 'other'
    shutil.copytree(first_epoch, ckpt)
    shutil.copytree(first_epoch, other)
    before = {name: (ckpt / name).read_bytes() for name in os.listdir(ckpt)}
    with monkeypatch.context() as m:
        m.setattr(cli_train, 'read_database', _not_read)
        expected = (f'error: --ckpt {ckpt} already holds a training run (last.pth, ckpt_best.pth): pass --resume '
                    f'{ckpt} to continue it, another --ckpt, or --overwrite to replace it')
        assert _fail(baseline_args(db, ckpt, '--n_epochs', '1'), capsys) == expected
        # continuing another directory's run into this one would mix two runs as well
        assert _fail(baseline_args(db, ckpt, '--n_epochs', '2', '--resume', str(other)), capsys) == expected
    assert {name: (ckpt / name).read_bytes() for name in os.listdir(ckpt)} == before

    # --overwrite: once everything is built, the old run's files are gone (its scores too: a stale results.json
    # would enter a split summary) and a new log and metrics begin
    (ckpt / 'results.json').write_text('{}\n')
    args = parse_args('baseline', baseline_args(db, ckpt, '--n_epochs', '1', '--overwrite'))
    trainer = cli_train.build_trainer(args, init_distributed('cpu'))
    try:
        assert sorted(os.listdir(ckpt)) == ['.lock', 'loss.txt', 'metrics.csv']
        assert (ckpt / 'loss.txt').read_text() == ''
        assert (ckpt / 'metrics.csv').read_text().splitlines() == [','.join(METRICS_COLUMNS)]
        assert (ckpt / '.lock').read_text().split()[0] == str(os.getpid())
    finally:
        trainer.close()
    assert not (ckpt / '.lock').exists()


def test_a_second_process_on_the_same_directory_stops_at_once(db, tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import sys, time; from util.train.run import '
         'RunLock; RunLock(sys.argv[1]).acquire(); print("locked", flush=True); time.sleep(300)', str(ckpt)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, 'PYTHONPATH': ROOT})
    try:
        assert holder.stdout.readline().strip() == 'locked'
        monkeypatch.setattr(cli_train, 'read_database', _not_read)
        assert _fail(baseline_args(db, ckpt, '--n_epochs', '1'), capsys) == (
            f'error: --ckpt {ckpt} is in use by another training run (pid {holder.pid} on {socket.gethostname()}); '
            'wait for it to finish or pass another --ckpt')
    finally:
        holder.kill()  # SIGKILL: its .lock stays behind, its lock does not
        holder.wait()
    assert (ckpt / '.lock').read_text().split()[0] == str(holder.pid)
    with RunLock(ckpt):
        assert (ckpt / '.lock').read_text().split()[0] == str(os.getpid())
    assert not (ckpt / '.lock').exists()


def test_lock_without_flock_checks_the_pid(tmp_path, monkeypatch):
    """On a file system without flock a live pid in .lock holds the directory and a dead one does not."""
    import fcntl

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(fcntl, 'flock', no_flock)
    dead = subprocess.Popen(['true'])
    dead.wait()
    (tmp_path / '.lock').write_text(f'{dead.pid} {socket.gethostname()}\n')
    with RunLock(tmp_path):
        assert (tmp_path / '.lock').read_text().split()[0] == str(os.getpid())
    (tmp_path / '.lock').write_text(f'{os.getppid()} {socket.gethostname()}\n')
    with pytest.raises(OutputError, match=rf'in use by another training run \(pid {os.getppid()} on '):
        RunLock(tmp_path).acquire()


# -- --resume and --load_ckpt against the saved run ------------------------------------------------------------

def test_resume_with_flags_the_saved_state_would_override_is_refused(db, first_epoch, tmp_path, capsys,
                                                                    monkeypatch):
    ckpt = tmp_path / 'ckpt'
    shutil.copytree(first_epoch, ckpt)
    monkeypatch.setattr(cli_train, 'read_database', _not_read)
    argv = baseline_args(db, ckpt, '--n_epochs', '2', '--resume', str(ckpt), '--lr', '1e-3', '--class_per_batch',
                         '3', '--amp', 'bf16', '--non_layers', '0', '2', '3', '0')  # the default: no difference
    assert _fail(argv, capsys) == (
        f'error: --resume {ckpt / "last.pth"}: the run was started with other flags, which its saved state would '
        'override: --amp none (now bf16), --class_per_batch 2 (now 3), --lr 0.0001 (now 0.001); resume with the '
        "run's own flags (--n_epochs may grow), or start a new run from its weights with --load_ckpt")


def test_resume_state_that_is_not_finite_or_not_a_pytorch_file(db, first_epoch, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_train, 'read_database', _not_read)
    state = torch.load(first_epoch / 'last.pth')
    state['optimizer']['state'][3]['exp_avg'].view(-1)[:2] = float('nan')
    bad = tmp_path / 'nan.pth'
    torch.save(state, bad)
    assert _fail(baseline_args(db, tmp_path / 'c', '--n_epochs', '2', '--resume', str(bad)), capsys).startswith(
        f'error: --resume {bad}: tensor optimizer.state.3.exp_avg holds 2 NaN or infinite values of ')
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(bytes(range(256)) * 8)
    assert _fail(baseline_args(db, tmp_path / 'c', '--n_epochs', '2', '--resume', str(junk)), capsys) == (
        f'error: --resume {junk}: cannot be read as a PyTorch file (not a PyTorch file: it starts with bytes '
        '00 01 02 03 04 05 06 07, where torch.save writes a zip archive (50 4b 03 04) or a pickle (80))')


def test_load_ckpt_of_another_training_set_or_clip_length(db, first_epoch, tmp_path, capsys):
    from models import build_model, original_state_dict
    with torch.device('meta'):
        other = build_model('resnet50_s1', 7, pretrained='none')
    tiny = {k: torch.full((), 0.5).expand(v.shape) for k, v in original_state_dict(other).items()}
    torch.save(tiny, tmp_path / 'seven.pth')
    ctx = init_distributed('cpu')
    args = parse_args('baseline', baseline_args(db, tmp_path / 'a', '--load_ckpt', str(tmp_path / 'seven.pth')))
    trainer = cli_train.build_trainer(args, ctx)
    trainer.close()
    assert (f'note: {tmp_path / "seven.pth"} has a classifier of 7 classes, this training set 4: classifier '
            're-initialised, every other weight loaded') in capsys.readouterr().out.splitlines()
    weights = trainer.net.state_dict()
    assert weights['classifier.weight'].shape == (4, 2048) and weights['classifier.weight'].abs().max() < 0.01
    assert all(torch.all(v == 0.5) for k, v in weights.items() if k != 'classifier.weight' and v.is_floating_point())

    args = parse_args('baseline', baseline_args(db, tmp_path / 'b', '--S', '2', '--load_ckpt',
                                                str(first_epoch / 'ckpt_best.pth')))
    trainer = cli_train.build_trainer(args, ctx)
    trainer.close()
    assert (f'note: {first_epoch / "ckpt_best.pth"} was trained with --S 4 --height 32 --width 16; this run uses '
            '--S 2 --height 32 --width 16') in capsys.readouterr().out.splitlines()


def test_evaluate_refuses_a_configuration_that_contradicts_the_saved_one(db, first_epoch, capsys):
    import evaluate
    argv = db_args(db) + ['--model_type', 'resnet50_s1', '--temporal', 'max', '--S', '4', '--height', '32',
                          '--width', '16', '--num_workers', '0', '--device', 'cpu',
                          '--load_ckpt', str(first_epoch / 'ckpt_best.pth')]
    assert _fail(argv, capsys, evaluate.main) == (
        f'error: checkpoint {first_epoch / "ckpt_best.pth"} does not fit resnet50_s1, 4 classes: its configuration '
        '(in ckpt_best.json) differs in --temporal (file mean, model max); the file was saved by --model_type '
        'resnet50_s1 --temporal mean, 4 classes')
