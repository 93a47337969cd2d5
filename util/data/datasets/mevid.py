"""MEVID (Davila et al., WACV 2023): 158 identities, 598 outfits, 8,092 tracklets, 33 cameras.

    D/bbox_train/0201/0201O003C330T004F00192.jpg   pid 0201, outfit O003, camera C330, tracklet T004, frame F00192
    D/bbox_test/...
    D/train_name.txt  test_name.txt                frame names in tracklet order, one a line
    D/track_train_info.txt  track_test_info.txt    5 integer columns: start end pid outfit camera
    D/query_IDX.txt                                0-based rows of track_test_info.txt
    test_track_scale.txt (MEVID repository)         lines "<frame name> l|m", one per test tracklet

start / end are 0-based inclusive line offsets into the name file, whose order is the frame order; a frame's
path is ``bbox_<split>/<first 4 characters of its name>/<name>``. As the official loader (its
``names[start:end + 1]``), a row that covers no frame is dropped, the other rows keep their order and the query
list is re-indexed to them; query = the query_IDX.txt rows, gallery = every other kept test row. Camera = the
5th column. Labels beside the database: clothes = the index of (pid, outfit) among the split's sorted pairs;
location (MEVID's indoor / outdoor split) = 0 for cameras 329, 330, 507, 508, 509, else 1; scale (with the
scale file) = 0 for ``l``, 1 for ``m``, -1 for a row without a line, matched by the tracklet of the line's frame
name (pid, outfit, camera, tracklet number).
"""

import os
import re

import numpy as np

from util.data.datasets.common import progress as progress_bar
from util.data.datasets.common import replacing_directory, write_files
from util.errors import DataError

SPLITS = ('train', 'test')
NAME_RE = re.compile(r'(\d{4})O(\d+)C(\d+)T(\d+)F(\d+)\.\w+')
NAME_HINT = '<pid:4>O<outfit>C<camera>T<tracklet>F<frame>.jpg, e.g. 0201O003C330T004F00192.jpg'
INDOOR_CAMERAS = (329, 330, 507, 508, 509)
SCALES = {'l': 0, 'm': 1}


def read_names(path):
    """Frame names of a name file, one a line (blank lines are errors: they would shift the offsets)."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: file not found (expected frame names, one a line, in tracklet order)')
    with open(path, encoding='utf-8') as f:
        names = f.read().splitlines()
    for k, name in enumerate(names):
        if not NAME_RE.fullmatch(name.strip()):
            raise DataError(f'{path} line {k + 1}: {name!r} is not a frame name (expected {NAME_HINT})')
    return [n.strip() for n in names]


def read_int_table(path, columns, what):
    """(rows, columns) int64 of a whitespace-separated text file of integers (written as integers or floats)."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: file not found (expected {what})')
    rows = []
    with open(path, encoding='utf-8') as f:
        for k, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                values = [float(v) for v in fields]
            except ValueError:
                values = None
            if values is None or len(values) != columns or any(v != int(v) for v in values):
                raise DataError(f'{path} line {k}: {line.strip()!r} (expected {what})')
            rows.append([int(v) for v in values])
    if not rows:
        raise DataError(f'{path}: no rows (expected {what})')
    return np.asarray(rows, dtype=np.int64).reshape(-1, columns)


def parse_names(names):
    """(F, 4) int64 pid, outfit, camera, tracklet of each frame name."""
    return np.asarray([NAME_RE.fullmatch(n).groups()[:4] for n in names], dtype=np.int64).reshape(-1, 4)


def check_images(data_dir, split, names, name_file, progress=True):
    """Every line of the name file has its image: each pid directory is listed once."""
    listed = {}
    for k, name in enumerate(progress_bar(names, f'checking {split} frames', progress, unit='frame')):
        d = os.path.join(data_dir, f'bbox_{split}', name[:4])
        if d not in listed:
            listed[d] = set(os.listdir(d)) if os.path.isdir(d) else set()
        if name not in listed[d]:
            raise DataError(f'{name_file} line {k + 1}: {name} has no image {os.path.join(d, name)}')


def kept_rows(info, num_names, info_file):
    """The rows that cover a frame (``names[start:end + 1]`` not empty), with end clipped to the name file."""
    start, end = info[:, 0], info[:, 1]
    if (start < 0).any():
        k = int(np.argmax(start < 0))
        raise DataError(f'{info_file} line {k + 1}: start {start[k]} is negative (expected 0-based line offsets)')
    keep = (start <= end) & (start < num_names)
    return keep, np.minimum(end, num_names - 1)


def check_row_names(info, keep, end, fields, info_file, name_file):
    """Every frame of a kept row carries the row's pid, outfit and camera in its name."""
    rows = np.flatnonzero(keep)
    counts = end[rows] - info[rows, 0] + 1
    frame = np.repeat(info[rows, 0] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    owner = np.repeat(rows, counts)
    expected = info[owner][:, [2, 3, 4]]  # pid, outfit, camera
    bad = (fields[frame, :3] != expected).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        r, f = int(owner[i]), int(frame[i])
        got, want = fields[f, :3].tolist(), expected[i].tolist()
        raise DataError(f'{name_file} line {f + 1}: frame of {info_file} line {r + 1} has pid / outfit / camera '
                        f'{got[0]} / {got[1]} / {got[2]} in its name, the row {want[0]} / {want[1]} / {want[2]}')


def clothes_ids(pids, outfits):
    """Index of each row's (pid, outfit) among the sorted distinct pairs."""
    keys = pids * (outfits.max(initial=0) + 1) + outfits
    return np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)


def read_scales(path, keys, info_file):
    """test_scale values (0 = l, 1 = m, -1 = no line) of rows with tracklet keys (R, 4): pid, outfit, camera,
    tracklet number; a line naming no row is an error."""
    if not os.path.isfile(path):
        raise DataError(f'{path}: file not found (expected lines "<frame name> l|m")')
    index = {}
    for r, key in enumerate(map(tuple, keys.tolist())):
        index.setdefault(key, []).append(r)
    scale = np.full(len(keys), -1, dtype=np.int64)
    with open(path, encoding='utf-8') as f:
        for k, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            match = NAME_RE.fullmatch(fields[0]) if len(fields) == 2 else None
            if match is None or fields[1] not in SCALES:
                raise DataError(f'{path} line {k}: {line.strip()!r} (expected "<frame name> l|m", a frame name '
                                f'{NAME_HINT})')
            key = tuple(int(v) for v in match.groups()[:4])
            if key not in index:
                raise DataError(f'{path} line {k}: {fields[0]} matches no tracklet of {info_file} (pid {key[0]}, '
                                f'outfit {key[1]}, camera {key[2]}, tracklet {key[3]})')
            scale[index[key]] = SCALES[fields[1]]
    return scale


def read_split(data_dir, split, progress=True):
    """(paths text, info (R, 4) int64, clothes (R,), kept (N,) bool, rows' tracklet keys (R, 4), cams (R,))."""
    name_file = os.path.join(data_dir, f'{split}_name.txt')
    info_file = os.path.join(data_dir, f'track_{split}_info.txt')
    names = read_names(name_file)
    info = read_int_table(info_file, 5, 'lines of 5 integers: start end pid outfit camera')
    keep, end = kept_rows(info, len(names), info_file)
    fields = parse_names(names)
    check_row_names(info, keep, end, fields, info_file, name_file)
    check_images(data_dir, split, names, name_file, progress)
    root = os.path.join(os.path.abspath(data_dir), f'bbox_{split}')
    text = ''.join(f'{root}{os.sep}{n[:4]}{os.sep}{n}\n' for n in names)
    rows = info[keep]
    table = np.stack([rows[:, 0], end[keep], rows[:, 2], rows[:, 4]], axis=1).astype(np.int64)
    keys = fields[rows[:, 0]]  # the tracklet of each kept row: its first frame's name
    return os.fsencode(text), table, clothes_ids(rows[:, 2], rows[:, 3]), keep, keys


def read_query(path, keep, info_file):
    """query_IDX.txt rows re-indexed to the kept test rows; a query row that covers no frame is an error."""
    query = read_int_table(path, 1, f'one 0-based row of {info_file} per line')[:, 0]
    n = len(keep)
    bad = np.flatnonzero((query < 0) | (query >= n))
    if bad.size:
        raise DataError(f'{path} line {bad[0] + 1}: row {query[bad[0]]} is outside the {n} rows of {info_file}')
    empty = np.flatnonzero(~keep[query])
    if empty.size:
        raise DataError(f'{path} line {empty[0] + 1}: query row {query[empty[0]]} ({info_file} line '
                        f'{query[empty[0]] + 1}) covers no frame')
    if len(np.unique(query)) != len(query):
        raise DataError(f'{path}: a query row is listed twice (expected each row once)')
    return (np.cumsum(keep) - 1)[query].astype(np.int64)


def build_mevid_database(data_dir, output_dir, scale_file=None, progress=True):
    """Write train_path.txt, train_info.npy, train_clothes.npy, test_path.txt, test_info.npy, test_clothes.npy,
    test_location.npy, query_IDX.npy, gallery_IDX.npy (and test_scale.npy with the scale file)."""
    if not os.path.isdir(data_dir):
        raise DataError(f'{data_dir}: directory not found (expected the MEVID directory holding bbox_train/, '
                        f'bbox_test/, the name, track info and query_IDX.txt files)')
    out = {}
    for split in SPLITS:
        text, info, clothes, keep, keys = read_split(data_dir, split, progress)
        out.update({f'{split}_path.txt': text, f'{split}_info.npy': info, f'{split}_clothes.npy': clothes})
    test_info_file = os.path.join(data_dir, 'track_test_info.txt')
    query = read_query(os.path.join(data_dir, 'query_IDX.txt'), keep, test_info_file)
    test = out['test_info.npy']
    out['query_IDX.npy'] = query
    out['gallery_IDX.npy'] = np.setdiff1d(np.arange(len(test), dtype=np.int64), query)
    out['test_location.npy'] = np.where(np.isin(test[:, 3], INDOOR_CAMERAS), 0, 1).astype(np.int64)
    if scale_file is not None:
        out['test_scale.npy'] = read_scales(scale_file, keys, test_info_file)
    with replacing_directory(output_dir, inputs=(data_dir,)) as root:
        write_files(root, out)
    return out
