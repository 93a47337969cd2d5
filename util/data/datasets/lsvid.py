"""LS-VID (Li et al., ICCV 2019): 3,772 persons, 14,943 sequences, 15 cameras, about 3 M frames.

    D/list_sequence/list_seq_train.txt    lines "<sequence path prefix> <pid>", prefix relative to D
    D/list_sequence/list_seq_test.txt
    D/test/data/info_test.mat             MATLAB v7.3 (HDF5): 'query', 1-based rows of the test list
    D/tracklet_train/..., D/tracklet_test/...

A sequence's frames are the image files whose path starts with its prefix, in frame-number order (the
second ``_``-separated field of the name); the camera is the third field, as the public LS-VID loaders read
them. Rows follow the list files' order, so ``query_IDX.npy`` = the .mat's rows - 1 and ``gallery_IDX.npy``
= every other test row (the query is not in the gallery).

Each directory is listed once and each prefix found by bisection in its sorted names; names are parsed
for all frames at once, so the scan costs about what MARS's does per frame.
"""

import bisect
import os

import numpy as np

from util.data.datasets.common import (
    IMAGE_EXTENSIONS,
    IMAGE_HINT,
    FrameList,
    check_unique_frames,
    field_numbers,
    frame_order,
    info_rows,
    load_mat,
    replacing_directory,
    write_files,
)
from util.data.datasets.common import progress as progress_bar
from util.errors import DataError

LIST_FILES = {'train': os.path.join('list_sequence', 'list_seq_train.txt'),
              'test': os.path.join('list_sequence', 'list_seq_test.txt')}
QUERY_FILE = os.path.join('test', 'data', 'info_test.mat')
FRAME_FIELD, CAM_FIELD = 1, 2
NAME_HINT = '<tracklet>_<frame>_<cam>_<n>.jpg'


def read_list(path):
    """(prefixes, pids, line numbers) of a list_seq file; a malformed line is an error naming its number."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: file not found (expected lines "<sequence path prefix> <pid>")')
    prefixes, pids, lines = [], [], []
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise DataError(f'{path}: cannot read it ({e.strerror or e})') from None
    for k, raw in enumerate(data.splitlines(), 1):  # \n, \r\n or \r, as text mode reads them
        try:
            line = raw.decode('utf-8')
        except UnicodeDecodeError as e:
            raise DataError(f'{path} line {k}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8 '
                            f'(expected lines "<sequence path prefix> <pid>" in UTF-8)') from None
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].lstrip('-').isdigit():
            raise DataError(f'{path} line {k}: {line.strip()!r} (expected "<sequence path prefix> <pid>")')
        prefixes.append(fields[0])
        pids.append(int(fields[1]))
        lines.append(k)
    if not prefixes:
        raise DataError(f'{path}: no sequences (expected lines "<sequence path prefix> <pid>")')
    return prefixes, pids, lines


class _Listing:
    """Sorted entry names of each directory, listed once (hidden ones match no prefix: no filter needed)."""

    def __init__(self):
        self._names = {}

    def names(self, d, list_file, line):
        if d not in self._names:
            try:
                self._names[d] = sorted(os.listdir(d))
            except FileNotFoundError:
                raise DataError(f'{d}: directory not found (expected the frames of {list_file} line '
                                f'{line})') from None
            except OSError as e:
                raise DataError(f'{d}: cannot list directory ({e.strerror})') from None
        return self._names[d]


def scan_list(data_dir, list_file, progress=True):
    """Frames (in frame order) and int64 info rows of the sequences of one list file, in its order."""
    prefixes, pids, lines = read_list(list_file)
    listing, frames = _Listing(), FrameList()
    root = os.path.abspath(data_dir)
    for k, prefix in enumerate(progress_bar(prefixes, f'scanning {os.path.basename(list_file)}', progress,
                                            unit='seq')):
        d, base = os.path.split(os.path.join(root, prefix))
        names = listing.names(d, list_file, lines[k])
        lo = bisect.bisect_left(names, base)
        hi = bisect.bisect_left(names, base + '\U0010ffff', lo)
        if lo == hi:
            raise DataError(f'{list_file} line {lines[k]}: prefix {prefix!r} matches no frame in {d}')
        matched = names[lo:hi]
        if not all(map(str.endswith, matched, [IMAGE_EXTENSIONS] * len(matched))):
            bad = next(n for n in matched if not n.endswith(IMAGE_EXTENSIONS))
            raise DataError(f'{os.path.join(d, bad)}: not an image file (expected only {IMAGE_HINT} with '
                            f'the prefix {base!r} of {list_file} line {lines[k]})')
        frames.add(d, matched)

    counts = np.asarray(frames.counts, np.int64)
    parsed, ok = field_numbers(frames.names, (FRAME_FIELD, CAM_FIELD))
    number, cam, ok = parsed[:, 0], parsed[:, 1], ok.all(1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise DataError(f'{frames.path(i)}: frame name does not parse (expected {NAME_HINT}: frame number '
                        f'and camera in the second and third fields)')
    order = frame_order(number, counts)
    if order is not None:  # frame numbers of unequal width
        start = np.cumsum(counts) - counts
        ordered, names = FrameList(), np.asarray(frames.names, dtype=object)[order]
        for d, s, n in zip(frames.dirs, start, counts):
            ordered.add(d, list(names[s:s + n]))
        frames, cam, number = ordered, cam[order], number[order]
    check_unique_frames(number, counts, frames.path)
    first = np.repeat(cam[np.cumsum(counts) - counts], counts)
    if (cam != first).any():
        i = int(np.argmax(cam != first))
        raise DataError(f'{frames.path(i)}: camera {cam[i]} differs from camera {first[i]} of the first frame '
                        f'of its sequence ({list_file} line {lines[frames.group(i)]})')
    return frames, info_rows(counts, pids, cam[np.cumsum(counts) - 1])


def load_query(path, num_rows, list_file):
    what = f"a 'query' vector of 1-based rows of {list_file} (1..{num_rows})"
    query = load_mat(path, 'query', what)
    if query.ndim == 0 or query.ndim > 2 or min(query.shape) != 1:
        raise DataError(f"{path}: variable 'query' has shape {query.shape}; expected {what}")
    query = query.reshape(-1).astype(np.int64)
    bad = np.flatnonzero((query < 1) | (query > num_rows))
    if bad.size:
        raise DataError(f'{path}: query entry {bad[0] + 1} is {query[bad[0]]}; expected {what}')
    if len(np.unique(query)) != len(query):
        raise DataError(f'{path}: a query row is listed twice; expected {what}, each row once')
    return query - 1


def build_lsvid_database(data_dir, output_dir, progress=True):
    """Write train_path.txt, train_info.npy, test_path.txt, test_info.npy, query_IDX.npy, gallery_IDX.npy."""
    if not os.path.isdir(data_dir):
        raise DataError(f'{data_dir}: directory not found (expected the LS-VID directory holding '
                        f'list_sequence/, test/data/info_test.mat, tracklet_train/ and tracklet_test/)')
    lists = {s: os.path.join(data_dir, f) for s, f in LIST_FILES.items()}
    num_rows = {s: len(read_list(path)[0]) for s, path in lists.items()}  # cheap checks before the scan
    query = load_query(os.path.join(data_dir, QUERY_FILE), num_rows['test'], lists['test'])
    if len(query) == num_rows['test']:
        raise DataError(f"{os.path.join(data_dir, QUERY_FILE)}: 'query' lists all {num_rows['test']} rows of "
                        f"{lists['test']}, which leaves the gallery (the other test rows) empty")
    # created now: an unwritable place fails before the scan
    with replacing_directory(output_dir, inputs=(data_dir,)) as root:
        out = {}
        for split, path in lists.items():
            frames, info = scan_list(data_dir, path, progress)
            out[f'{split}_path.txt'] = frames.path_text()
            out[f'{split}_info.npy'] = info
        out['query_IDX.npy'] = query
        out['gallery_IDX.npy'] = np.setdiff1d(np.arange(num_rows['test'], dtype=np.int64), query)
        write_files(root, out)
