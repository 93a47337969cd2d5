"""One table over the train/test splits of a benchmark (iLIDS-VID, PRID2011: ten splits): each split's
rank-1/5/10/20 and mAP, then their mean and standard deviation, as papers report them.

    python -m util.splits_summary runs/split_*/results.json --csv summary.csv
    python -m util.splits_summary runs/split_*                 # directories holding results.json

Each input is a file written by ``evaluate.py --results F.json`` (keys rank1, rank5, rank10, rank20, mAP as
fractions) or a directory holding one named ``--name``. The table is printed in percent; the CSV holds the
same rows (one per split, then mean and std) as fractions under the JSON's key names. The standard deviation
is the sample one (n - 1 in the denominator, pandas' default); a rank beyond the gallery size (null in the
JSON) is left out of its column's statistics, and the summary line says over how many splits each column is.
Results of different protocols (test sampling mode, re-ranking, gallery) are refused unless
``--mixed_protocols``; a file named twice (or through its directory) counts once.
"""

import argparse
import io
import json
import os
import sys

import pandas as pd

from util.cli.options import run_main
from util.data.datasets.common import read_json
from util.errors import DataError
from util.io import atomic_save

KEYS = ('rank1', 'rank5', 'rank10', 'rank20', 'mAP')
HEADERS = ('rank-1', 'rank-5', 'rank-10', 'rank-20', 'mAP')


def _results_file(path, name):
    return os.path.join(path, name) if os.path.isdir(path) else path


def _label(path, name):
    """The split's name in the table: its directory (runs/split_3/results.json -> split_3), else the file."""
    path = os.path.normpath(path)
    if os.path.isdir(path):
        return os.path.basename(path)
    parent, base = os.path.split(path)
    return os.path.basename(parent) if base == name and parent else os.path.splitext(base)[0]


# What makes two results comparable: the keys of evaluate.py --results that name the protocol.
PROTOCOL_KEYS = ('test_sampling', 'rerank', 'gallery')


def read_results(path, reranked=False, protocol=None):
    """The five numbers of one --results file (fractions; None where the JSON has null). With a `protocol`
    dict, it is filled with the file's PROTOCOL_KEYS (None where absent)."""
    record = read_json(path, 'the JSON that evaluate.py --results writes')
    if protocol is not None and isinstance(record, dict):
        protocol.update({k: record.get(k) for k in PROTOCOL_KEYS})
    if reranked:
        if not isinstance(record, dict) or 'reranked' not in record:
            raise DataError(f'{path}: no "reranked" scores (expected a run of evaluate.py --rerank --results)')
        record = record['reranked']
    if not isinstance(record, dict):
        raise DataError(f'{path}: holds a {type(record).__name__}; expected an object with keys {", ".join(KEYS)}')
    missing = [k for k in KEYS if k not in record]
    if missing:
        raise DataError(f'{path}: no key {missing[0]!r} (expected {", ".join(KEYS)}, as evaluate.py --results '
                        f'writes)')
    for k in KEYS:
        v = record[k]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1):
            raise DataError(f'{path}: {k} is {v!r}; expected a fraction between 0 and 1 (or null)')
    return {k: record[k] for k in KEYS}


def _check_protocols(protocols):
    """Refuse results of different protocols: their mean is no benchmark figure."""
    (first, reference), *rest = protocols.items()
    for path, protocol in rest:
        for k in PROTOCOL_KEYS:
            if protocol[k] != reference[k]:
                raise DataError(f'{path}: {k} {json.dumps(protocol[k])}, but {first}: {json.dumps(reference[k])}; '
                                f'results of different protocols do not average (pass --mixed_protocols to '
                                f'summarise them anyway)')


def _unique_label(label, path, taken):
    """The row's label: its split name, else its path where that is taken or names a statistics row."""
    for candidate in (label, path):
        if candidate not in taken and candidate not in STAT_ROWS:
            return candidate
    k = 2
    while f'{path} ({k})' in taken:
        k += 1
    return f'{path} ({k})'


STAT_ROWS = ('mean', 'std')


def summarize(paths, name='results.json', reranked=False, mixed_protocols=False, log=None):
    """DataFrame: one row per split (index = its label), then 'mean' and 'std' (sample), fractions. A file
    given twice (or through its directory) counts once, with a note to `log` (stderr by default)."""
    log = log or (lambda line: print(line, file=sys.stderr))
    if not paths:
        raise DataError('no results given (expected one --results JSON file or directory per split)')
    rows, protocols, seen = {}, {}, {}
    for path in paths:
        file = _results_file(path, name)
        real = os.path.realpath(file)
        if real in seen:
            log(f'note: {path} is {seen[real]} again; counted once')
            continue
        seen[real] = path
        label = _unique_label(_label(path, name), path, rows)
        protocols[file] = {}
        rows[label] = read_results(file, reranked, protocols[file])
    if not mixed_protocols:
        _check_protocols(protocols)
    table = pd.DataFrame.from_dict(rows, orient='index', columns=list(KEYS), dtype=float)
    stats = pd.DataFrame([table.mean(), table.std(ddof=1)], index=list(STAT_ROWS))
    return pd.concat([table, stats])


def format_table(table):
    """Markdown table in percent: one row per split, then mean and std, and a one-line mean ± std, each
    column over the splits that have a number in it (a rank beyond a gallery is left out)."""
    cells = (table * 100).map(lambda v: '-' if pd.isna(v) else f'{v:.2f}')
    width = max(8, *map(len, table.index))
    lines = ['| ' + 'split'.ljust(width) + ' | ' + ' | '.join(f'{h:>7}' for h in HEADERS) + ' |',
             '|' + '-' * (width + 2) + '|' + '|'.join('-' * 8 + ':' for _ in HEADERS) + '|']
    lines += ['| ' + str(label).ljust(width) + ' | ' + ' | '.join(f'{c:>7}' for c in row) + ' |'
              for label, row in zip(cells.index, cells.values)]
    splits = table.iloc[:-len(STAT_ROWS)]
    n, counts = len(splits), splits.notna().sum()
    mean, std = table.iloc[-2] * 100, table.iloc[-1] * 100
    parts = []
    for key, h in zip(KEYS, HEADERS):
        if counts[key] == 0:
            continue
        text = f'{h} {mean[key]:.2f}' + (f' ± {std[key]:.2f}' if counts[key] > 1 else '')
        if counts[key] < n:
            text += f' (over {counts[key]} of {n} splits)' if counts[key] > 1 else f' (1 of {n} splits, no std)'
        parts.append(text)
    return '\n'.join(lines) + f'\n\nover {n} split{"s" if n != 1 else ""} (mean ± sample std, %): {", ".join(parts)}'


def to_csv_bytes(table):
    buf = io.StringIO()
    table.to_csv(buf, index_label='split', float_format='%.6f')
    return buf.getvalue().encode()


def build_parser():
    parser = argparse.ArgumentParser(
        prog='python -m util.splits_summary',
        description="Summarise the splits of a benchmark: each split's rank-1/5/10/20 and mAP and their mean and "
                    'sample standard deviation, printed in percent and written as CSV (fractions).')
    parser.add_argument('results', nargs='+', metavar='PATH',
                        help='per split: a JSON file written by evaluate.py --results, or a directory holding one')
    parser.add_argument('--name', default='results.json',
                        help='file name looked for inside a directory PATH (default results.json)')
    parser.add_argument('--csv', default='splits_summary.csv', metavar='F.csv',
                        help='where to write the table (default splits_summary.csv); written atomically')
    parser.add_argument('--reranked', action='store_true',
                        help='summarise the re-ranked scores of runs made with evaluate.py --rerank')
    parser.add_argument('--mixed_protocols', action='store_true',
                        help='summarise results of different protocols (test sampling mode, re-ranking, gallery) '
                             'together; without it they are refused')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    table = summarize(args.results, args.name, args.reranked, args.mixed_protocols)
    atomic_save(to_csv_bytes(table), args.csv, write=lambda data, f: f.write(data))
    print(format_table(table))
    print(f'wrote {args.csv}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
