"""The features file: one ``.npz`` that evaluate.py ``--save_features`` and extract_features.py write, and
evaluate.py ``--features``, search.py and ``python -m util.visualize ranks`` read.

Arrays (``np.savez``, uncompressed, no pickled objects):

    features      (N, D) float32   one feature per tracklet
    labels, cams  (N,) int64       pid (-1: unknown or junk) and camera of each tracklet
    query_idx     (Q,) int64       0-based rows scored as queries
    gallery_idx   (G,) int64       0-based rows of the gallery; absent: every row is the gallery
    test_sampling ()  str          the --test_sampling mode the features were extracted with
    ...                            any further per-tracklet arrays, e.g. ``paths`` (N,) str (extract_features.py)

Because the arrays are stored uncompressed, :meth:`FeaturesFile.read` with ``mmap=True`` maps the features
from the file instead of reading them: a gallery of 100,000 tracklets (800 MB of float32) is searched in
bounded memory.
"""
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from util.data.loaders import check_unique_rows
from util.errors import BROKEN_DEPENDENCY, DataError
from util.io import atomic_save

SCORED_KEYS = ('features', 'labels', 'cams', 'query_idx')  # what scoring a file needs
_KNOWN = SCORED_KEYS + ('gallery_idx', 'test_sampling')


@dataclass
class FeaturesFile:
    features: np.ndarray                      # (N, D) float; a read-only memmap when read with mmap=True
    labels: np.ndarray                        # (N,) int64
    cams: np.ndarray                          # (N,) int64
    query_idx: np.ndarray                     # (Q,) int64
    gallery_idx: np.ndarray | None = None     # (G,) int64; None: every row is the gallery
    test_sampling: str | None = None
    extra: dict = field(default_factory=dict)  # further per-tracklet arrays, e.g. paths

    @property
    def paths(self):
        """The tracklet folders (extract_features.py's files), or None."""
        return self.extra.get('paths')

    def write(self, path):
        """Write the file atomically (readers see the old file or the complete new one)."""
        arrays = dict(features=np.asarray(self.features, dtype=np.float32),
                      labels=np.asarray(self.labels, dtype=np.int64), cams=np.asarray(self.cams, dtype=np.int64),
                      query_idx=np.asarray(self.query_idx, dtype=np.int64).reshape(-1))
        if self.gallery_idx is not None:
            arrays['gallery_idx'] = np.asarray(self.gallery_idx, dtype=np.int64).reshape(-1)
        arrays['test_sampling'] = np.array(str(self.test_sampling or 'chunks'))
        arrays.update({k: np.asarray(v) for k, v in self.extra.items()})
        atomic_save(arrays, path, write=lambda obj, f: np.savez(f, **obj))

    @classmethod
    def read(cls, path, what='--features', mmap=False, scoring=True):
        """Read and check a features file; every problem is one DataError line naming `what` and the file.

        scoring=True (evaluate.py, the ranked pictures): features, labels, cams and query_idx must be there and
        every feature row finite. scoring=False (search.py): only the features are needed; missing labels and
        cams are -1 and a missing query_idx is empty. mmap=True maps uncompressed features from the file."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise DataError(f'{what} {path}: no such file')
        try:
            with np.load(path, allow_pickle=False) as data:
                names = set(data.files)
                needed = SCORED_KEYS if scoring else ('features',)
                missing = [k for k in needed if k not in names]
                if missing:
                    raise DataError(f'{what} {path}: missing array(s) {", ".join(missing)} (expected '
                                    f'{", ".join(needed)}: a file of evaluate.py --save_features or '
                                    'extract_features.py)')
                arrays = {k: data[k] for k in names if k != 'features'}
            features = _member_memmap(path, 'features.npy') if mmap else None
            if features is None:
                with np.load(path, allow_pickle=False) as data:
                    features = data['features']
        except (DataError, *BROKEN_DEPENDENCY):
            raise
        except Exception as err:  # zipfile, pickle and format errors of a damaged file: one line for the user
            raise DataError(f'{what} {path}: not a readable .npz file ({type(err).__name__}: {err})') from None
        saved = cls._checked(features, arrays, f'{what} {path}')
        if scoring:
            check_rankable(saved.features, f'{what} {path}')
        return saved

    @classmethod
    def _checked(cls, features, arrays, source):
        if features.ndim != 2 or not np.issubdtype(features.dtype, np.floating):
            raise DataError(f'{source}: expected float features (N, D), got {features.dtype} {features.shape}')
        n = len(features)
        unknown = np.full(n, -1, dtype=np.int64)
        labels, cams = arrays.pop('labels', unknown), arrays.pop('cams', unknown)
        for key, value in (('labels', labels), ('cams', cams)):
            if value.shape != (n,):
                raise DataError(f'{source}: expected features (N,D) with labels and cams of length N, got '
                                f'{features.shape} and {key} {value.shape}')
        rows = {key: _rows(arrays.pop(key), key, n, source) if key in arrays else None
                for key in ('query_idx', 'gallery_idx')}
        sampling = arrays.pop('test_sampling', None)
        return cls(features=features, labels=labels, cams=cams,
                   query_idx=rows['query_idx'] if rows['query_idx'] is not None else np.zeros(0, dtype=np.int64),
                   gallery_idx=rows['gallery_idx'], test_sampling=None if sampling is None else str(sampling),
                   extra=arrays)


def _rows(rows, key, n, source):
    rows = rows.reshape(-1)
    if rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0 or rows.max() >= n):
        raise DataError(f'{source}: {key} must be 0-based integer rows below {n}, '
                        f'found {rows.min()}..{rows.max()} ({rows.dtype})')
    rows = rows.astype(np.int64)
    check_unique_rows(rows, source, key)
    return rows


def check_rankable(features, source, nothing='nothing scored', chunk=4096):
    """Refuse an empty set, and rows with NaN or Inf values or all zero (no direction: cosine undefined), before
    ranking: they would be ranked as if valid. `source` names where the features come from (a file, a
    checkpoint); read `chunk` rows at a time, so a memory-mapped file stays unread."""
    if len(features) == 0:
        raise DataError(f'{source}: no tracklets (expected at least one feature row)')
    for what, bad_rows in (('are not finite (NaN or Inf)', lambda x: ~np.isfinite(x).all(1)),
                           ('are all zero (no direction, cosine undefined)', lambda x: ~x.any(1))):
        bad = np.concatenate([np.flatnonzero(bad_rows(np.asarray(features[lo:lo + chunk]))) + lo
                              for lo in range(0, len(features), chunk)])
        if bad.size:
            first = ', '.join(str(int(r)) for r in bad[:5]) + (', ...' if len(bad) > 5 else '')
            raise DataError(f'{source}: {len(bad)} of {len(features)} feature rows {what}, rows {first}; '
                            f'{nothing}')


def _member_memmap(path, name):
    """A read-only memmap of the uncompressed array ``name`` (.npy) inside the .npz at ``path``, or None.

    The zip member's data starts after its local file header, whose name and extra-field lengths are at
    bytes 26..29 (zipfile keeps that offset private); the .npy header that follows gives shape and dtype."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, 'rb') as f:
        f.seek(info.header_offset)
        local = f.read(30)
        f.seek(info.header_offset + 30 + int.from_bytes(local[26:28], 'little')
               + int.from_bytes(local[28:30], 'little'))
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(f))
        if read_header is None:
            return None
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode='r', shape=shape, order='F' if fortran else 'C', offset=offset)
