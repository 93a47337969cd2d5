"""Per-row attribute labels of the clothes-changing benchmarks (test_clothes.npy, test_location.npy,
test_scale.npy): read and checked for the attribute protocols of util.evaluation.metrics."""
import os

import numpy as np

from util.errors import DataError
from util.evaluation.metrics import PROTOCOLS

ATTRIBUTES = tuple(PROTOCOLS)  # clothes, location, scale: evaluate.py's --clothes_info, --location_info, ...


def load_attributes(paths, n, info_path):
    """{'clothes' | 'location' | 'scale': path or None} -> {name: (n,) int64} of the files given, each checked to
    hold one integer per test row (the n rows of info_path); the source of an error is named as its flag."""
    return {name: check_attribute(_load(path, f'--{name}_info'), n, f'--{name}_info {path}', info_path)
            for name, path in paths.items() if path is not None}


def _load(path, flag):
    """A label .npy file (None when missing); an unreadable one is a one-line error."""
    if not os.path.isfile(path):
        return None
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:  # not a .npy file, or a damaged one
        raise DataError(f'{flag} {path}: not a readable .npy file ({type(err).__name__}: {err})') from None


def check_attribute(values, n, source, info_path):
    """One integer per test row, as a 1-D int64 array; else a one-line error naming `source`."""
    if values is None:
        raise DataError(f'{source}: no such file')
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise DataError(f'{source}: expected a 1-D integer array, got shape {values.shape} dtype {values.dtype}')
    if len(values) != n:
        raise DataError(f'{source}: {len(values)} values, but {info_path} has {n} test rows (expected one per row)')
    return values.astype(np.int64)


def saved_attributes(extra, n, source):
    """The attribute arrays a features file was saved with (its extra arrays named clothes, location, scale)."""
    return {name: check_attribute(extra[name], n, f'{source}: {name}', source) for name in ATTRIBUTES
            if name in extra}
