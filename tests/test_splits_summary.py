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


def test_each_column_counts_its_own_splits(tmp_path, capsys):
    # rank-5 exists in one split of three (the others' galleries are smaller): its mean is over that one
    dirs = [write(tmp_path / f'split_{k}', rank1=0.5 + k / 8, rank5=0.75 if k == 0 else None,
                  rank10=0.875 if k < 2 else None) for k in range(3)]
    assert main([str(d) for d in dirs] + ['--csv', str(tmp_path / 's.csv')]) == 0
    line = capsys.readouterr().out.splitlines()[-2]
    assert line == ('over 3 splits (mean ± sample std, %): rank-1 62.50 ± 12.50, rank-5 75.00 (1 of 3 splits, no std)'
                    ', rank-10 87.50 ± 0.00 (over 2 of 3 splits), rank-20 100.00 ± 0.00, mAP 25.00 ± 0.00')
    assert 'nan' not in line


def test_results_of_different_protocols_are_refused_unless_asked(tmp_path):
    a = write(tmp_path / 'split_0')
    for key, value, text in (('test_sampling', 'all_continuous', '"all_continuous", but'),
                             ('rerank', {'k1': 20, 'k2': 6, 'lambda_value': 0.3}, 'rerank {"k1": 20'),
                             ('gallery', 'gallery_idx', 'gallery "gallery_idx", but')):
        b = write(tmp_path / f'other_{key}', **{key: value})
        with pytest.raises(DataError) as e:
            summarize([str(a), str(b)])
        assert str(e.value).startswith(f'{b / "results.json"}: {key} ') and text in str(e.value)
        assert str(e.value).endswith('results of different protocols do not average (pass --mixed_protocols to '
                                     'summarise them anyway)')
        assert len(summarize([str(a), str(b)], mixed_protocols=True)) == 4


def test_a_file_named_twice_or_through_its_directory_counts_once(tmp_path, capsys):
    a, b = write(tmp_path / 'split_0', rank1=0.5), write(tmp_path / 'split_1', rank1=1.0)
    notes = []
    table = summarize([str(a), str(a / 'results.json'), str(b), str(b)], log=notes.append)
    assert list(table.index) == ['split_0', 'split_1', 'mean', 'std']
    assert table.loc['mean', 'rank1'] == 0.75
    assert notes == [f'note: {a / "results.json"} is {a} again; counted once', f'note: {b} is {b} again; counted once']


def test_directories_named_like_the_statistics_rows_get_their_paths(tmp_path):
    a, b, c = (write(tmp_path / name, rank1=r) for name, r in (('mean', 0.5), ('std', 1.0), ('x/split_0', 0.0)))
    d = write(tmp_path / 'y' / 'split_0', rank1=0.25)
    table = summarize([str(a), str(b), str(c), str(d)])
    assert list(table.index) == [str(a), str(b), 'split_0', str(d), 'mean', 'std']
    assert table.loc['mean', 'rank1'] == pytest.approx(0.4375)
