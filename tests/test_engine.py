"""The training loop: atomic checkpoints, exact resume, non-finite losses, loss wiring, and bad-input errors.

Runs in-process on a tiny synthetic MARS (32x16 frames, S=4, P=2, K=2, random initialisation).
"""
import csv
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train_baseline
import util.engine as engine
from util.checkpoint import atomic_save, load_resume_state, rng_state, set_rng_state
from util.datasets.mars import build_mars_database
from util.engine import NonFiniteLossError, compute_losses
from util.losses import batch_hard_triplet_soft
from util.options import parse_args, run_main
from util.synthetic import make_mars


@pytest.fixture(scope='module')
def db(tmp_path_factory):
    """Database files of a tiny synthetic MARS: 4 train and 4 test identities, 32x16 frames."""
    root = tmp_path_factory.mktemp('mars')
    make_mars(root / 'MARS', seed=0, num_train_ids=4, num_test_ids=4, height=32, width=16, max_len=12,
              num_junk=2, num_distractors=2)
    build_mars_database(root / 'MARS', root / 'MARS' / 'MARS-evaluation' / 'info', root / 'db', progress=False)
    return root / 'db'


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
    return engine.train(parse_args('baseline', baseline_args(d, ckpt, *extra)))


@pytest.fixture(scope='module')
def first_epoch(db, tmp_path_factory):
    """A --ckpt directory after one epoch of a run stopped there."""
    ckpt = tmp_path_factory.mktemp('first') / 'ckpt'
    run_baseline(db, ckpt, '--n_epochs', '1')
    return ckpt


def read_rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


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
    from util.checkpoint import check_writable
    from util.errors import OutputError
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

class _Args:
    S, temporal, frame_id_loss, track_id_loss = 3, 'mean', True, True


def test_frame_level_losses_pool_clips_and_expand_labels():
    torch.manual_seed(0)
    feats, logits = torch.randn(4 * 3, 8), torch.randn(4 * 3, 5)  # 4 clips of S=3 frames
    labels = torch.tensor([0, 0, 1, 1])
    losses = compute_losses(feats, logits, labels, _Args, frame_level=True)
    clip_feats = feats.reshape(4, 3, 8).mean(1)
    clip_logits = logits.reshape(4, 3, 5).mean(1)
    assert torch.allclose(losses['trip_loss'], batch_hard_triplet_soft(clip_feats, labels))
    assert torch.allclose(losses['track_id_loss'], F.cross_entropy(clip_logits, labels))
    frame_labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    assert torch.allclose(losses['frame_id_loss'], F.cross_entropy(logits, frame_labels))


def test_clip_level_losses_use_outputs_as_they_are():
    class A(_Args):
        frame_id_loss, temporal = False, 'Done'
    feats, logits, labels = torch.randn(4, 8), torch.randn(4, 5), torch.tensor([0, 0, 1, 1])
    losses = compute_losses(feats, logits, labels, A, frame_level=False)
    assert set(losses) == {'trip_loss', 'track_id_loss'}
    assert torch.allclose(losses['track_id_loss'], F.cross_entropy(logits, labels))


# -- one run's outputs --------------------------------------------------------------------------------------------

def test_outputs_of_a_run(first_epoch):
    files = sorted(os.listdir(first_epoch))
    assert files == ['ckpt_best.pth', 'last.pth', 'loss.txt', 'metrics.csv', 'training_curves.png']
    best = torch.load(first_epoch / 'ckpt_best.pth')
    assert all(k.startswith('module.') for k in best)  # the original's key names
    assert 'module.classifier.weight' in best and best['module.classifier.weight'].shape[0] == 4
    lines = (first_epoch / 'loss.txt').read_text().splitlines()
    assert lines[0].startswith('epoch 1, rank-1 ') and ' , mAP ' in lines[0]
    assert lines[1].startswith("Frame ID loss : ['") and lines[2].startswith("Track ID loss : ['")
    assert lines[3].startswith("Trip Loss : ['") and lines[4] == 'best'
    rows = read_rows(first_epoch / 'metrics.csv')
    assert list(rows[0]) == list(engine.METRICS_COLUMNS)
    assert rows[0]['epoch'] == '1' and rows[0]['rank1'] and rows[0]['lr'] == '0.0001'
    state = load_resume_state(str(first_epoch))
    assert state['epoch'] == 1 and state['args']['model_type'] == 'resnet50_s1'


# -- exact resume ------------------------------------------------------------------------------------------------

def test_resume_continues_exactly(db, first_epoch, tmp_path):
    straight = tmp_path / 'straight'
    run_baseline(db, straight, '--n_epochs', '2')
    resumed = tmp_path / 'resumed'
    shutil.copytree(first_epoch, resumed)
    run_baseline(db, resumed, '--n_epochs', '2', '--resume', str(resumed / 'last.pth'))

    a, b = read_rows(straight / 'metrics.csv'), read_rows(resumed / 'metrics.csv')
    assert [r['epoch'] for r in a] == [r['epoch'] for r in b] == ['1', '2']
    for ra, rb in zip(a, b):
        ra.pop('seconds'), rb.pop('seconds')
        assert ra == rb
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

    monkeypatch.setattr(engine, 'batch_hard_triplet_soft', nan_on_second_batch)
    argv = baseline_args(db, ckpt, '--n_epochs', '3', '--resume', str(ckpt))
    with pytest.raises(NonFiniteLossError) as err:
        engine.train(parse_args('baseline', argv))
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
    from util.data import make_test_loader, read_database
    from util.evaluation import extract_features
    test = read_database(db / 'test_path.txt', db / 'test_info.npy', db / 'query_IDX.npy')
    n = len(test.info)
    model = build_model('resnet50_s1', 4, pretrained='none', height=32, S=2)
    empty = make_test_loader(test, 2, 4, 0, 32, 16, rank=0, world_size=n + 1)
    full = make_test_loader(test, 2, 4, 0, 32, 16, rank=n, world_size=n + 1)
    feats, labels, cams = extract_features(model, empty, 2, torch.device('cpu'), 'mean', progress=False)
    assert feats.shape == (0, 2048) and labels.shape == cams.shape == (0,)
    other = extract_features(model, full, 2, torch.device('cpu'), 'mean', progress=False)[0]
    assert torch.cat([feats, other]).shape == (other.shape[0], 2048) and other.shape[0] >= 1
