"""The benchmark run scripts as a user runs them, shrunk by flags that override the recipe (S 4, as STE-NVAN
needs a multiple of 4): run_DukeV.sh on a tiny synthetic DukeMTMC-VideoReID (build, NVAN and STE-NVAN,
evaluation) and run_iLIDSVID.sh on one split of a tiny synthetic iLIDS-VID (build, training validated on the
split's own gallery, evaluation, split summary)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from util.data.synthetic import make_dukev, make_ilidsvid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--n_epochs', '1', '--S', '4', '--height', '32', '--width', '16', '--batch_size', '8', '--class_per_batch',
        '2', '--track_per_class', '2', '--num_workers', '0', '--device', 'cpu', '--pretrained', 'none', '--lr', '1e-4']
RESULT_KEYS = {'rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'cmc', 'num_scored', 'num_skipped'}


def run_script(script, env, *flags):
    proc = subprocess.run(['sh', os.path.join(ROOT, script), *flags], cwd=env['RUNS'], capture_output=True,
                          text=True, env={**os.environ, 'PY': sys.executable, **env})
    assert proc.returncode == 0, f'{script} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}'
    return proc.stdout


def validation_scores(ckpt):
    """rank-1 and mAP of the training run's last validation (its log line)."""
    return tuple(map(float, re.findall(r'rank-1 (\S+) , mAP (\S+)', (ckpt / 'loss.txt').read_text())[-1]))


def check_results(ckpt, num_queries):
    results = json.loads((ckpt / 'results.json').read_text())
    assert RESULT_KEYS <= set(results) and results['num_scored'] + results['num_skipped'] == num_queries
    # Training validated on the same query / gallery as evaluate.py: the same numbers.
    assert validation_scores(ckpt) == pytest.approx((results['rank1'], results['mAP']), abs=1e-6)
    return results


@pytest.mark.slow
def test_run_dukev(tmp_path):
    make_dukev(tmp_path / 'DukeV', seed=0, num_train_ids=3, num_test_ids=3, num_distractor_ids=1, height=32,
               width=16, max_len=6)
    env = dict(DATA_DIR=str(tmp_path / 'DukeV'), DB=str(tmp_path / 'DukeV_database'), RUNS=str(tmp_path))
    run_script('run_DukeV.sh', env, *TINY, '--stripes', '2', '2', '2', '2')  # 16 stripes need 128-pixel frames
    queries = len(np.load(tmp_path / 'DukeV_database' / 'query_IDX.npy'))
    for model in ('NVAN', 'STE_NVAN'):
        check_results(tmp_path / f'ckpt_DukeV_{model}', queries)


@pytest.mark.slow
def test_run_ilidsvid_one_split_and_summary(tmp_path):
    make_ilidsvid(tmp_path / 'iLIDS-VID', seed=0, num_persons=12, height=32, width=16, max_len=4)
    runs = tmp_path / 'runs'
    runs.mkdir()
    env = dict(DATA_DIR=str(tmp_path / 'iLIDS-VID'), DB=str(tmp_path / 'iLIDSVID_database'), RUNS=str(runs),
               SPLITS='0')
    out = run_script('run_iLIDSVID.sh', env, *TINY)
    split = tmp_path / 'iLIDSVID_database' / 'split_0'
    results = check_results(runs / 'split_0', len(np.load(split / 'query_IDX.npy')))
    # 6 test persons: the gallery holds their 6 cam2 sequences only, so there is no rank 20 (null).
    assert results['rank5'] is not None and results['rank20'] is None and results['num_scored'] == 6
    table = pd.read_csv(runs / 'summary.csv', index_col='split')
    assert list(table.index) == ['split_0', 'mean', 'std']
    assert table.loc['split_0', 'rank1'] == pytest.approx(results['rank1'], abs=1e-6)
    assert f'| split_0  | {100 * results["rank1"]:7.2f} |' in out and 'over 1 split' in out
    assert out.rstrip().endswith(f'wrote {runs / "summary.csv"}')
