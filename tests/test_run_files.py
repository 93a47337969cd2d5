"""Writes of a run that fail on a full disk are one line, and the advice for a run killed before its first
last.pth works."""
import gc
import os
import sys

import numpy as np
import pytest
import torch
from helpers import FullDisk, save_features

import util.io as io_module
from util.errors import CheckpointError, OutputError
from util.io import atomic_save
from util.train.run import resolve_resume_path
from util.train.rundir import _occupied_message


@pytest.fixture
def full_disk(monkeypatch):
    real = os.fdopen
    monkeypatch.setattr(io_module.os, 'fdopen', lambda fd, mode: FullDisk(real(fd, mode), 4096))


def test_torch_save_on_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'last.pth'
    atomic_save({'w': torch.zeros(3)}, path)
    before = path.read_bytes()
    real = os.fdopen
    monkeypatch.setattr(io_module.os, 'fdopen', lambda fd, mode: FullDisk(real(fd, mode), 4096))
    # torch reports the failed write as RuntimeError('... unexpected pos ...') raised from the OSError
    with pytest.raises(OutputError) as e:
        atomic_save({'w': torch.zeros(100_000)}, path)
    assert str(e.value) == f'cannot write {path}: No space left on device'
    assert e.value.__cause__ is None and e.value.__suppress_context__
    assert path.read_bytes() == before and os.listdir(tmp_path) == ['last.pth']


def test_other_runtime_errors_of_a_writer_are_not_taken_for_a_full_disk(tmp_path):
    def broken(obj, f):
        raise RuntimeError('a bug')
    with pytest.raises(RuntimeError, match='a bug'):
        atomic_save(1, tmp_path / 'x', write=broken)
    assert os.listdir(tmp_path) == []


def test_features_file_on_a_full_disk_prints_only_the_error(tmp_path, full_disk, monkeypatch):
    # np.savez leaves its ZipFile to __del__, which closed again and printed "Exception ignored ... Traceback"
    ignored = []
    monkeypatch.setattr(sys, 'unraisablehook', ignored.append)
    path = tmp_path / 'f.npz'
    features = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    with pytest.raises(OutputError, match=rf'^cannot write {path}: No space left on device$'):
        save_features(path, features, np.arange(64), np.ones(64), np.arange(4))
    gc.collect()
    assert ignored == [] and os.listdir(tmp_path) == []


def test_a_run_killed_before_its_first_last_pth_gets_advice_that_works(tmp_path):
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    (ckpt / 'ckpt_best.pth').write_bytes(b'weights')
    message = _occupied_message(str(ckpt), ['ckpt_best.pth'])
    assert message == (f'--ckpt {ckpt} already holds a training run that stopped before it saved its first '
                       'last.pth (ckpt_best.pth), so it cannot be resumed: pass --overwrite to start it again, or '
                       'another --ckpt')
    assert '--resume' not in message
    with pytest.raises(CheckpointError) as e:
        resolve_resume_path(str(ckpt))
    assert str(e.value) == (f'--resume {ckpt / "last.pth"}: no such file: the run in {ckpt} stopped before it saved '
                            'its first last.pth, so it cannot be continued; start it again there with --overwrite '
                            '(or from its weights: --load_ckpt ckpt_best.pth)')
    assert 'pass --resume' in _occupied_message(str(ckpt), ['last.pth', 'ckpt_best.pth'])


def test_restart_of_a_run_killed_before_its_first_last_pth(tmp_path, capsys, monkeypatch):
    # kill -9 inside the first write of last.pth: ckpt_best.pth (and a temporary file) are there, last.pth not
    import train_baseline
    import util.cli.train as engine
    from util.cli.options import run_main
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    (ckpt / 'ckpt_best.pth').write_bytes(b'weights')
    (ckpt / '.last.pth.k2j4.tmp').write_bytes(b'half')
    monkeypatch.setattr(engine, 'read_database', lambda *a: (_ for _ in ()).throw(AssertionError('read')))
    argv = ['--train_txt', 'a', '--train_info', 'b', '--test_txt', 'c', '--test_info', 'd', '--query_info', 'e',
            '--ckpt', str(ckpt), '--model_type', 'resnet50_s1', '--temporal', 'mean', '--device', 'cpu']
    assert run_main(train_baseline.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f'error: {_occupied_message(str(ckpt), ["ckpt_best.pth"])}'
    assert run_main(train_baseline.main, argv + ['--resume', str(ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f'error: --resume {ckpt / "last.pth"}: no such file: the run in {ckpt} stopped before')
    assert sorted(os.listdir(ckpt)) == ['ckpt_best.pth']  # the temporary file of the killed write is gone
