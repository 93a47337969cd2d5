"""The run scripts check every flag before any training, quote every path, and continue an interrupted run:
util.cli.run_state decides per run (skip, resume, restart, new); the scripts' pre-check fails before the
database is built or a split trains."""
import json
import os
import subprocess
import sys
import time

import pytest

from util.cli.options import parse_args
from util.cli.run_state import run_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def evaluate_args(run_dir, *extra):
    return parse_args('evaluate', ['--test_txt', 't', '--test_info', 'i', '--query_info', 'q', '--gallery_info',
                                   'g.npy', '--model_type', 'resnet50_NL', '--temporal', 'Done',
                                   '--load_ckpt', str(run_dir / 'ckpt_best.pth'),
                                   '--results', str(run_dir / 'results.json'), *extra])


def write_results(run_dir, **changes):
    record = dict(rank1=0.5, checkpoint=str(run_dir / 'ckpt_best.pth'), test_sampling='chunks', rerank=None,
                  gallery_info='g.npy', rank_size=10000)
    record.update(changes)
    (run_dir / 'results.json').write_text(json.dumps(record))
    later = time.time() + 10
    os.utime(run_dir / 'results.json', (later, later))


def test_run_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / 'split_0'
    run.mkdir()
    assert run_state(evaluate_args(run)) == 'new'
    (run / 'ckpt_best.pth').write_bytes(b'w')
    assert run_state(evaluate_args(run)) == 'restart'  # killed before its first last.pth
    (run / 'last.pth').write_bytes(b's')
    assert run_state(evaluate_args(run)) == 'resume'
    write_results(run)
    assert run_state(evaluate_args(run)) == 'done'
    # another protocol, another checkpoint, or a training save after the scoring: not this run's results
    assert run_state(evaluate_args(run, '--test_sampling', 'all_continuous')) == 'resume'
    assert run_state(evaluate_args(run, '--rerank')) == 'resume'
    assert run_state(evaluate_args(run, '--rank_size', '0')) == 'resume'
    write_results(run, checkpoint=str(tmp_path / 'other' / 'ckpt_best.pth'))
    assert run_state(evaluate_args(run)) == 'resume'
    write_results(run)
    later = time.time() + 20
    os.utime(run / 'last.pth', (later, later))
    assert run_state(evaluate_args(run)) == 'resume'


def run_script(script, env, *flags, cwd):
    return subprocess.run(['sh', os.path.join(ROOT, script), *flags], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, 'PY': sys.executable, **env})


@pytest.mark.parametrize('script', ['run_splits.sh', 'run_iLIDSVID.sh', 'run_PRID2011.sh', 'run_LSVID.sh',
                                    'run_DukeV.sh', 'run_MEVID.sh', 'run_CCVID.sh'])
def test_a_flag_evaluate_py_refuses_fails_before_any_training(tmp_path, script):
    # --overwrite is train_NL.py's only: before, split 0 was retrained and then evaluate.py refused it
    db, runs = tmp_path / 'my db', tmp_path / 'my runs'
    env = dict(DB=str(db), RUNS=str(runs), DATA_DIR=str(tmp_path / 'no data'))  # no data: nothing may be read
    r = run_script(script, env, '--overwrite', cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == 'evaluate.py: error: unrecognized arguments: --overwrite\n'
    assert not runs.exists() and not db.exists()


def test_run_splits_skips_a_split_that_is_done_and_quotes_paths(tmp_path):
    db, runs = tmp_path / 'my db', tmp_path / 'my runs'
    (db / 'split_0').mkdir(parents=True)
    run = runs / 'split_0'
    run.mkdir(parents=True)
    (run / 'ckpt_best.pth').write_bytes(b'w')
    (run / 'last.pth').write_bytes(b's')
    write_results(run, gallery_info=str(db / 'split_0' / 'gallery_IDX.npy'), rank5=0.75, rank10=1.0, rank20=None,
                  mAP=0.25)
    r = run_script('run_splits.sh', dict(DB=str(db), RUNS=str(runs), SPLITS='0'), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f'split 0: {run}/results.json already scores this run; skipped (OVERWRITE=1 starts over)' in r.stdout
    assert '| split_0  |   50.00 |   75.00 |  100.00 |       - |   25.00 |' in r.stdout
    assert (runs / 'summary.csv').exists()
