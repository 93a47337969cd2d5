"""python -m util.splits_summary: per-split table, mean and sample standard deviation, CSV, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from util.cli.splits_summary import main, summarize
from util.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(d, **numbers):
    d.mkdir(parents=True, exist_ok=True)
    record = dict(rank1=0.5, rank5=0.75, rank10=0.875, rank20=1.0, mAP=0.25, cmc=[0.5], num_scored=8,
                  num_skipped=0, test_sampling='chunks')
    record.update(numbers)
    (d / 'results.json').write_text(json.dumps(record))
    return d


def test_mean_and_sample_std_by_hand(tmp_path):
    dirs = [write(tmp_path / f'split_{k}', rank1=r1, mAP=m) for k, (r1, m) in
            enumerate([(0.5, 0.25), (0.625, 0.5), (0.75, 0.75)])]
    table = summarize([str(d) for d in dirs])
    assert list(table.index) == ['split_0', 'split_1', 'split_2', 'mean', 'std']
    assert table.loc['mean', 'rank1'] == pytest.approx(0.625)
    assert table.loc['std', 'rank1'] == pytest.approx(0.125)  # sqrt(((-1/8)^2 + 0 + (1/8)^2) / (3 - 1))
    assert table.loc['std', 'mAP'] == pytest.approx(0.25) and table.loc['std', 'rank5'] == 0


def test_cli_prints_percent_and_writes_csv(tmp_path, capsys):
    files = [write(tmp_path / 'runs' / f'split_{k}', rank1=0.5 + k / 8, rank20=None) / 'results.json'
             for k in range(2)]
    csv = tmp_path / 'summary.csv'
    assert main([str(f) for f in files] + ['--csv', str(csv)]) == 0
    out = capsys.readouterr().out
    assert '| split_0  |   50.00 |   75.00 |   87.50 |       - |   25.00 |' in out
    assert '| mean     |   56.25 |' in out and '| std      |    8.84 |' in out  # 12.5 / sqrt(2)
    assert 'over 2 splits (mean ± sample std, %): rank-1 56.25 ± 8.84, rank-5 75.00 ± 0.00' in out
    assert 'rank-20' not in out.split('over 2 splits')[1]  # no gallery of 20: left out
    table = pd.read_csv(csv, index_col='split')
    assert list(table.columns) == ['rank1', 'rank5', 'rank10', 'rank20', 'mAP']
    assert np.isclose(table.loc['mean', 'rank1'], 0.5625) and np.isnan(table.loc['mean', 'rank20'])


def test_bad_results_files(tmp_path):
    d = write(tmp_path / 'split_0')
    (d / 'results.json').write_text(json.dumps({'rank1': 0.5}))
    with pytest.raises(DataError, match=r"results\.json: no key 'rank5' \(expected rank1, rank5, rank10, rank20, "
                                        r"mAP, as evaluate\.py --results writes\)"):
        summarize([str(d)])
    write(d, mAP=82.8)
    with pytest.raises(DataError, match=r'mAP is 82\.8; expected a fraction between 0 and 1'):
        summarize([str(d)])
    (d / 'results.json').write_text('{')
    with pytest.raises(DataError, match=r'cannot read it as JSON'):
        summarize([str(d)])
    with pytest.raises(DataError, match=r'no "reranked" scores'):
        summarize([str(write(d))], reranked=True)
    r = subprocess.run([sys.executable, '-m', 'util.splits_summary', str(tmp_path / 'nope'), '--csv',
                        str(tmp_path / 's.csv')], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == f'error: {tmp_path / "nope"}: file not found (expected the JSON that ' \
                                             f'evaluate.py --results writes)\n'
    assert not (tmp_path / 's.csv').exists()
